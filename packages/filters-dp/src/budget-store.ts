import { createHash, randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DpError, parseStrictJson } from '@flare/core';
import { z } from 'zod';

/**
 * What a site has spent on one job: the composed Rényi DP of every release, and the bookkeeping that turns it
 * into (ε, δ). Records are plain JSON, one file per job; see {@link fileBudgetStore}.
 */
export interface BudgetRecord {
  readonly version: 1;
  readonly site: string;
  readonly job: string;
  /** The RDP orders this job is accounted at (fixed when the record is created). */
  readonly orders: readonly number[];
  /** Composed RDP at each order. */
  readonly rdp: readonly number[];
  /** Sum of ε over pure-DP releases (basic composition), or null once a release that is not pure DP composed. */
  readonly pureEpsilon: number | null;
  /** Sampler error counted into ε (multiplicative bounds of the discrete samplers; see the README). */
  readonly samplerEpsilon: number;
  /** Sampler error in total variation, counted into δ as samplerTv·(1 + e^ε). */
  readonly samplerTv: number;
  /** How many updates were released. */
  readonly releases: number;
  /** Set when a release was refused for the budget: the site contributes nothing more to this job. */
  readonly exhausted: boolean;
  /** Adaptive clipping state of gaussian-dp for this job, when adaptive clipping is on. */
  readonly clipNorm?: number;
  /** ISO time of the last change. */
  readonly updatedAt: string;
}

/**
 * Persistent per-job privacy spending of one site. Implementations serialise `update` per (site, job) and make
 * each write atomic, so a crash leaves either the old or the new record, never a torn one.
 */
export interface BudgetStore {
  /** The record, or undefined when the job has spent nothing here. @throws DpError E_DP_BUDGET_CORRUPT */
  read(site: string, job: string): Promise<BudgetRecord | undefined>;
  /**
   * Reads the record, lets `change` decide, and writes the record it returns (if any) before resolving, all under
   * the job's lock. `change` must be synchronous and must not throw after deciding to write.
   *
   * @throws DpError E_DP_BUDGET_CORRUPT when the stored record does not validate, E_DP_BUDGET_WRITE when it
   * cannot be written.
   */
  update<T>(site: string, job: string, change: (current: BudgetRecord | undefined) => { readonly record?: BudgetRecord; readonly result: T }): Promise<T>;
}

const finite = z.number().refine(Number.isFinite, 'must be finite');
const nonNegative = finite.refine((v) => v >= 0, 'must be >= 0');
const MAX_ORDERS = 1024;

const recordSchema = z
  .strictObject({
    version: z.literal(1),
    site: z.string().min(1).max(1024),
    job: z.string().min(1).max(1024),
    orders: z.array(finite.refine((v) => v > 1, 'orders must be > 1')).min(1).max(MAX_ORDERS),
    rdp: z.array(nonNegative).min(1).max(MAX_ORDERS),
    pureEpsilon: nonNegative.nullable(),
    samplerEpsilon: nonNegative,
    samplerTv: nonNegative,
    releases: z.number().int().min(0),
    exhausted: z.boolean(),
    clipNorm: finite.refine((v) => v > 0, 'must be > 0').optional(),
    updatedAt: z.string().max(64),
  })
  .refine((r) => r.orders.length === r.rdp.length, 'orders and rdp differ in length');

// Records are a few KiB; anything far larger is not ours.
const MAX_RECORD_BYTES = 1 << 20;

/** Validates a record read from storage (the file is outside input until this passes). Internal. */
export function parseBudgetRecord(json: unknown, site: string, job: string, where: string): BudgetRecord {
  const parsed = recordSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DpError('E_DP_BUDGET_CORRUPT', `${where}: budget record fails validation at ${issue?.path.join('.') || '(top)'}: ${issue?.message ?? 'invalid'}`);
  }
  if (parsed.data.site !== site || parsed.data.job !== job) {
    throw new DpError('E_DP_BUDGET_CORRUPT', `${where}: budget record belongs to another site or job`);
  }
  const { clipNorm, ...rest } = parsed.data;
  return Object.freeze({ ...rest, ...(clipNorm === undefined ? {} : { clipNorm }) });
}

// One promise chain per record key, shared by every store in this process, so two filters of the same job
// (or two store objects over the same folder) never interleave a read-modify-write.
const locks = new Map<string, Promise<unknown>>();

