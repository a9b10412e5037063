import { describe, expect, it } from 'vitest';
import { RecordBatcher, type RecordWriter } from '../src/server/deployer-records.js';
import { JobStore, type JobRecord } from '../src/server/job-store.js';
import { bundle, tempDir } from './helpers.js';

const submitter = { name: 'admin@a.org', org: 'a', role: 'lead' };

/** A store that counts its writes around a real JobStore. */
function counting(store: JobStore): RecordWriter & { writes: number } {
  const w = {
    writes: 0,
    update: (id: string, change: (r: JobRecord) => void) => {
      w.writes += 1;
      return store.update(id, change);
    },
  };
  return w;
}

describe('RecordBatcher (the deployer writes a job record once per batch, not once per site)', () => {
  it('gathers 500 sites accepting at once into at most two durable writes, each site in the record', async () => {
    const store = await JobStore.open(await tempDir());
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    const writer = counting(store);
    const batcher = new RecordBatcher(writer);
    const sites = Array.from({ length: 500 }, (_, i) => `site-${i}`);
    await Promise.all(sites.map((s) => batcher.apply(id, (r) => void r.sites.push(s))));
    expect(writer.writes).toBeLessThanOrEqual(2);
    expect((await store.get(id)).sites.sort()).toEqual([...sites].sort());
  });

  it('applies a change made while a write is in flight in the next write, after the first (in order)', async () => {
    const store = await JobStore.open(await tempDir());
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    const writer = counting(store);
    const batcher = new RecordBatcher(writer);
    const first = batcher.apply(id, (r) => void (r.refused['a'] = 'E_X: first'));
    await Promise.resolve();
    const second = batcher.apply(id, (r) => void (r.refused['a'] = 'E_X: second'));
    await Promise.all([first, second]);
    expect(writer.writes).toBe(2);
    expect((await store.get(id)).refused['a']).toBe('E_X: second');
  });

  it('rejects every change of a batch whose write failed (nothing acknowledged that is not on disk), and later batches still write', async () => {
    const store = await JobStore.open(await tempDir());
    const { id } = (await store.create({ bundle: bundle(), submitter })).record;
    let fail = true;
    const writer: RecordWriter = {
      update: (job, change) => (fail ? Promise.reject(new Error('disk full')) : store.update(job, change)),
    };
    const batcher = new RecordBatcher(writer);
    const outcomes = await Promise.allSettled([batcher.apply(id, (r) => void r.sites.push('x')), batcher.apply(id, (r) => void r.sites.push('y'))]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    expect((await store.get(id)).sites).toEqual([]);
    fail = false;
    await batcher.apply(id, (r) => void r.sites.push('z'));
    expect((await store.get(id)).sites).toEqual(['z']);
  });

  it('an unknown job fails its batch with the store\'s code (E_RUNTIME_JOB_NOT_FOUND)', async () => {
    const store = await JobStore.open(await tempDir());
    const batcher = new RecordBatcher(store);
    await expect(batcher.apply('00000000-0000-4000-8000-000000000000', () => undefined)).rejects.toMatchObject({ code: 'E_RUNTIME_JOB_NOT_FOUND' });
  });
});
