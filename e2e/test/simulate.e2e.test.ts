// The same job folder in `flare simulate` and on a real federation: `flare job create` writes it, `flare job check`
// validates it, `flare simulate` runs it with virtual sites, then `flare server`, two `flare client` processes (mTLS,
// kits from @flare/pki) and `flare admin submit` run it unchanged, and `flare admin metrics` exports and plots what
// the server recorded. The two runs' metrics have the same shape: the same sources and the same metric names.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseProject, provision } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { describe, expect, it } from 'vitest';
import { flare, freePort, startFlare, tempDir, until } from './support.js';

interface CsvRow {
  round: number;
  source: string;
  kind: string;
  metric: string;
}
const csvRows = (text: string): CsvRow[] =>
  text
    .trim()
    .split(/\r?\n/)
    .slice(1)
    .map((l) => {
      const [round, source, kind, metric] = l.split(',');
      return { round: Number(round), source: source!, kind: kind!, metric: metric! };
    });
const shape = (rows: CsvRow[]): string[] => [...new Set(rows.map((r) => `${r.kind}:${r.source}:${r.metric}`))].sort();

describe('a job folder from flare job create runs in flare simulate and on a real federation', () => {
  it('create -> check -> simulate -> provision, server, 2 sites over mTLS -> admin submit -> admin metrics --csv --plot', { timeout: 1_200_000 }, async () => {
    const dir = await tempDir('flare-e2e-simulate-');
    const created = await flare(['job', 'create', 'spam', '--learner', 'tfjs', '--rounds', '2', '--dir', dir], 300_000);
    expect(created.code, created.stderr).toBe(0);
    const job = join(dir, 'spam');
    const checked = await flare(['job', 'check', job], 300_000);
    expect(checked.code, checked.stderr).toBe(0);
    expect(checked.stdout).toMatch(/tensor names and shapes match the built-in learner tfjs-spam/);

    const sim = await flare(['simulate', job, '--sites', '2', '--csv', join(dir, 'sim.csv')], 600_000);
    expect(sim.code, sim.stderr).toBe(0);
    expect(sim.stdout).toMatch(/job spam: FINISHED after 2 rounds with 2 simulated sites/);
    expect(sim.stderr).toMatch(/^round 2\/2: 2 sites/m);

    // A real federation on loopback: the same folder, not a byte changed.
    const port = await freePort();
    const yaml = testProjectYaml({ name: 'sim_e2e', org: 'org_a', port, sites: [['site-1', 'org_1'], ['site-2', 'org_2']], admins: [['admin@a.org', 'org_a', 'project_admin']] });
    const kits = new Map((await provision(parseProject(yaml), { workspace: join(dir, 'prov') })).kits.map((k) => [k.name, k.dir]));
    for (const [i, s] of ['site-1', 'site-2'].entries()) {
      await mkdir(join(dir, `${s}-ws`), { recursive: true });
      // The built-in tfjs learner on this site's share of the poc corpus; the site admits it.
      await writeFile(join(dir, `${s}-ws`, 'site.json'), JSON.stringify({ data: { site: i, sites: 2 }, components: { allow: ['tfjs-spam'] } }));
      await writeFile(join(kits.get(s)!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['tfjs-spam'], byoc: false }));
    }
    const server = await startFlare(['server', '--kit', kits.get('localhost')!, '--workspace', join(dir, 'server-ws')], { ready: /listening on port/ });
    for (const s of ['site-1', 'site-2']) await startFlare(['client', '--kit', kits.get(s)!, '--workspace', join(dir, `${s}-ws`)]);
    const admin = ['admin', '--kit', kits.get('admin@a.org')!];
    await until(
      async () => {
        const r = await flare([...admin, 'sites']);
        return (r.stdout.match(/ connected /g) ?? []).length >= 2 ? true : undefined;
      },
      180_000,
      'both sites to register',
      500,
    );
    const submitted = await flare([...admin, 'submit', job], 120_000);
    expect(submitted.code, submitted.stderr).toBe(0);
    const id = submitted.stdout.trim();
    const status = await until(
      async () => {
        const r = await flare([...admin, 'status', id, '--json']);
        const v = JSON.parse(r.stdout) as { record: { status: string; error?: { code: string } } };
        return v.record.status === 'SUBMITTED' || v.record.status === 'RUNNING' ? undefined : v.record;
      },
      600_000,
      'the job to end',
      500,
    );
    expect(status.status, JSON.stringify(status.error) + (server.stdout() + server.stderr()).slice(-4000)).toBe('FINISHED');

    const metrics = await flare([...admin, 'metrics', id, '--csv', join(dir, 'real.csv'), '--plot', join(dir, 'real.svg')], 120_000);
    expect(metrics.code, metrics.stderr).toBe(0);
    expect(metrics.stdout).toMatch(/global model, validated across sites/);
    expect(metrics.stdout).toMatch(/^\s+2\s+site-2\s/m);
    const real = csvRows(await readFile(join(dir, 'real.csv'), 'utf8'));
    const simulated = csvRows(await readFile(join(dir, 'sim.csv'), 'utf8'));
    expect(real.filter((r) => r.kind === 'global' && r.metric === 'accuracy').map((r) => r.round)).toEqual([1, 2]);
    // The same folder gives the same record shape in both: sources, kinds and metric names.
    expect(shape(real)).toEqual(shape(simulated));
    // The plot parses as XML in the CLI's unit test; here: a standalone SVG with a path per series.
    const svg = await readFile(join(dir, 'real.svg'), 'utf8');
    expect(svg).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    // accuracy and loss: global and both sites; what the sites sent with their updates: both sites.
    expect((svg.match(/<path /g) ?? []).length).toBeGreaterThanOrEqual(6);

    // A job id the server does not know: the admin sees the server's code.
    const unknown = await flare([...admin, 'metrics', '00000000-0000-4000-8000-000000000000']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/E_RUNTIME_JOB_NOT_FOUND/);
  });
});
