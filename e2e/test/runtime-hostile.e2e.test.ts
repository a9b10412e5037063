// Hostile sites and aggregation chosen per job (issue #14 items 1-4, issue #13 item 4) with real processes: three
// honest `flare client` sites, and a fourth built from the project's own packages with a valid kit
// (e2e/fixtures/scripted-site.mjs) that answers first with a malformed or boosted update.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { decodeModel } from '@flare/core';
import { parseProject, provision } from '@flare/pki';
import { selectBackend } from '@flare/tfjs';
import { testProjectYaml } from '@flare/pki/testing';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  auditOf as auditLines,
  FLARE_BIN as BIN,
  flare,
  freePort,
  jobEnded,
  readJobRecord as record,
  startNode,
  stopAll,
  stopProcess,
  submitJob,
  tempDir,
  until,
  writeSpamJob,
  type JobRecord,
} from './support.js';

const FEATURES = 64;
const SCRIPTED = resolve(import.meta.dirname, '../fixtures/scripted-site.mjs');
let root: string;
let port: number;
const kits = new Map<string, string>();
const ended = (ws: string, id: string): Promise<JobRecord> => jobEnded(ws, id, 600_000);
const siteWs = (site: string): string => join(root, `${site}-ws`);
const ALL = ['site-1', 'site-2', 'site-3', 'site-4'];

function job(name: string, over: { [k: string]: unknown } = {}): Promise<string> {
  const definition = { name, rounds: 2, min_clients: 3, round_timeout_s: 300, deploy: ALL, learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 2, batch_size: 32 } }, ...over };
  return writeSpamJob(join(root, 'jobs', name), definition, FEATURES);
}

const submit = (dir: string): Promise<string> => submitJob(kits.get('admin@a.org')!, dir);

/** A server, three honest sites and the hostile site-4 in `mode`. */
async function federation(ws: string, mode: string, honest = ['site-1', 'site-2', 'site-3']): Promise<void> {
  await startNode([BIN, 'server', '--kit', kits.get('localhost')!, '--workspace', ws], { ready: /listening on port/ });
  for (const s of honest) await startNode([BIN, 'client', '--kit', kits.get(s)!, '--workspace', siteWs(s)]);
  await startNode([SCRIPTED, '--kit', kits.get('site-4')!, '--workspace', siteWs('site-4'), '--server', `127.0.0.1:${port}`, '--mode', mode], { ready: /registered/ });
}

const maxAbs = (bytes: Uint8Array): number => {
  let m = 0;
  for (const t of decodeModel(bytes).params.values()) for (const x of t.data as Float32Array) m = Math.max(m, Math.abs(x));
  return m;
};

beforeAll(async () => {
  root = await tempDir('flare-rt-hostile-e2e-');
  port = await freePort();
  const yaml = testProjectYaml({ name: 'rt_hostile', org: 'org_a', port, sites: [1, 2, 3, 4].map((i) => [`site-${i}`, `org_${i}`] as const), admins: [['admin@a.org', 'org_a', 'project_admin']] });
  const r = await provision(parseProject(yaml), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
  for (const [i, s] of ALL.entries()) {
    await mkdir(siteWs(s), { recursive: true });
    await writeFile(join(siteWs(s), 'site.json'), JSON.stringify({ data: { site: i % 3, sites: 3, features: FEATURES }, components: { allow: ['tfjs-spam'], byoc: false } }));
    await writeFile(join(kits.get(s)!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['tfjs-spam'], byoc: false }));
  }
  await selectBackend({ prefer: 'cpu' });
});

afterEach(stopAll);

describe('a hostile site with a valid kit (real processes)', () => {
  it('answering first with a wrong shape: only its update is refused (E_MODEL_MISMATCH, audited with the site) and the job FINISHES', async () => {
    const ws = join(root, 'srv-shape');
    await federation(ws, 'shape');
    const id = await submit(await job('shape'));
    const rec = await ended(ws, id);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    for (const h of rec.history) expect(h.contributors).toEqual(['site-1', 'site-2', 'site-3']);
    const refused = (await auditLines(ws)).filter((e) => e.action === 'result_rejected');
    expect(refused).toHaveLength(2);
    for (const e of refused) expect(e).toMatchObject({ user: 'site-4', data: { site: 'site-4', code: 'E_MODEL_MISMATCH' } });
  });

  it('NUM_STEPS_CURRENT_ROUND = 1e9 with a +3.0 update does not replace the model under the default aggregator (its weight is capped and audited)', async () => {
    const ws = join(root, 'srv-steps');
    await federation(ws, 'steps');
    const id = await submit(await job('steps', { rounds: 2 }));
    const rec = await ended(ws, id);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    const dl = join(root, 'dl-steps');
    await mkdir(dl, { recursive: true });
    const r = await flare(['admin', '--kit', kits.get('admin@a.org')!, 'download', id, '-o', dl], 120_000);
    expect(r.code, r.stderr).toBe(0);
    // The attack unchecked makes every weight 6.0 (FedAvg weighted by 1e9 steps); honest updates are small.
    expect(maxAbs(new Uint8Array(await readFile(join(dl, `${id}.safetensors`))))).toBeLessThan(3);
    expect((await auditLines(ws)).some((e) => e.action === 'weight_capped' && e.data?.['from'] === 'site-4')).toBe(true);
  });

  it('a validation count of 1e9 does not set the job\'s metric (bounded weights, the spread shown)', async () => {
    const ws = join(root, 'srv-valn');
    await federation(ws, 'valn');
    const id = await submit(await job('valn', { rounds: 2 }));
    const rec = await ended(ws, id);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    const last = rec.history.at(-1)!;
    expect(last.site_validation?.['site-4']?.['accuracy']).toBeCloseTo(0.999, 6);
    expect(last.metrics['accuracy_max']).toBeCloseTo(0.999, 6);
    expect(last.metrics['accuracy']).toBeLessThan(0.99);
    expect(Math.abs(last.metrics['accuracy']! - last.metrics['accuracy_median']!)).toBeLessThan(0.2);
  });
});

