// Workflows beyond scatter-and-gather (issue #13 item 5), reachable from the CLI with real processes: cross-site
// evaluation and cyclic jobs from `flare poc --workflow ...`, and from `flare admin submit` of a job folder to a
// running `flare server` and three `flare client` sites, with the matrix downloaded by `flare admin result`.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseProject, provision } from '@flare/pki';
import { selectBackend } from '@flare/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditOf, flare, freePort, startFlare, stopAll, tempDir, writeSpamJob } from './support.js';

const SITES = ['site-1', 'site-2', 'site-3'];
const FEATURES = 64;

interface Cell {
  readonly metrics?: { readonly accuracy?: number; readonly loss?: number };
  readonly error?: { readonly code: string };
}
interface Matrix {
  readonly format: string;
  readonly rounds: number;
  readonly models: string[];
  readonly sites: string[];
  readonly results: Record<string, Record<string, Cell>>;
  readonly refused_models: Record<string, unknown>;
}

/** Every cell of the matrix holds an accuracy in [0, 1] (each site evaluated each model on its own data). */
function expectFullMatrix(m: Matrix, rounds: number, sites: readonly string[] = SITES): void {
  expect(m.format).toBe('flare-ts/cross-site-eval/v1');
  expect(m.rounds).toBe(rounds);
  expect(m.models).toEqual(['global', ...sites]);
  expect(m.sites).toEqual(sites);
  expect(m.refused_models).toEqual({});
  for (const model of m.models) {
    for (const site of sites) {
      const acc = m.results[model]?.[site]?.metrics?.accuracy;
      expect(acc, `${model} on ${site}: ${JSON.stringify(m.results[model]?.[site])}`).toBeGreaterThanOrEqual(0);
      expect(acc).toBeLessThanOrEqual(1);
    }
  }
}

