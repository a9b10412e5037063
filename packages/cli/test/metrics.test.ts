import { DOMParser } from '@xmldom/xmldom';
import { describe, expect, it } from 'vitest';
import type { JobRecord } from '@flare/runtime';
import { metricRows, metricSeries, metricsCsv, metricsSvg, parseMetricsCsv, renderMetrics } from '../src/commands/metrics.js';

/** A record as the server keeps it: two rounds, two sites, global validation, each site's validation and training. */
function record(): Pick<JobRecord, 'history'> {
  const round = (r: number, acc: number): JobRecord['history'][number] => ({
    round: r,
    contributors: ['site-1', 'site-2'],
    seconds: 1.5,
    bytes: { 'site-1': 10, 'site-2': 10 },
    metrics: { accuracy: acc, accuracy_min: acc - 0.1, accuracy_max: acc + 0.1, accuracy_median: acc, loss: 1 - acc, sites: 2 },
    site_validation: { 'site-1': { accuracy: acc - 0.1, loss: 1.1 - acc, n: 100 }, 'site-2': { accuracy: acc + 0.1, loss: 0.9 - acc, n: 90 } },
    site_metrics: { 'site-1': { train_loss: 0.5 / (r + 1) }, 'site-2': { train_loss: 0.6 / (r + 1), epsilon: 0.25 * (r + 1) } },
  });
  return { history: [round(1, 0.8), round(0, 0.6)] };
}

const parseXml = (text: string): Document => {
  const errors: string[] = [];
  const report = (level: string) => (msg: string) => void errors.push(`${level}: ${msg}`);
  const doc = new DOMParser({ errorHandler: { warning: report('warning'), error: report('error'), fatalError: report('fatal') } }).parseFromString(text, 'image/svg+xml') as unknown as Document;
  expect(errors).toEqual([]);
  return doc;
};

describe('flare admin metrics: rows, table, CSV, SVG', () => {
  it('takes every number of the record, rounds from 1 and in order: global, each site\'s validation, each site\'s training', () => {
    const rows = metricRows(record());
    expect(rows[0]).toEqual({ round: 1, source: 'global', kind: 'global', metric: 'accuracy', value: 0.6 });
    expect(rows.filter((r) => r.round === 2 && r.kind === 'validation').map((r) => `${r.source}.${r.metric}`)).toEqual(['site-1.accuracy', 'site-1.loss', 'site-1.n', 'site-2.accuracy', 'site-2.loss', 'site-2.n']);
    expect(rows.find((r) => r.round === 2 && r.source === 'site-2' && r.metric === 'epsilon')?.value).toBe(0.5);
    expect(rows.length).toBe(2 * (6 + 6 + 3));
    const table = renderMetrics(rows).join('\n');
    expect(table).toMatch(/global model, validated across sites/);
    expect(table).toMatch(/^\s+2\s+site-2\s+0\.5000\s+0\.3000\s*$/m); // epsilon, train_loss at round 2
  });

  it('CSV round-trips exactly, with quoting of a field that holds a comma or a quote', () => {
    const rows = [...metricRows(record()), { round: 3, source: 'site,"x"', kind: 'train' as const, metric: 'odd, "name"', value: 1 / 3 }];
    const csv = metricsCsv(rows);
    expect(csv.split('\r\n')[0]).toBe('round,source,kind,metric,value');
    expect(parseMetricsCsv(csv)).toEqual(rows);
  });

  it('refuses a CSV that is not one of its own with E_CLI_METRICS_EMPTY naming the line', () => {
    expect(() => parseMetricsCsv('a,b\n1,2\n')).toThrow(expect.objectContaining({ code: 'E_CLI_METRICS_EMPTY' }));
    expect(() => parseMetricsCsv('round,source,kind,metric,value\r\n1,global,nope,accuracy,1\r\n')).toThrow(/line 2/);
  });

  it('the SVG parses as XML and has one path per series (global and each site, per metric; counts and spreads left out)', () => {
    const series = metricSeries(metricRows(record()));
    // accuracy: global + 2 sites; loss: global + 2 sites; train_loss: 2 sites; epsilon: site-2.
    expect(series.map((s) => `${s.metric}:${s.source}:${s.kind}`)).toEqual([
      'accuracy:global:global',
      'accuracy:site-1:validation',
      'accuracy:site-2:validation',
      'epsilon:site-2:train',
      'loss:global:global',
      'loss:site-1:validation',
      'loss:site-2:validation',
      'train_loss:site-1:train',
      'train_loss:site-2:train',
    ]);
    const doc = parseXml(metricsSvg(series, 'job <x> & "y"'));
    expect(doc.documentElement.tagName).toBe('svg');
    expect(doc.documentElement.getAttribute('xmlns')).toBe('http://www.w3.org/2000/svg');
    const paths = Array.from(doc.getElementsByTagName('path'));
    expect(paths.length).toBe(series.length);
    // Each path goes through its series' points, one command per round.
    for (const p of paths) expect(p.getAttribute('d')).toMatch(/^M[\d.]+,[\d.]+ L[\d.]+,[\d.]+$/);
    expect(doc.getElementsByTagName('g').length).toBe(4); // a panel per metric
  });

  it('plots only the metrics asked for, and refuses to plot nothing (E_CLI_METRICS_EMPTY)', () => {
    const only = metricSeries(metricRows(record()), ['accuracy']);
    expect(only.length).toBe(3);
    expect(Array.from(parseXml(metricsSvg(only, 't')).getElementsByTagName('path')).length).toBe(3);
    expect(() => metricsSvg(metricSeries(metricRows({ history: [] })), 't')).toThrow(expect.objectContaining({ code: 'E_CLI_METRICS_EMPTY' }));
  });
});
