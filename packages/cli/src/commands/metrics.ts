import { resolve } from 'node:path';
import { CliError, writeFileAtomic } from '@flare/core';
import type { JobRecord } from '@flare/runtime';
import type { Command } from 'commander';
import { connectAdmin } from '../poc/participants.js';
import { runCommand, stdio } from '../run.js';

/** Where a metric comes from: the global model's validation across sites, a site's validation, a site's training. */
type MetricKind = 'global' | 'validation' | 'train';

/** One number of a job's record: round (from 1), who reported it, what kind, which metric. */
export interface MetricRow {
  readonly round: number;
  /** `global`, or the site's name. */
  readonly source: string;
  readonly kind: MetricKind;
  readonly metric: string;
  readonly value: number;
}

/**
 * Every per-round metric of a job's record as rows, in order: per round, the global model's validation across
 * sites (the weighted mean, its spread, how many sites reported), each site's validation of the global model,
 * and what each site attached to its update (training loss, epsilon spent, ...).
 */
export function metricRows(record: Pick<JobRecord, 'history'>): MetricRow[] {
  const rows: MetricRow[] = [];
  const add = (round: number, source: string, kind: MetricKind, m: Readonly<Record<string, number>> | undefined): void => {
    for (const [metric, value] of Object.entries(m ?? {}).sort(([a], [b]) => a.localeCompare(b))) if (Number.isFinite(value)) rows.push({ round, source, kind, metric, value });
  };
  for (const h of [...record.history].sort((a, b) => a.round - b.round)) {
    const round = h.round + 1;
    add(round, 'global', 'global', h.metrics);
    for (const site of Object.keys(h.site_validation ?? {}).sort()) add(round, site, 'validation', h.site_validation?.[site]);
    for (const site of Object.keys(h.site_metrics).sort()) add(round, site, 'train', h.site_metrics[site]);
  }
  return rows;
}

const fmt = (v: number): string => (Number.isInteger(v) ? String(v) : Math.abs(v) >= 1000 || Math.abs(v) < 0.001 ? v.toPrecision(4) : v.toFixed(4));

const TITLES: Record<MetricKind, string> = {
  global: 'global model, validated across sites (weighted mean, min, max, median)',
  validation: "each site's validation of the global model",
  train: 'what each site sent with its update (training)',
};

/** The rows as text tables, one per kind: a line per round and source, a column per metric. */
export function renderMetrics(rows: readonly MetricRow[]): string[] {
  const lines: string[] = [];
  for (const kind of ['global', 'validation', 'train'] as const) {
    const mine = rows.filter((r) => r.kind === kind);
    if (mine.length === 0) continue;
    const metrics = [...new Set(mine.map((r) => r.metric))].sort();
    const keys = [...new Set(mine.map((r) => `${r.round}\u0000${r.source}`))];
    const cells = new Map(mine.map((r) => [`${r.round}\u0000${r.source}\u0000${r.metric}`, fmt(r.value)]));
    const sourceWidth = Math.max(6, ...mine.map((r) => r.source.length));
    const widths = metrics.map((m) => Math.max(m.length, 8));
    if (lines.length > 0) lines.push('');
    lines.push(`${TITLES[kind]}:`);
    lines.push(['round', 'source'.padEnd(sourceWidth), ...metrics.map((m, i) => m.padStart(widths[i]!))].join('  '));
    for (const key of keys) {
      const [round, source] = key.split('\u0000') as [string, string];
      lines.push([round.padStart(5), source.padEnd(sourceWidth), ...metrics.map((m, i) => (cells.get(`${key}\u0000${m}`) ?? '-').padStart(widths[i]!))].join('  '));
    }
  }
  return lines;
}

const CSV_HEADER = 'round,source,kind,metric,value';
const csvField = (s: string): string => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** The rows as CSV (RFC 4180): `round,source,kind,metric,value`, one line per number, full precision. */
export function metricsCsv(rows: readonly MetricRow[]): string {
  return `${[CSV_HEADER, ...rows.map((r) => [String(r.round), csvField(r.source), r.kind, csvField(r.metric), String(r.value)].join(','))].join('\r\n')}\r\n`;
}

function csvRecords(text: string): string[][] {
  const out: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      out.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) out.push([...row, field]);
  return out;
}

/**
 * Reads what {@link metricsCsv} wrote back into rows.
 *
 * @throws CliError E_CLI_METRICS_EMPTY when the text is not such a CSV (names the line).
 */
