// FLARE's `_normalize_str` (nvflare/fuel/sec/authz.py): lower-case, then collapse runs of whitespace into one
// space and trim. Role, right, user name, org and condition text are all compared in this form.
const WHITESPACE = /\s+/g;

/** Lower-cases `s` and collapses whitespace runs into single spaces (trimmed). */
export function normalizeName(s: string): string {
  return s.toLowerCase().replace(WHITESPACE, ' ').trim();
}