describe('flare poc --workflow', () => {
  it('cross-site-eval: trains, then every site evaluates the global model and every local model; prints the matrix', async () => {
    const ws = await tempDir('flare-wf-cse-');
    const r = await flare(['poc', '--workflow', 'cross-site-eval', '--clients', '2', '--rounds', '1', '--json', '--workspace', ws], 300_000);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { status: string; workflow: string; rounds: unknown[]; cross_site_eval: Matrix; final_metrics: Record<string, number>; audit: { verified: boolean } };
    expect(s.status).toBe('FINISHED');
    expect(s.workflow).toBe('cross_site_eval');
    expect(s.rounds).toHaveLength(1);
    expectFullMatrix(s.cross_site_eval, 1, SITES.slice(0, 2));
    // The last round's figure is the sites' validation of the final global model: the matrix's `global` row.
    const row = SITES.slice(0, 2).map((x) => s.cross_site_eval.results['global']![x]!.metrics!.accuracy!);
    expect(s.final_metrics['accuracy_min']).toBeCloseTo(Math.min(...row), 9);
    expect(s.final_metrics['accuracy_max']).toBeCloseTo(Math.max(...row), 9);
    expect(s.audit.verified).toBe(true);
  }, 600_000);

  it('cyclic: the model visits every site in turn each round; the summary gives the final metrics', async () => {
    const r = await flare(['poc', '--workflow', 'cyclic', '--clients', '2', '--rounds', '2'], 300_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/round 1\/2: the model visited site-\d -> site-\d in/);
    expect(r.stdout).toMatch(/^FLARE-TS poc: FINISHED/);
    expect(r.stdout).toMatch(/^workflow cyclic: final metrics accuracy 0\.\d{4}, .*sites 2$/m);
  }, 600_000);

  it('refuses an unknown workflow (usage error, exit 2)', async () => {
    const r = await flare(['poc', '--workflow', 'gossip']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('gossip');
  }, 600_000);
});

describe('flare admin submit of workflow jobs (server and sites as processes)', () => {
  let root: string;
  const kits = new Map<string, string>();
  const adminArgs = (): string[] => ['admin', '--kit', kits.get('admin@a.org')!];

  function job(name: string, over: Record<string, unknown>): Promise<string> {
    const definition = { name, rounds: 2, min_clients: 3, round_timeout_s: 300, deploy: SITES, learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 1, batch_size: 64 } }, ...over };
    return writeSpamJob(join(root, 'jobs', name), definition, FEATURES);
  }

  /** Polls `flare admin status --json` (a process each time) until the job ends; bounded. */
  async function ended(id: string): Promise<{ status: string; history: Array<{ contributors: string[]; metrics: Record<string, number> }>; error?: unknown }> {
    const end = Date.now() + 300_000;
    for (;;) {
      const r = await flare([...adminArgs(), 'status', id, '--json'], 60_000);
      expect(r.code, r.stderr).toBe(0);
      const rec = (JSON.parse(r.stdout) as { record: { status: string; history: Array<{ contributors: string[]; metrics: Record<string, number> }> } }).record;
      if (rec.status !== 'RUNNING' && rec.status !== 'SUBMITTED') return rec;
      if (Date.now() > end) throw new Error(`job ${id} did not end in 300 s`);
      await new Promise((r2) => setTimeout(r2, 500));
    }
  }

  beforeAll(async () => {
    root = await tempDir('flare-wf-admin-');
    const port = await freePort();
    const yaml = `api_version: 3
name: wf_admin
participants:
  - name: localhost
    type: server
    org: org_a
    fed_learn_port: ${port}
${SITES.map((s, i) => `  - name: ${s}\n    type: client\n    org: org_${i + 1}\n`).join('')}  - name: admin@a.org
    type: admin
    org: org_a
    role: project_admin
`;
    const r = await provision(parseProject(yaml), { workspace: root });
    for (const k of r.kits) kits.set(k.name, k.dir);
    for (const [i, s] of SITES.entries()) {
      const ws = join(root, `${s}-ws`);
      await mkdir(ws, { recursive: true });
      await writeFile(join(ws, 'site.json'), JSON.stringify({ data: { site: i, sites: 3, features: FEATURES }, components: { allow: ['tfjs-spam'], byoc: false } }));
      await writeFile(join(kits.get(s)!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['tfjs-spam'], byoc: false }));
    }
    await selectBackend({ prefer: 'cpu' });
    await startFlare(['server', '--kit', kits.get('localhost')!, '--workspace', join(root, 'server-ws')], { ready: /listening on port/ });
    for (const s of SITES) await startFlare(['client', '--kit', kits.get(s)!, '--workspace', join(root, `${s}-ws`)]);
  }, 180_000);

  afterAll(stopAll);

  it('a cross_site_eval job folder runs, and `flare admin result` prints the matrix and writes it with -o', async () => {
    const sub = await flare([...adminArgs(), 'submit', await job('cse', { workflow: 'cross_site_eval', workflow_args: { eval_timeout_s: 120 } })], 120_000);
    expect(sub.code, sub.stderr).toBe(0);
    const id = sub.stdout.trim();
    const rec = await ended(id);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    const file = join(root, 'out', 'matrix.json');
    await mkdir(join(root, 'out'));
    const saved = await flare([...adminArgs(), 'result', id, '-o', file], 60_000);
    expect(saved.code, saved.stderr).toBe(0);
    expect(saved.stdout.trim()).toBe(file);
    expectFullMatrix(JSON.parse(await readFile(file, 'utf8')) as Matrix, 2);
    const table = await flare([...adminArgs(), 'result', id], 60_000);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^model\s+site-1\s+site-2\s+site-3$/m);
    for (const row of ['global', ...SITES]) expect(table.stdout).toMatch(new RegExp(`^${row}(\\s+[01]\\.\\d{4}){3}$`, 'm'));
  }, 600_000);

  it('a cyclic job folder runs: every round every site trains the model in turn', async () => {
    const sub = await flare([...adminArgs(), 'submit', await job('cyc', { workflow: 'cyclic', workflow_args: { order: 'random' } })], 120_000);
    expect(sub.code, sub.stderr).toBe(0);
    const rec = await ended(sub.stdout.trim());
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.history).toHaveLength(2);
    for (const h of rec.history) expect([...h.contributors].sort()).toEqual(SITES);
    expect(rec.history[1]!.metrics['sites']).toBe(3);
    // Every hop after the first was signed by the site that trained it and verified by the next (issue #14).
    for (const s of SITES) {
      const lines = (await auditOf(join(root, `${s}-ws`))).filter((l) => l.job === sub.stdout.trim());
      expect(lines.filter((l) => l.action === 'hop_signed'), s).toHaveLength(2);
      expect(lines.some((l) => l.action === 'hop_verified'), s).toBe(true);
      expect(lines.some((l) => l.action === 'hop_refused'), s).toBe(false);
    }
    // A cyclic job stores no matrix: asking for one is refused with its code.
    const none = await flare([...adminArgs(), 'result', sub.stdout.trim()], 60_000);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('E_RUNTIME_JOB_NOT_FOUND');
  }, 600_000);

  it('refuses at submit a workflow_args field the workflow does not take (E_RUNTIME_JOB_INVALID, naming it)', async () => {
    const sub = await flare([...adminArgs(), 'submit', await job('cyc-bad', { workflow: 'cyclic', workflow_args: { order: 'sideways' } })], 120_000);
    expect(sub.code).toBe(1);
    expect(sub.stderr).toContain('E_RUNTIME_JOB_INVALID');
    expect(sub.stderr).toContain('workflow_args.order');
  }, 600_000);
});
