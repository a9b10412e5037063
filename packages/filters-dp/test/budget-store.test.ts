import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFlareError } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { BUDGET_ORDERS, fileBudgetStore, memoryBudgetStore, type BudgetRecord } from '../src/index.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'flare-budget-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) {
    chmodSync(d, 0o700);
    rmSync(d, { recursive: true, force: true });
  }
});

const record = (site: string, job: string, releases: number): BudgetRecord => ({
  version: 1,
  site,
  job,
  orders: BUDGET_ORDERS,
  rdp: BUDGET_ORDERS.map((a) => a * releases * 0.01),
  pureEpsilon: null,
  samplerEpsilon: 0,
  samplerTv: 0,
  releases,
  exhausted: false,
  updatedAt: new Date(0).toISOString(),
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return isFlareError(e) ? e.code : `not a FlareError: ${String(e)}`;
  }
  return undefined;
}

describe('fileBudgetStore', () => {
  it('writes records atomically to a 0700 folder as 0600 files named by hash, leaving no temporary file', async () => {
    const dir = join(tmp(), 'dp-budget');
    const store = fileBudgetStore(dir);
    await store.update('site-a', '../../etc/passwd', () => ({ record: record('site-a', '../../etc/passwd', 1), result: undefined }));
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[0-9a-f]{64}\.json$/);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, files[0]!)).mode & 0o777).toBe(0o600);
    const back = await fileBudgetStore(dir).read('site-a', '../../etc/passwd');
    expect(back?.releases).toBe(1);
    expect(back?.job).toBe('../../etc/passwd');
  });

  it('answers undefined for a job that spent nothing', async () => {
    expect(await fileBudgetStore(tmp()).read('s', 'j')).toBeUndefined();
  });

  it('serialises concurrent read-modify-write updates of one job (no lost update)', async () => {
    const dir = tmp();
    const bump = (store: ReturnType<typeof fileBudgetStore>) =>
      store.update('s', 'j', (cur) => ({ record: record('s', 'j', (cur?.releases ?? 0) + 1), result: undefined }));
    // Two store objects over the same folder share the lock, as two filters of one job would.
    const a = fileBudgetStore(dir);
    const b = fileBudgetStore(dir);
    await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 === 0 ? a : b)));
    expect((await a.read('s', 'j'))?.releases).toBe(20);
  });

  it('refuses a record that fails validation, belongs to another job, or is not JSON (E_DP_BUDGET_CORRUPT)', async () => {
    const dir = tmp();
    const store = fileBudgetStore(dir);
    await store.update('s', 'j', () => ({ record: record('s', 'j', 1), result: undefined }));
    const file = join(dir, readdirSync(dir)[0]!);
    const good = readFileSync(file, 'utf8');
    const cases = [
      JSON.stringify({ ...JSON.parse(good), releases: -1 }),
      JSON.stringify({ ...JSON.parse(good), job: 'other' }),
      JSON.stringify({ ...JSON.parse(good), extra: 1 }),
      JSON.stringify({ ...JSON.parse(good), rdp: [1] }),
      '{"version": 1, "version": 1}',
      'not json',
    ];
    for (const text of cases) {
      writeFileSync(file, text);
      expect(await codeOf(store.read('s', 'j'))).toBe('E_DP_BUDGET_CORRUPT');
      expect(await codeOf(store.update('s', 'j', () => ({ result: undefined })))).toBe('E_DP_BUDGET_CORRUPT');
    }
  });

  it('reports a record it cannot write (E_DP_BUDGET_WRITE)', async () => {
    const parent = tmp();
    const file = join(parent, 'not-a-folder');
    writeFileSync(file, 'x');
    expect(await codeOf(fileBudgetStore(file).update('s', 'j', () => ({ record: record('s', 'j', 1), result: undefined })))).toBe('E_DP_BUDGET_WRITE');
  });

  it('rejects an empty folder path with TypeError', () => {
    expect(() => fileBudgetStore('')).toThrow(TypeError);
  });
});

describe('memoryBudgetStore', () => {
  it('keeps records per site and job in memory', async () => {
    const store = memoryBudgetStore();
    await store.update('s', 'j', () => ({ record: record('s', 'j', 2), result: undefined }));
    expect((await store.read('s', 'j'))?.releases).toBe(2);
    expect(await store.read('s', 'other')).toBeUndefined();
    expect(await memoryBudgetStore().read('s', 'j')).toBeUndefined();
  });
});