export function parseMetricsCsv(text: string): MetricRow[] {
  const [header, ...records] = csvRecords(text);
  if (header?.join(',') !== CSV_HEADER) throw new CliError('E_CLI_METRICS_EMPTY', `not a metrics CSV: line 1 must be ${CSV_HEADER}`);
  return records.map((r, i) => {
    const [round, source, kind, metric, value] = r;
    if (r.length !== 5 || !['global', 'validation', 'train'].includes(kind ?? '') || !Number.isFinite(Number(value)) || !Number.isInteger(Number(round))) {
      throw new CliError('E_CLI_METRICS_EMPTY', `not a metrics CSV: line ${i + 2} is not round,source,kind,metric,value`);
    }
    return { round: Number(round), source: source!, kind: kind as MetricKind, metric: metric!, value: Number(value) };
  });
}

/** One curve: a metric of one source over the rounds. */
export interface MetricSeries {
  readonly metric: string;
  readonly source: string;
  readonly kind: MetricKind;
  readonly points: ReadonlyArray<readonly [round: number, value: number]>;
}

/** Figures that are bookkeeping rather than curves: counts and the spread of the global mean (the site curves show it). */
const NOT_A_CURVE = /^(n|sites)$|_(min|max|median)$/;

/** The curves to plot: every metric (or those named), per source; counts and spreads left out. */
export function metricSeries(rows: readonly MetricRow[], only?: readonly string[]): MetricSeries[] {
  const byKey = new Map<string, { metric: string; source: string; kind: MetricKind; points: Array<[number, number]> }>();
  for (const r of rows) {
    if (only !== undefined && only.length > 0 ? !only.includes(r.metric) : NOT_A_CURVE.test(r.metric)) continue;
    const key = `${r.metric}\u0000${r.kind}\u0000${r.source}`;
    let s = byKey.get(key);
    if (s === undefined) byKey.set(key, (s = { metric: r.metric, source: r.source, kind: r.kind, points: [] }));
    s.points.push([r.round, r.value]);
  }
  return [...byKey.values()].sort((a, b) => a.metric.localeCompare(b.metric) || (a.kind === 'global' ? -1 : b.kind === 'global' ? 1 : 0) || a.kind.localeCompare(b.kind) || a.source.localeCompare(b.source));
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n2 = (x: number): string => (Math.round(x * 100) / 100).toString();

/**
 * The curves as an SVG document a browser opens: one panel per metric (x: round, y: value, axes with ticks),
 * one `<path>` per series (the global model thick and black, each site in its own colour, training dashed), and
 * a legend. Hand-written: a few dozen lines, no DOM and no dependency (see the package README).
 *
 * @throws CliError E_CLI_METRICS_EMPTY when there is no series to draw.
 */
export function metricsSvg(series: readonly MetricSeries[], title: string): string {
  if (series.length === 0) throw new CliError('E_CLI_METRICS_EMPTY', 'no metric to plot: the job has no round with metrics yet (or none of the metrics named)');
  const metrics = [...new Set(series.map((s) => s.metric))];
  const sources = [...new Set(series.filter((s) => s.kind !== 'global').map((s) => s.source))].sort();
  const colour = (s: MetricSeries): string => (s.kind === 'global' ? '#000000' : PALETTE[sources.indexOf(s.source) % PALETTE.length]!);
  const W = 760;
  const PH = 240;
  const M = { left: 64, right: 200, top: 48, bottom: 40 };
  const height = M.top + metrics.length * (PH + M.bottom) + 8;
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect x="0" y="0" width="${W}" height="${height}" fill="#ffffff"/>`,
    `<text x="${M.left}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  const plotW = W - M.left - M.right;
  metrics.forEach((metric, p) => {
    const mine = series.filter((s) => s.metric === metric);
    const pts = mine.flatMap((s) => s.points);
    const [x0, x1] = [Math.min(...pts.map((q) => q[0])), Math.max(...pts.map((q) => q[0]))];
    let [y0, y1] = [Math.min(...pts.map((q) => q[1])), Math.max(...pts.map((q) => q[1]))];
    if (y0 === y1) [y0, y1] = [y0 - 0.5, y1 + 0.5];
    const top = M.top + p * (PH + M.bottom);
    const sx = (x: number): number => M.left + (x1 === x0 ? plotW / 2 : ((x - x0) / (x1 - x0)) * plotW);
    const sy = (y: number): number => top + PH - ((y - y0) / (y1 - y0)) * PH;
    out.push(`<g class="panel" data-metric="${esc(metric)}">`);
    out.push(`<text x="${M.left}" y="${top - 8}" font-weight="bold">${esc(metric)}</text>`);
    out.push(`<line x1="${M.left}" y1="${top + PH}" x2="${M.left + plotW}" y2="${top + PH}" stroke="#333333"/>`, `<line x1="${M.left}" y1="${top}" x2="${M.left}" y2="${top + PH}" stroke="#333333"/>`);
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      out.push(`<line x1="${M.left}" y1="${n2(sy(y))}" x2="${M.left + plotW}" y2="${n2(sy(y))}" stroke="#e0e0e0"/>`, `<text x="${M.left - 6}" y="${n2(sy(y) + 4)}" text-anchor="end">${esc(fmt(y))}</text>`);
    }
    const step = Math.max(1, Math.ceil((x1 - x0) / 10));
    for (let x = x0; x <= x1; x += step) out.push(`<text x="${n2(sx(x))}" y="${top + PH + 16}" text-anchor="middle">${x}</text>`);
    out.push(`<text x="${M.left + plotW / 2}" y="${top + PH + 32}" text-anchor="middle">round</text>`);
    mine.forEach((s, i) => {
      const d = s.points.map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${n2(sx(x))},${n2(sy(y))}`).join(' ');
      const width = s.kind === 'global' ? 3 : 1.5;
      const dash = s.kind === 'train' ? ' stroke-dasharray="6 4"' : '';
      const label = s.kind === 'global' ? 'global' : `${s.source} (${s.kind})`;
      out.push(`<path d="${d}" fill="none" stroke="${colour(s)}" stroke-width="${width}"${dash}><title>${esc(`${metric}: ${label}`)}</title></path>`);
      for (const [x, y] of s.points) out.push(`<circle cx="${n2(sx(x))}" cy="${n2(sy(y))}" r="2.5" fill="${colour(s)}"/>`);
      const ly = top + 14 + i * 16;
      out.push(`<line x1="${W - M.right + 16}" y1="${ly - 4}" x2="${W - M.right + 40}" y2="${ly - 4}" stroke="${colour(s)}" stroke-width="${width}"${dash}/>`, `<text x="${W - M.right + 46}" y="${ly}">${esc(label)}</text>`);
    });
    out.push('</g>');
  });
  out.push('</svg>', '');
  return out.join('\n');
}

/** `flare admin metrics JOB [--csv FILE] [--plot FILE.svg] [--metric NAME...]`, under the `admin` command. */
export function register(program: Command): void {
  const admin = program.commands.find((c) => c.name() === 'admin');
  if (admin === undefined) throw new Error('the admin command must be registered before metrics');
  admin
    .command('metrics <job>')
    .description("a job's per-round metrics: the global model's validation across sites, each site's validation and training figures (a table; --csv and --plot write files)")
    .option('--csv <file>', 'write every number as CSV (round,source,kind,metric,value)')
    .option('--plot <file>', 'draw the curves as an SVG a browser opens (one panel per metric)')
    .option('--metric <names...>', 'only these metrics (default: all but counts and spreads)')
    .action((job: string, o: { csv?: string; plot?: string; metric?: string[] }) =>
      runCommand(async () => {
        const a = admin.opts<{ kit: string; server?: string }>();
        const client = await connectAdmin(a.kit, a.server);
        try {
          const { record } = await client.jobStatus(job);
          await showMetrics(record, o);
        } finally {
          client.close();
        }
      }).then(() => undefined),
    );
}

/** Prints a record's metrics table and writes the CSV and the plot asked for (shared with `flare simulate`). */
export async function showMetrics(record: JobRecord, o: { readonly csv?: string | undefined; readonly plot?: string | undefined; readonly metric?: readonly string[] | undefined }, out: (line: string) => void = (l) => stdio.out(l)): Promise<void> {
  const rows = metricRows(record);
  if (rows.length === 0) out(`job ${record.id} (${record.name}, ${record.status}) has no round with metrics yet`);
  else for (const l of renderMetrics(o.metric === undefined ? rows : rows.filter((r) => o.metric!.includes(r.metric)))) out(l);
  if (o.csv !== undefined) {
    if (rows.length === 0) throw new CliError('E_CLI_METRICS_EMPTY', `job ${record.id} has no metrics to export to ${o.csv}`);
    await writeFileAtomic(resolve(o.csv), metricsCsv(rows), { mode: 0o644 });
    out(`wrote ${resolve(o.csv)}`);
  }
  if (o.plot !== undefined) {
    await writeFileAtomic(resolve(o.plot), metricsSvg(metricSeries(rows, o.metric), `${record.name} (${record.id.slice(0, 8)}): ${record.status}, ${record.rounds_done} rounds`), { mode: 0o644 });
    out(`wrote ${resolve(o.plot)}`);
  }
}