describe('aggregation chosen per job (real processes)', () => {
  it('a krum job and a norm-bound job run from meta.json', async () => {
    const ws = join(root, 'srv-krum');
    await startNode([BIN, 'server', '--kit', kits.get('localhost')!, '--workspace', ws], { ready: /listening on port/ });
    for (const s of ['site-1', 'site-2', 'site-3']) await startNode([BIN, 'client', '--kit', kits.get(s)!, '--workspace', siteWs(s)]);
    const three = { deploy: ['site-1', 'site-2', 'site-3'], min_clients: 3 };
    const krum = await submit(await job('krum', { ...three, aggregator: { name: 'krum', args: { f: 0 } } }));
    const bound = await submit(await job('bound', { ...three, aggregator: { name: 'norm-bound', args: { maxNorm: 0.5 } } }));
    for (const id of [krum, bound]) expect((await ended(ws, id)).status).toBe('FINISHED');
  });

  it('FedAdam killed mid-way (server SIGKILL) and resumed ends bit for bit equal to an uninterrupted run (optimizer and norm-bound state checkpointed)', async () => {
    const three = { deploy: ['site-1', 'site-2', 'site-3'], min_clients: 3, rounds: 4, aggregator: { name: 'fedadam', args: { eta: 0.05, normBound: 'adaptive' } } };
    const download = async (id: string, name: string): Promise<Buffer> => {
      const dl = join(root, `dl-${name}`);
      await mkdir(dl, { recursive: true });
      const r = await flare(['admin', '--kit', kits.get('admin@a.org')!, 'download', id, '-o', dl], 120_000);
      expect(r.code, r.stderr).toBe(0);
      return readFile(join(dl, `${id}.safetensors`));
    };
    // Sites whose updates are exactly reproducible (tfjs shuffles each epoch at random): real processes with valid
    // kits, each moving the weights halfway to its own target.
    // In the run that is killed, round 2's training waits for a release file: the server is stopped with the job
    // provably mid-way, however fast the machine is.
    const release = join(root, 'adam-release');
    const runSites = async (hold: string[] = []): Promise<void> => {
      for (const [i, s] of ['site-1', 'site-2', 'site-3'].entries()) {
        await startNode([SCRIPTED, '--kit', kits.get(s)!, '--workspace', siteWs(s), '--server', `127.0.0.1:${port}`, '--mode', 'towards', '--target', String(i + 1), ...hold], { ready: /registered/ });
      }
    };
    // Uninterrupted.
    const wsA = join(root, 'srv-adam-a');
    await startNode([BIN, 'server', '--kit', kits.get('localhost')!, '--workspace', wsA], { ready: /listening on port/ });
    await runSites();
    const a = await submit(await job('adam-a', three));
    expect((await ended(wsA, a)).status).toBe('FINISHED');
    const expected = await download(a, 'adam-a');
    await stopAll();
    // Killed after round 2 and restarted on the same workspace.
    const wsB = join(root, 'srv-adam-b');
    const server = await startNode([BIN, 'server', '--kit', kits.get('localhost')!, '--workspace', wsB], { ready: /listening on port/ });
    await runSites(['--hold-from-round', '2', '--release-file', release]);
    const b = await submit(await job('adam-b', three));
    await until(async () => ((await record(wsB, b)).rounds_done >= 2 ? true : undefined), 600_000, 'two rounds');
    await stopProcess(server, 'SIGKILL');
    expect((await record(wsB, b)).status).toBe('RUNNING');
    await writeFile(release, '');
    await startNode([BIN, 'server', '--kit', kits.get('localhost')!, '--workspace', wsB], { ready: /listening on port/ });
    expect((await ended(wsB, b)).status).toBe('FINISHED');
    expect((await auditLines(wsB)).some((e) => e.action === 'job_resumed')).toBe(true);
    expect((await download(b, 'adam-b')).equals(expected)).toBe(true);
  });
});
