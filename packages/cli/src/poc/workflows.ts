import type { CrossSiteMatrix } from '@flare/runtime';

/** The workflows `flare poc --workflow` runs, by their CLI name, with the name meta.json gives them. */
export const POC_WORKFLOWS = {
  'scatter-gather': 'scatter_and_gather',
  'cross-site-eval': 'cross_site_eval',
  cyclic: 'cyclic',
} as const;

/** A `flare poc --workflow` value. */
export type PocWorkflow = keyof typeof POC_WORKFLOWS;

/** The metric a matrix cell shows: accuracy when the sites report it, else the first one they report. */
function shownMetric(m: CrossSiteMatrix): string | undefined {
  const names = new Set<string>();
  for (const row of Object.values(m.results)) for (const cell of Object.values(row)) if ('metrics' in cell) for (const k of Object.keys(cell.metrics)) if (k !== 'n') names.add(k);
  return names.has('accuracy') ? 'accuracy' : [...names].sort()[0];
}

/**
 * The cross-site evaluation matrix as a table: one row per model (`global`, then each site's local model), one
 * column per site that evaluated it, each cell that site's figure on its own data, or the code it gave none.
 * Then the local models that never left their site, with why.
 */
export function renderCrossSiteMatrix(m: CrossSiteMatrix): string[] {
  const metric = shownMetric(m);
  const cellOf = (model: string, site: string): string => {
    const c = m.results[model]?.[site];
    if (c === undefined) return '-';
    if ('error' in c) return c.error.code;
    const x = metric === undefined ? undefined : c.metrics[metric];
    return x === undefined ? '-' : x.toFixed(4);
  };
  const cells = m.models.map((model) => m.sites.map((site) => cellOf(model, site)));
  const first = Math.max(5, ...m.models.map((x) => x.length));
  const widths = m.sites.map((s, j) => Math.max(s.length, ...cells.map((row) => row[j]!.length)));
  const line = (head: string, row: readonly string[]) => [head.padEnd(first), ...row.map((c, j) => c.padStart(widths[j]!))].join('  ').trimEnd();
  const lines = [`cross-site evaluation after ${m.rounds} rounds: ${metric ?? 'metric'} of each model (row) on each site's data (column)`, line('model', m.sites)];
  m.models.forEach((model, i) => lines.push(line(model, cells[i]!)));
  for (const [site, why] of Object.entries(m.refused_models)) lines.push(`local model of ${site} not evaluated: ${why.code}: ${why.message.slice(0, 200)}`);
  return lines;
}
