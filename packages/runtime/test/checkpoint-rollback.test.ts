// A local attacker who puts back an older *authentic* checkpoint (state.json, its MAC and its files, copied
// before) is caught on resume (issue #14): every checkpoint is numbered and recorded in the server's
// hash-chained audit log (`checkpoint_saved`), and a checkpoint on disk older than the newest recorded one is
// refused (E_RUNTIME_CHECKPOINT_ROLLBACK). The log itself is protected against rollback by the sites' anchors.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { cp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isFlareError, model, tensor, type FLModel } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { signJobBundle } from '../src/protocol/job-trust.js';
import { CHECKPOINT_SAVED_ACTION, JobStore, checkpointHeadsFromAudit, checkpointKeyFromKit, type CheckpointHead } from '../src/server/job-store.js';
import { ADMIN, adminKit, bundle, closeAll, jobDefinition, signingAdmin, startServer, startSite, tempDir } from './helpers.js';

afterEach(closeAll);

const KEY = checkpointKeyFromKit(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const submitter = { name: ADMIN.name, org: ADMIN.org, role: 'project_admin' };
const w = (x: number): FLModel => model({ w: tensor(new Float32Array([x, x]), [2]) });
const checkpointDir = (root: string, id: string): string => join(root, 'jobs', id, 'checkpoint');

/** What the attacker does: keeps a copy of the checkpoint folder, and later puts it back whole. */
async function snapshot(root: string, id: string): Promise<() => Promise<void>> {
  const dir = checkpointDir(root, id);
  const copy = `${dir}.copy-${randomUUID()}`;
  await cp(dir, copy, { recursive: true });
  return async () => {
    await rm(dir, { recursive: true, force: true });
    await cp(copy, dir, { recursive: true });
  };
}

describe('checkpoint rollback (issue #14)', () => {
  it('numbers every checkpoint; an authentic older one put back is refused against the newest recorded (E_RUNTIME_CHECKPOINT_ROLLBACK)', async () => {
    const root = await tempDir();
    const store = await JobStore.open(root, { key: KEY });
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    const heads: CheckpointHead[] = [];
    heads.push(await store.saveCheckpoint(id, 0, w(1)));
    heads.push(await store.saveCheckpoint(id, 1, w(2)));
    const restore = await snapshot(root, id);
    heads.push(await store.saveCheckpoint(id, 2, w(3)));
    expect(heads.map((h) => h.seq)).toEqual([1, 2, 3]);
    expect((await store.loadCheckpoint(id, { newest: heads[2]! }))?.head).toEqual(heads[2]);

    await restore();
    // Without the record, the old copy is authentic: its MAC verifies and it would be resumed from.
    expect((await store.loadCheckpoint(id))?.round).toBe(1);
    const refused: string[] = [];
    const err = await store.loadCheckpoint(id, { newest: heads[2]!, onRefused: (e, file) => refused.push(`${e.code} ${file}`) }).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_RUNTIME_CHECKPOINT_ROLLBACK')).toBe(true);
    expect((err as Error).message).toContain('checkpoint 2 (round 1)');
    expect(refused).toEqual(['E_RUNTIME_CHECKPOINT_ROLLBACK checkpoint/state.json']);
  });

  it('removing every checkpoint of a job the log says has one is a rollback too; a torn newest state still falls back to the one before it', async () => {
    const root = await tempDir();
    const store = await JobStore.open(root, { key: KEY });
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    await store.saveCheckpoint(id, 0, w(1));
    const newest = await store.saveCheckpoint(id, 1, w(2));
    // The newest state torn (a crash, or a planted file): the one right before the newest recorded is used.
    await writeFile(join(checkpointDir(root, id), 'state.json'), '{"round":');
    const refused: string[] = [];
    const cp1 = await store.loadCheckpoint(id, { newest, onRefused: (e) => refused.push(e.code) });
    expect(cp1?.round).toBe(0);
    expect(refused).toEqual(['E_RUNTIME_CHECKPOINT']);
    await rm(checkpointDir(root, id), { recursive: true });
    expect(isFlareError(await store.loadCheckpoint(id, { newest }).catch((e: unknown) => e), 'E_RUNTIME_CHECKPOINT_ROLLBACK')).toBe(true);
    expect(await store.loadCheckpoint(id)).toBeUndefined();
  });

  it('reads the newest checkpoint of each job from audit events', async () => {
    const a = randomUUID();
    const b = randomUUID();
    const sha = (c: string): string => c.repeat(64);
    const heads = await checkpointHeadsFromAudit([
      { action: CHECKPOINT_SAVED_ACTION, job: a, data: { round: 0, seq: 1, sha256: sha('1') } },
      { action: CHECKPOINT_SAVED_ACTION, job: a, data: { round: 1, seq: 2, sha256: sha('2') } },
      { action: CHECKPOINT_SAVED_ACTION, job: b, data: { round: 0, seq: 1, sha256: sha('3') } },
      { action: 'round_completed', job: a, data: { round: 2 } },
      { action: CHECKPOINT_SAVED_ACTION, job: a, data: { seq: 'x' } },
      { action: CHECKPOINT_SAVED_ACTION, job: '../etc', data: { round: 0, seq: 9, sha256: sha('4') } },
    ]);
    expect([...heads]).toEqual([
      [a, { seq: 2, sha256: sha('2') }],
      [b, { seq: 1, sha256: sha('3') }],
    ]);
  });

  it('a server given its log\'s checkpoints refuses to resume a job from an older authentic copy: the job FAILS (E_RUNTIME_CHECKPOINT_ROLLBACK), audited', async () => {
    const workspace = await tempDir();
    const id = randomUUID();
    const signed = signJobBundle(await adminKit(ADMIN), bundle(jobDefinition({ rounds: 4, min_clients: 2, deploy: ['site-1', 'site-2'] })), id);
    // As a server that checkpointed rounds 0 to 2 and recorded each in its audit log, then stopped.
    const store = await JobStore.open(workspace, { key: KEY });
    await store.create({ bundle: signed, submitter, id });
    const events: Array<{ action: string; job: string; data: { round: number; seq: number; sha256: string } }> = [];
    const save = async (r: number): Promise<void> => {
      const head = await store.saveCheckpoint(id, r, w(r + 1));
      events.push({ action: CHECKPOINT_SAVED_ACTION, job: id, data: { round: r, ...head } });
    };
    await save(0);
    const restore = await snapshot(workspace, id);
    await save(1);
    await save(2);
    await store.update(id, (rec) => {
      rec.status = 'RUNNING';
      rec.rounds_done = 3;
    });
    await restore();
    const { server, hub, audit } = await startServer(workspace, { checkpointKey: KEY, checkpointHeads: await checkpointHeadsFromAudit(events) });
    for (const n of [1, 2]) await (await startSite(n, hub)).engine.registered(10_000);
    const rec = await server.waitForJob(id, 30_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_RUNTIME_CHECKPOINT_ROLLBACK');
    expect(audit.events.find((e) => e.action === 'checkpoint_refused')).toMatchObject({ job: id, data: { code: 'E_RUNTIME_CHECKPOINT_ROLLBACK', file: 'checkpoint/state.json' } });
    expect(audit.events.some((e) => e.action === 'job_resumed' || e.action === 'round_started')).toBe(false);
  });

  it('a running server records each checkpoint in its audit log (checkpoint_saved with its number and digest)', async () => {
    const workspace = await tempDir();
    const { server, hub, audit } = await startServer(workspace, { checkpointKey: KEY });
    for (const n of [1, 2]) await (await startSite(n, hub)).engine.registered(10_000);
    const admin = await signingAdmin(hub);
    const id = await admin.submit(bundle(jobDefinition({ rounds: 2, min_clients: 2, deploy: ['site-1', 'site-2'] })));
    expect((await server.waitForJob(id, 30_000)).status).toBe('FINISHED');
    const saved = audit.events.filter((e) => e.action === CHECKPOINT_SAVED_ACTION && e.job === id);
    expect(saved.map((e) => e.data?.['seq'])).toEqual([1, 2]);
    const heads = await checkpointHeadsFromAudit(saved.map((e) => ({ action: e.action, job: e.job, data: e.data })));
    const newest = heads.get(id)!;
    const loaded = await server.store.loadCheckpoint(id, { newest });
    expect(loaded?.head).toEqual(newest);
  });
});