async function withLock<T>(key: string, work: () => Promise<T>): Promise<T> {
  const previous = locks.get(key) ?? Promise.resolve();
  const run = previous.then(work, work);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  locks.set(key, tail);
  try {
    return await run;
  } finally {
    if (locks.get(key) === tail) locks.delete(key);
  }
}

/**
 * A {@link BudgetStore} in a folder (created with mode 0700): one JSON file per job, named by the SHA-256 of
 * site and job (so job names from the wire never become paths). Writes go to a temporary file that is fsynced
 * and renamed over the record, then the folder is fsynced: the record survives a crash or a restart. Serialises
 * updates within this process; run one client process per site workspace.
 *
 * @example
 * ```ts
 * const store = fileBudgetStore(join(env.workspace, 'dp-budget'));
 * ```
 */
export function fileBudgetStore(dir: string): BudgetStore {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('"dir" expected a non-empty path');
  const root = resolve(dir);
  const fileOf = (site: string, job: string) =>
    join(root, `${createHash('sha256').update(site).update('\u0000').update(job).digest('hex')}.json`);

  const read = async (site: string, job: string): Promise<BudgetRecord | undefined> => {
    const file = fileOf(site, job);
    let text: string;
    try {
      const info = await stat(file);
      if (!info.isFile() || info.size > MAX_RECORD_BYTES) throw new DpError('E_DP_BUDGET_CORRUPT', `budget record for job "${job}" is not a regular file of at most 1 MiB`);
      text = await readFile(file, 'utf8');
    } catch (e) {
      if (e instanceof DpError) throw e;
      // No record: the folder or the file does not exist (ENOTDIR: the folder path is a file, so nothing can have
      // been recorded there, and the write that must precede any release will fail with E_DP_BUDGET_WRITE).
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw new DpError('E_DP_BUDGET_CORRUPT', `budget record for job "${job}" cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
    }
    let json: unknown;
    try {
      json = parseStrictJson(text);
    } catch (e) {
      throw new DpError('E_DP_BUDGET_CORRUPT', `budget record for job "${job}" is not valid JSON`, { cause: e });
    }
    return parseBudgetRecord(json, site, job, `budget record for job "${job}"`);
  };

  const write = async (record: BudgetRecord): Promise<void> => {
    const file = fileOf(record.site, record.job);
    const tmp = join(root, `.${randomUUID()}.tmp`);
    try {
      await mkdir(root, { recursive: true, mode: 0o700 });
      const handle = await open(tmp, 'wx', 0o600);
      try {
        await handle.writeFile(`${JSON.stringify(record, null, 1)}\n`, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, file);
      // The rename is durable only once the folder's entry is on disk.
      const folder = await open(root, 'r');
      try {
        await folder.sync();
      } finally {
        await folder.close();
      }
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw new DpError('E_DP_BUDGET_WRITE', `budget record for job "${record.job}" could not be written (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
    }
  };

  return Object.freeze({
    read,
    update<T>(site: string, job: string, change: (current: BudgetRecord | undefined) => { readonly record?: BudgetRecord; readonly result: T }): Promise<T> {
      return withLock(fileOf(site, job), async () => {
        const decided = change(await read(site, job));
        if (decided.record !== undefined) await write(decided.record);
        return decided.result;
      });
    },
  });
}

/**
 * A {@link BudgetStore} in memory: for tests and for programs that keep their own persistence. Spending is lost
 * when the process ends, so a site policy must not rely on it.
 */
export function memoryBudgetStore(): BudgetStore {
  const records = new Map<string, BudgetRecord>();
  const id = randomUUID();
  const keyOf = (site: string, job: string) => `${site}\u0000${job}`;
  return Object.freeze({
    read: async (site: string, job: string) => records.get(keyOf(site, job)),
    update<T>(site: string, job: string, change: (current: BudgetRecord | undefined) => { readonly record?: BudgetRecord; readonly result: T }): Promise<T> {
      return withLock(`${id}\u0000${keyOf(site, job)}`, async () => {
        const decided = change(records.get(keyOf(site, job)));
        if (decided.record !== undefined) records.set(keyOf(site, job), decided.record);
        return decided.result;
      });
    },
  });
}
