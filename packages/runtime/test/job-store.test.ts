import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeModel, encodeModel, isFlareError, model, tensor } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { JobStore } from '../src/server/job-store.js';
import { bundle, jobDefinition, tempDir } from './helpers.js';

const submitter = { name: 'admin@a.org', org: 'a', role: 'lead' };

describe('JobStore', () => {
  it('creates a job (SUBMITTED), lists it, and keeps the definition exactly as submitted', async () => {
    const store = await JobStore.open(await tempDir());
    const { record: rec } = await store.create({ bundle: bundle(), submitter });
    expect(rec.status).toBe('SUBMITTED');
    expect(rec.id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await store.list()).map((r) => r.id)).toEqual([rec.id]);
    expect((await store.definition(rec.id)).raw).toEqual(jobDefinition());
    expect((await store.definition(rec.id)).definition.round_timeout_s).toBe(10);
    expect((await store.initialModel(rec.id)).params.get('w')?.shape).toEqual([2]);
  });

  it('serves job summaries from memory once listed: a newest-first page, status changes included, no record read again', async () => {
    const root = await tempDir();
    const store = await JobStore.open(root);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await store.create({ bundle: bundle(), submitter })).record.id);
    expect((await store.summaries()).map((j) => j.id)).toEqual(ids);
    expect((await store.summaries(2)).map((j) => j.id)).toEqual(ids.slice(3));
    await store.update(ids[4]!, (r) => {
      r.status = 'RUNNING';
      r.rounds_done = 3;
    });
    expect((await store.summaries(1))[0]).toEqual({ id: ids[4], name: 'towards', status: 'RUNNING', submitter: 'admin@a.org', rounds_done: 3 });
    // Records removed from disk behind the store's back: the listing does not read them (it would drop them).
    for (const id of ids) await writeFile(join(root, 'jobs', id, 'record.json'), 'not json');
    expect((await store.summaries()).map((j) => j.status)).toEqual(['SUBMITTED', 'SUBMITTED', 'SUBMITTED', 'SUBMITTED', 'RUNNING']);
    await expect(store.summaries(0)).rejects.toThrow(RangeError);
    await expect(store.summaries(10_001)).rejects.toThrow(RangeError);
  });

  it('a reopened store lists the jobs on disk once, then from memory', async () => {
    const root = await tempDir();
    const first = await JobStore.open(root);
    const ids = [(await first.create({ bundle: bundle(), submitter })).record.id, (await first.create({ bundle: bundle(), submitter })).record.id];
    const again = await JobStore.open(root);
    expect((await again.summaries()).map((j) => j.id).sort()).toEqual([...ids].sort());
    const third = (await again.create({ bundle: bundle(), submitter })).record.id;
    expect((await again.summaries()).map((j) => j.id).at(-1)).toBe(third);
    expect(await again.summaries()).toHaveLength(3);
  });

  it('checkpoints atomically and loads the last one; the one before it is kept as the fallback, older files are removed', async () => {
    const root = await tempDir();
    const store = await JobStore.open(root);
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    expect(await store.loadCheckpoint(id)).toBeUndefined();
    for (const r of [0, 1, 2]) await store.saveCheckpoint(id, r, model({ w: tensor(new Float32Array([r, r]), [2]) }));
    const cp = await store.loadCheckpoint(id);
    expect(cp?.round).toBe(2);
    expect(Array.from(cp!.model.params.get('w')!.data as Float32Array)).toEqual([2, 2]);
    const dir = join(root, 'jobs', id, 'checkpoint');
    const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8'));
    const previous = JSON.parse(await readFile(join(dir, 'state.prev.json'), 'utf8'));
    expect(state.file).toMatch(/^global-r2-[0-9a-f]{8}\.safetensors$/);
    expect(previous.file).toMatch(/^global-r1-[0-9a-f]{8}\.safetensors$/);
    expect((await readdir(dir)).sort()).toEqual([previous.file, state.file, 'state.json', 'state.prev.json'].sort());
  });

  it('refuses a checkpoint whose model file was swapped or corrupted (E_RUNTIME_CHECKPOINT); with a previous one, falls back to it', async () => {
    const root = await tempDir();
    const store = await JobStore.open(root);
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    const dir = join(root, 'jobs', id, 'checkpoint');
    const fileOf = async (): Promise<string> => (JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { file: string }).file;
    await store.saveCheckpoint(id, 0, model({ w: tensor(new Float32Array([1, 2]), [2]) }));
    const swapped = encodeModel(model({ w: tensor(new Float32Array([9, 9]), [2]) }));
    await writeFile(join(dir, await fileOf()), swapped);
    const err = await store.loadCheckpoint(id).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_RUNTIME_CHECKPOINT')).toBe(true);
    await store.saveCheckpoint(id, 1, model({ w: tensor(new Float32Array([3, 3]), [2]) }));
    await store.saveCheckpoint(id, 2, model({ w: tensor(new Float32Array([4, 4]), [2]) }));
    await writeFile(join(dir, await fileOf()), swapped);
    const refused: string[] = [];
    const cp = await store.loadCheckpoint(id, { onRefused: (e) => refused.push(e.code) });
    expect(refused).toEqual(['E_RUNTIME_CHECKPOINT']);
    expect(cp?.round).toBe(1);
  });

  it('refuses ids that are not server-made UUIDs before touching a path (E_RUNTIME_JOB_NOT_FOUND)', async () => {
    const store = await JobStore.open(await tempDir());
    for (const bad of ['../../etc', 'x', '00000000-0000-0000-0000-000000000000/..']) {
      const err = await store.get(bad).catch((e: unknown) => e);
      expect(isFlareError(err, 'E_RUNTIME_JOB_NOT_FOUND')).toBe(true);
    }
  });

  it('refuses a job whose model is not safetensors, or whose custom files do not match their digests', async () => {
    const store = await JobStore.open(await tempDir());
    const e1 = await store.create({ bundle: bundle(jobDefinition(), new Map(), new Uint8Array([1, 2, 3])), submitter }).catch((e: unknown) => e);
    expect(isFlareError(e1, 'E_RUNTIME_JOB_INVALID')).toBe(true);
    const def = jobDefinition({ byoc: { files: { 'a.js': '0'.repeat(64) }, signature: 'x' } });
    const e2 = await store.create({ bundle: bundle(def, new Map([['a.js', new Uint8Array([1])]])), submitter }).catch((e: unknown) => e);
    expect(isFlareError(e2, 'E_RUNTIME_BYOC_SIGNATURE')).toBe(true);
  });

  it('takes the id the admin chose (a UUID), and refuses one already in use (E_RUNTIME_JOB_INVALID)', async () => {
    const store = await JobStore.open(await tempDir());
    const id = '0f0e0d0c-0b0a-4908-8706-050403020100';
    expect((await store.create({ bundle: bundle(), submitter, id })).record.id).toBe(id);
    expect(isFlareError(await store.create({ bundle: bundle(), submitter, id }).catch((e: unknown) => e), 'E_RUNTIME_JOB_INVALID')).toBe(true);
    expect(isFlareError(await store.create({ bundle: bundle(), submitter, id: '../x' }).catch((e: unknown) => e), 'E_RUNTIME_JOB_NOT_FOUND')).toBe(true);
  });

  it('checkpoints the aggregator state and the workflow state with the model, each with its digest', async () => {
    const root = await tempDir();
    const store = await JobStore.open(root);
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    await store.saveCheckpoint(id, 0, model({ w: tensor(new Float32Array([1, 2]), [2]) }), { aggregator: new Uint8Array([1, 2, 3]), workflow: { step: 1 } });
    await store.saveCheckpoint(id, 1, model({ w: tensor(new Float32Array([1, 2]), [2]) }), { aggregator: new Uint8Array([4, 5]), workflow: { step: 2 } });
    const cp = await store.loadCheckpoint(id);
    expect(Array.from(cp!.aggregator!)).toEqual([4, 5]);
    expect(cp!.workflow).toEqual({ step: 2 });
    const dir = join(root, 'jobs', id, 'checkpoint');
    // Both states' aggregator files changed: nothing verifies, the load fails with the code.
    for (const name of ['state.json', 'state.prev.json']) {
      const state = JSON.parse(await readFile(join(dir, name), 'utf8')) as { aggregator: { file: string } };
      await writeFile(join(dir, state.aggregator.file), new Uint8Array([9]));
    }
    expect(isFlareError(await store.loadCheckpoint(id).catch((e: unknown) => e), 'E_RUNTIME_CHECKPOINT')).toBe(true);
  });

  it('serialises concurrent record updates (no lost update)', async () => {
    const store = await JobStore.open(await tempDir());
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.update(id, (r) => void r.sites.push(`s${i}`))));
    expect((await store.get(id)).sites).toHaveLength(20);
  });

  it('result() needs a FINISHED job (E_RUNTIME_JOB_STATE)', async () => {
    const store = await JobStore.open(await tempDir());
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    expect(isFlareError(await store.result(id).catch((e: unknown) => e), 'E_RUNTIME_JOB_STATE')).toBe(true);
    await store.saveCheckpoint(id, 0, decodeModel(bundle().model!));
    await store.update(id, (r) => {
      r.status = 'FINISHED';
    });
    expect(decodeModel(await store.result(id)).params.has('w')).toBe(true);
  });
});
