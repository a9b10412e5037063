import type { ERROR_AREAS } from './codes.js';
import type { ErrorInfo } from './info.js';

// Renders docs/errors.md from the catalogs (internal: used by tools/scripts/errors-doc.mjs and a test that
// fails when the committed document is stale).

const cell = (text: string) => text.replace(/\|/g, '\\|');

export function renderErrorsDoc(areas: typeof ERROR_AREAS): string {
  const lines = [
    '# Error codes',
    '',
    'Every refusal or failure FLARE-TS reports carries a stable `code` (match on it in programs; the message',
    'may change). The CLI prints `CODE: what happened. What to do: ...`. This page is generated from the',
    'catalogs in `packages/core/src/errors/catalog/` by `npm run errors:doc`; do not edit it by hand.',
    '',
  ];
  for (const [title, catalog] of areas) {
    lines.push(`## ${title}`, '');
    const entries = Object.entries(catalog) as Array<[string, ErrorInfo]>;
    if (entries.length === 0) {
      lines.push('_No codes yet: this area has not landed._', '');
      continue;
    }
    lines.push('| Code | What it means | What to do |', '|---|---|---|');
    for (const [code, info] of entries) lines.push(`| \`${code}\` | ${cell(info.meaning)} | ${cell(info.action)} |`);
    lines.push('');
  }
  return lines.join('\n');
}
