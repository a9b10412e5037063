// Checkpoints and job state authenticated with a key only the server holds (issue #14.12): a checkpoint planted
// on the server's disk, its SHA-256 recomputed in state.json, is refused and audited; the server resumes from
// the one before it.
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeModel, encodeModel, isFlareError, model, tensor, type FLModel } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { signJobBundle } from '../src/protocol/job-trust.js';
import { JobStore, checkpointKeyFromKit } from '../src/server/job-store.js';
import { ADMIN, adminKit, bundle, closeAll, jobDefinition, signingAdmin, startServer, startSite, tempDir } from './helpers.js';

afterEach(closeAll);

const KEY = checkpointKeyFromKit(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const submitter = { name: ADMIN.name, org: ADMIN.org, role: 'project_admin' };
const w = (x: number): FLModel => model({ w: tensor(new Float32Array([x, x]), [2]) });
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** What an attacker with write access does: swap the newest model file and recompute its digest in state.json. */
async function plant(root: string, id: string, value: number): Promise<void> {
  const dir = join(root, 'jobs', id, 'checkpoint');
  const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { file: string; sha256: string };
  const bytes = encodeModel(w(value));
  await writeFile(join(dir, state.file), bytes);
  await writeFile(join(dir, 'state.json'), JSON.stringify({ ...state, sha256: sha(bytes) }));
}

describe('authenticated checkpoints (issue #14.12)', () => {
  it('a keyed store refuses a planted checkpoint (E_RUNTIME_CHECKPOINT_FORGED), says so, and falls back to the previous one', async () => {
    const root = await tempDir();
    const store = await JobStore.open(root, { key: KEY });
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    for (const r of [0, 1]) await store.saveCheckpoint(id, r, w(r + 1));
    expect((await store.loadCheckpoint(id))?.round).toBe(1);
    await plant(root, id, 6);
    const refused: string[] = [];
    const cp = await store.loadCheckpoint(id, { onRefused: (e, file) => refused.push(`${e.code} ${file}`) });
    expect(refused).toEqual(['E_RUNTIME_CHECKPOINT_FORGED checkpoint/state.json']);
    expect(cp?.round).toBe(0);
    expect(Array.from(cp!.model.params.get('w')!.data as Float32Array)).toEqual([1, 1]);
  });

  it('a state without a MAC, or written with another key, is refused; with nothing left that verifies the load fails with the code', async () => {
    const root = await tempDir();
    const unkeyed = await JobStore.open(root);
    const { id } = (await unkeyed.create({ bundle: bundle(), submitter })).record;
    await unkeyed.saveCheckpoint(id, 0, w(1));
    const keyed = await JobStore.open(root, { key: KEY });
    expect(isFlareError(await keyed.loadCheckpoint(id).catch((e: unknown) => e), 'E_RUNTIME_CHECKPOINT_FORGED')).toBe(true);
    const other = await JobStore.open(root, { key: checkpointKeyFromKit(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey) });
    await other.saveCheckpoint(id, 1, w(2));
    const refused: string[] = [];
    const err = await keyed.loadCheckpoint(id, { onRefused: (e, file) => refused.push(`${e.code} ${file}`) }).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_RUNTIME_CHECKPOINT_FORGED')).toBe(true);
    expect(refused).toEqual(['E_RUNTIME_CHECKPOINT_FORGED checkpoint/state.json', 'E_RUNTIME_CHECKPOINT_FORGED checkpoint/state.prev.json']);
    await expect(JobStore.open(root, { key: new Uint8Array(16) })).rejects.toThrow(RangeError);
  });

  it('a server resuming a job whose newest checkpoint was planted refuses it (checkpoint_refused, audited) and resumes from the previous round', async () => {
    const workspace = await tempDir();
    const store = await JobStore.open(workspace, { key: KEY });
    const id = randomUUID();
    const signed = signJobBundle(await adminKit(ADMIN), bundle(jobDefinition({ rounds: 4, min_clients: 2, deploy: ['site-1', 'site-2'] })), id);
    await store.create({ bundle: signed, submitter, id });
    // As a server that stopped after round 1 left it: RUNNING, two rounds checkpointed.
    for (const r of [0, 1]) await store.saveCheckpoint(id, r, w(r + 1));
    await store.update(id, (rec) => {
      rec.status = 'RUNNING';
      rec.rounds_done = 2;
    });
    await plant(workspace, id, 6);
    const { server, hub, audit } = await startServer(workspace, { checkpointKey: KEY });
    for (const n of [1, 2]) await (await startSite(n, hub)).engine.registered(10_000);
    const rec = await server.waitForJob(id, 30_000);
    expect(rec.status, rec.error?.message).toBe('FINISHED');
    const refused = audit.events.find((e) => e.action === 'checkpoint_refused');
    expect(refused).toMatchObject({ job: id, data: { code: 'E_RUNTIME_CHECKPOINT_FORGED', file: 'checkpoint/state.json' } });
    expect(audit.events.find((e) => e.action === 'job_resumed')).toMatchObject({ data: { start_round: 1 } });
    expect(rec.history.map((h) => h.round)).toEqual([1, 2, 3]);
    const admin = await signingAdmin(hub);
    // The planted model (all 6.0) never reached the final model: from round 0's 1.0 the sites (pulling towards 1
    // and 2) end near 1.44; from the planted 6.0 two rounds would end at 2.6.
    const final = decodeModel(await admin.download(id));
    for (const x of final.params.get('w')!.data as Float32Array) expect(x).toBeLessThan(2);
  });
});
