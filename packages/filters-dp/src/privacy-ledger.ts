import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { canonicalJson, DpError, parseStrictJson, type AuditHook, type JsonValue } from '@flare/core';
import { z } from 'zod';

// One privacy ledger per dataset of a site, shared by every job that trains on it: two concurrent jobs spend
// one budget. A ledger is an append-only, hash-chained JSON Lines file; every line carries the running totals
// (composed RDP and the bookkeeping that turns it into (ε, δ)), so the last line is the spending, and totals can
// only grow along the chain. Each new head (seq, hash) is reported as an audit event: the site's audit log
// (itself anchored at the server) remembers it, and a ledger deleted or restored from an older copy no longer
// reaches it (E_DP_LEDGER_ROLLBACK). A line is written and synced before anything is released (write-ahead: a
// crash over-counts, never under-counts).

/** The audit action that carries a ledger's head (`data: { dataset, seq, head }`). */
export const LEDGER_HEAD_ACTION = 'dp_ledger_head';
/** The audit action written when a ledger is found deleted, rolled back or rewritten (`data: { dataset, code }`). */
export const LEDGER_ROLLBACK_ACTION = 'dp_ledger_rollback';
/** The dataset a budget charges when it names none: one ledger for all of the site's data (the safe default). */
export const DEFAULT_DATASET = 'default';

/** What a dataset's releases have composed to, across every job. */
export interface LedgerTotals {
  /** The RDP orders this ledger is accounted at (fixed when it is created). */
  readonly orders: readonly number[];
  /** Composed RDP at each order. */
  readonly rdp: readonly number[];
  /** Sum of ε over pure-DP releases (basic composition), or null once a release that is not pure DP composed. */
  readonly pureEpsilon: number | null;
  /** Sampler error counted into ε (multiplicative bounds of the discrete samplers). */
  readonly samplerEpsilon: number;
  /** Sampler error in total variation, counted into δ as samplerTv·(1 + e^ε). */
  readonly samplerTv: number;
  /** Releases from this dataset, all jobs together. */
  readonly releases: number;
}

/** One job's share of a ledger. */
export interface LedgerJobState {
  readonly releases: number;
  /** Set when a release of this job was refused for the budget: it contributes nothing more. */
  readonly exhausted: boolean;
  /** Adaptive clipping state of gaussian-dp for this job. */
  readonly clipNorm?: number;
}

/** What a ledger holds for a dataset and a job, as {@link PrivacyLedger.read} returns it. */
export interface LedgerView {
  /** Undefined before the dataset's first release. */
  readonly totals: LedgerTotals | undefined;
  readonly job: LedgerJobState;
}

/** A ledger's head: the last line's position and hash. */
export interface LedgerHead {
  readonly dataset: string;
  readonly seq: number;
  readonly hash: string;
}

/** What a change appends to a ledger. */
export interface LedgerEntry {
  /** `release`: the totals grow by one release. `exhausted`: the job is refused from now on; totals unchanged. */
  readonly kind: 'release' | 'exhausted';
  /** The filter that charged (gaussian-dp, dp-sgd, svt-privacy, metrics-privacy). */
  readonly filter: string;
  /** The dataset's totals after this entry. */
  readonly totals: LedgerTotals;
  /** The job's adaptive clipping state after a release. */
  readonly clipNorm?: number;
}

/**
 * A site's privacy ledgers, one per dataset. `update` is serialised per dataset and appends durably before it
 * resolves; every ledger is checked against what this object wrote and against the heads its audit log recorded.
 */
export interface PrivacyLedger {
  /** The site whose ledgers these are. */
  readonly site: string;
  /** @throws DpError E_DP_LEDGER_ROLLBACK, E_DP_BUDGET_CORRUPT. */
  read(dataset: string, job: string): Promise<LedgerView>;
  /**
   * Reads the dataset's state, lets `change` decide, and appends the entry it returns (if any) before resolving,
   * all under the dataset's lock; the new head is then reported through the ledger's audit hook (or `audit`).
   * `change` must be synchronous.
   *
   * @throws DpError E_DP_LEDGER_ROLLBACK, E_DP_BUDGET_CORRUPT, E_DP_BUDGET_WRITE.
   */
  update<T>(dataset: string, job: string, change: (view: LedgerView) => { readonly entry?: LedgerEntry; readonly result: T }, audit?: AuditHook): Promise<T>;
  /** The heads of the ledgers this object has loaded or written. */
  heads(): readonly LedgerHead[];
}

/** Options of {@link openPrivacyLedger}. */
export interface PrivacyLedgerOptions {
  /** This site's name (from its kit); every line carries it. */
  readonly site: string;
  /**
   * The latest head of each ledger as the site's audit log recorded it ({@link ledgerHeadsFromAudit}). A ledger
   * that does not reach its head (deleted, or restored from an older copy) is refused with E_DP_LEDGER_ROLLBACK.
   */
  readonly trustedHeads?: Iterable<LedgerHead>;
  /** Where each new head is reported (the site's audit log); without it, the hook passed to `update`. */
  readonly audit?: AuditHook;
}

// ---- lines --------------------------------------------------------------------------------------------------

const GENESIS = '0'.repeat(64);
const MAX_LINE = 64 * 1024;
const DATASET = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const finite = z.number().refine(Number.isFinite, 'must be finite');
const nonNegative = finite.refine((v) => v >= 0, 'must be >= 0');
const positive = finite.refine((v) => v > 0, 'must be > 0');
const totalsSchema = z.strictObject({
  orders: z.array(finite.refine((v) => v > 1, 'orders must be > 1')).min(1).max(1024),
  rdp: z.array(nonNegative).min(1).max(1024),
  pure_epsilon: nonNegative.nullable(),
  sampler_epsilon: nonNegative,
  sampler_tv: nonNegative,
  releases: z.number().int().min(0),
});
const jobStateSchema = z.strictObject({ releases: z.number().int().min(0), exhausted: z.boolean(), clip_norm: positive.optional() });
const lineSchema = z.strictObject({
  v: z.literal(1),
  seq: z.number().int().min(0),
  site: z.string().min(1).max(1024),
  dataset: z.string().regex(DATASET),
  ts: z.string().max(64),
  kind: z.enum(['release', 'exhausted', 'migrated']),
  job: z.string().min(1).max(1024).optional(),
  filter: z.string().max(64).optional(),
  clip_norm: positive.optional(),
  totals: totalsSchema,
  // Only in a `migrated` first line: the per-job budget files of an earlier version, folded in.
  jobs: z.record(z.string(), jobStateSchema).optional(),
  prev: z.string().regex(/^[0-9a-f]{64}$/),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});
type Line = z.infer<typeof lineSchema>;

const totalsOf = (t: Line['totals']): LedgerTotals => ({
  orders: t.orders,
  rdp: t.rdp,
  pureEpsilon: t.pure_epsilon,
  samplerEpsilon: t.sampler_epsilon,
  samplerTv: t.sampler_tv,
  releases: t.releases,
});
const totalsJson = (t: LedgerTotals): Line['totals'] => ({
  orders: [...t.orders],
  rdp: [...t.rdp],
  pure_epsilon: t.pureEpsilon,
  sampler_epsilon: t.samplerEpsilon,
  sampler_tv: t.samplerTv,
  releases: t.releases,
});
const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex');
const lineText = (line: Line) => `${canonicalJson(line as unknown as JsonValue)}\n`;
const lineHash = (body: Omit<Line, 'hash'>) => sha256Hex(canonicalJson(body as unknown as JsonValue));

/** Totals only grow along a chain: the same orders, no value lower, exactly one more release per release line. */
function grows(before: LedgerTotals, after: LedgerTotals, kind: Line['kind']): boolean {
  if (after.orders.length !== before.orders.length || after.orders.some((o, i) => o !== before.orders[i])) return false;
  if (after.rdp.length !== before.rdp.length || after.rdp.some((r, i) => r < before.rdp[i]!)) return false;
  if (before.pureEpsilon === null ? after.pureEpsilon !== null : after.pureEpsilon !== null && after.pureEpsilon < before.pureEpsilon) return false;
  if (after.samplerEpsilon < before.samplerEpsilon || after.samplerTv < before.samplerTv) return false;
  if (kind === 'release') return after.releases === before.releases + 1;
  return after.releases === before.releases && after.rdp.every((r, i) => r === before.rdp[i]);
}

// ---- one dataset in memory ----------------------------------------------------------------------------------

interface Loaded {
  /** Bytes of the complete lines read or written. */
  size: number;
  seq: number;
  hash: string;
  totals: LedgerTotals | undefined;
  readonly jobs: Map<string, LedgerJobState>;
}

const empty = (): Loaded => ({ size: 0, seq: -1, hash: GENESIS, totals: undefined, jobs: new Map() });
const corrupt = (where: string, why: string): never => {
  throw new DpError('E_DP_BUDGET_CORRUPT', `${where}: ${why}`);
};

function applyLine(state: Loaded, line: Line): void {
  state.seq = line.seq;
  state.hash = line.hash;
  state.totals = totalsOf(line.totals);
  if (line.kind === 'migrated') {
    for (const [job, s] of Object.entries(line.jobs ?? {})) state.jobs.set(job, { releases: s.releases, exhausted: s.exhausted, ...(s.clip_norm === undefined ? {} : { clipNorm: s.clip_norm }) });
    return;
  }
  const job = line.job!;
  const before = state.jobs.get(job) ?? { releases: 0, exhausted: false };
  if (line.kind === 'exhausted') state.jobs.set(job, { ...before, exhausted: true });
  else {
    const clipNorm = line.clip_norm ?? before.clipNorm;
    state.jobs.set(job, { releases: before.releases + 1, exhausted: before.exhausted, ...(clipNorm === undefined ? {} : { clipNorm }) });
  }
}

/** Parses and verifies a ledger's text: chain, positions, site and dataset, totals that only grow. */
function parseLedger(text: string, site: string, dataset: string, where: string): { state: Loaded; lines: Line[] } {
  const state = empty();
  const parsedLines: Line[] = [];
  const raw = text.split('\n');
  // A last line without its newline is a write torn by a crash: never synced, so nothing was released on it.
  raw.pop();
  for (const [i, text1] of raw.entries()) {
    if (text1.length > MAX_LINE) corrupt(where, `line ${i + 1} is longer than ${MAX_LINE} characters`);
    let value: unknown;
    try {
      value = parseStrictJson(text1);
    } catch {
      return corrupt(where, `line ${i + 1} is not JSON`);
    }
    const parsed = lineSchema.safeParse(value);
    if (!parsed.success) return corrupt(where, `line ${i + 1} fails validation at ${parsed.error.issues[0]?.path.join('.') || '(top)'}`);
    const line = parsed.data;
    const { hash, ...body } = line;
    if (lineHash(body) !== hash) corrupt(where, `line ${i + 1} does not match its hash`);
    if (line.seq !== state.seq + 1 || line.prev !== state.hash) corrupt(where, `line ${i + 1} does not follow the line before it`);
    if (line.site !== site || line.dataset !== dataset) corrupt(where, `line ${i + 1} belongs to another site or dataset`);
    if (line.kind === 'migrated' ? line.seq !== 0 : line.job === undefined || line.filter === undefined) corrupt(where, `line ${i + 1} is not a valid ${line.kind} entry`);
    if (state.totals !== undefined && !grows(state.totals, totalsOf(line.totals), line.kind)) corrupt(where, `line ${i + 1} lowers the spending recorded before it`);
    applyLine(state, line);
    state.size += Buffer.byteLength(text1) + 1;
    parsedLines.push(line);
  }
  return { state, lines: parsedLines };
}

// ---- storage ------------------------------------------------------------------------------------------------

/** Where ledger text lives: files in a folder, or memory (tests). Internal. */
interface LedgerStorage {
  readonly describe: (name: string) => string;
  /** The whole text, or undefined when there is none. */
  read(name: string): Promise<string | undefined>;
  /** Bytes stored, -1 when there is none. */
  size(name: string): Promise<number>;
  /** The last complete line (without its newline) of `size` bytes of text, read from the end. */
  lastLine(name: string, size: number): Promise<string | undefined>;
  /** Appends one line durably. */
  append(name: string, text: string, first: boolean): Promise<void>;
  /** Old per-job budget records to fold into a new default ledger (files only). */
  legacy(site: string): Promise<readonly LegacyRecord[]>;
}

class FileStorage implements LedgerStorage {
  readonly #root: string;
  constructor(root: string) {
    this.#root = root;
  }

  readonly describe = (name: string): string => join(this.#root, name);

  async read(name: string): Promise<string | undefined> {
    try {
      return await readFile(join(this.#root, name), 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw new DpError('E_DP_BUDGET_CORRUPT', `the privacy ledger ${join(this.#root, name)} cannot be read (${code ?? 'error'})`, { cause: e });
    }
  }

  async size(name: string): Promise<number> {
    try {
      return (await stat(join(this.#root, name))).size;
    } catch {
      return -1;
    }
  }

  async lastLine(name: string, size: number): Promise<string | undefined> {
    try {
      const handle = await open(join(this.#root, name), 'r');
      try {
        const window = Math.min(size, MAX_LINE + 1);
        const buf = Buffer.alloc(window);
        const { bytesRead } = await handle.read(buf, 0, window, size - window);
        return lastLineOf(buf.subarray(0, bytesRead).toString('utf8'));
      } finally {
        await handle.close();
      }
    } catch {
      return undefined;
    }
  }

  async append(name: string, text: string, first: boolean): Promise<void> {
    const file = join(this.#root, name);
    try {
      await mkdir(this.#root, { recursive: true, mode: 0o700 });
      const handle = await open(file, 'a', 0o600);
      try {
        await handle.writeFile(text, 'utf8');
        await handle.datasync();
      } finally {
        await handle.close();
      }
      if (first) {
        // A new file's directory entry is durable only once the folder is synced.
        const folder = await open(this.#root, 'r');
        try {
          await folder.sync();
        } finally {
          await folder.close();
        }
      }
    } catch (e) {
      throw new DpError('E_DP_BUDGET_WRITE', `the privacy ledger ${file} could not be written (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
    }
  }

  async legacy(site: string): Promise<readonly LegacyRecord[]> {
    let names: string[];
    try {
      names = (await readdir(this.#root)).filter((n) => /^[0-9a-f]{64}\.json$/.test(n));
    } catch {
      return [];
    }
    const records = await Promise.all(names.map((n) => legacyRecord(join(this.#root, n))));
    return records.filter((r) => r.site === site);
  }
}

/** Ledgers in memory, for tests: they protect nothing once the process ends. Internal. */
export class MemoryStorage implements LedgerStorage {
  readonly #texts = new Map<string, string>();
  readonly describe = (name: string): string => `memory:${name}`;
  read(name: string): Promise<string | undefined> {
    return Promise.resolve(this.#texts.get(name));
  }
  size(name: string): Promise<number> {
    const t = this.#texts.get(name);
    return Promise.resolve(t === undefined ? -1 : Buffer.byteLength(t));
  }
  lastLine(name: string): Promise<string | undefined> {
    const t = this.#texts.get(name);
    return Promise.resolve(t === undefined ? undefined : lastLineOf(t));
  }
  append(name: string, text: string): Promise<void> {
    this.#texts.set(name, (this.#texts.get(name) ?? '') + text);
    return Promise.resolve();
  }
  legacy(): Promise<readonly LegacyRecord[]> {
    return Promise.resolve([]);
  }
  /** Tests: replace a ledger's text (an attacker with the disk). */
  set(name: string, text: string | undefined): void {
    if (text === undefined) this.#texts.delete(name);
    else this.#texts.set(name, text);
  }
  get(name: string): string | undefined {
    return this.#texts.get(name);
  }
  names(): string[] {
    return [...this.#texts.keys()];
  }
}

// ---- the ledger ---------------------------------------------------------------------------------------------

// One lock chain per ledger in this process, so concurrent jobs never interleave a read-modify-write.
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

/** The ledger logic over a storage. Internal: use {@link openPrivacyLedger} (or the testing subpath). */
export class Ledger implements PrivacyLedger {
  readonly site: string;
  readonly #storage: LedgerStorage;
  readonly #lockPrefix: string;
  #audit: AuditHook | undefined;
  readonly #trusted = new Map<string, LedgerHead>();
  readonly #loaded = new Map<string, Loaded>();

  constructor(storage: LedgerStorage, site: string, lockPrefix: string) {
    this.#storage = storage;
    this.site = site;
    this.#lockPrefix = lockPrefix;
  }

  configure(options: PrivacyLedgerOptions): this {
    if (options.site !== this.site) throw new TypeError(`this privacy ledger is open for site "${this.site}", not "${options.site}"`);
    // The newest hook wins: a process that reopens its audit log hands the ledger the new one.
    if (options.audit !== undefined) this.#audit = options.audit;
    for (const h of options.trustedHeads ?? []) {
      const known = this.#trusted.get(h.dataset);
      if (known === undefined || h.seq > known.seq) {
        this.#trusted.set(h.dataset, h);
        // A ledger already in memory is checked against the newer head on its next use.
        this.#loaded.delete(h.dataset);
      }
    }
    return this;
  }

  /** The storage name of a dataset's ledger: hashed, so names from jobs never become paths. */
  nameOf(dataset: string): string {
    return `ledger-${sha256Hex(`${this.site}\u0000${dataset}`)}.jsonl`;
  }

  /** Refuses with E_DP_LEDGER_ROLLBACK, after reporting it to the audit log (the site's, or the caller's). */
  #rollback(dataset: string, message: string, audit: AuditHook | undefined): never {
    (this.#audit ?? audit)?.({ action: LEDGER_ROLLBACK_ACTION, msg: message, data: { dataset, code: 'E_DP_LEDGER_ROLLBACK' } });
    throw new DpError('E_DP_LEDGER_ROLLBACK', message);
  }

  /** The dataset's ledger, checked against what this object wrote and what the audit log recorded. */
  async #state(dataset: string, audit?: AuditHook): Promise<Loaded> {
    const name = this.nameOf(dataset);
    const where = `privacy ledger of dataset "${dataset}" (${this.#storage.describe(name)})`;
    const known = this.#loaded.get(dataset);
    if (known !== undefined) {
      const size = await this.#storage.size(name);
      if (known.seq < 0) {
        // Nothing written yet: the ledger must still be absent (or empty).
        if (size <= 0) return known;
        throw new DpError('E_DP_BUDGET_CORRUPT', `${where} was created by another writer: run one site process per workspace`);
      }
      // Fast path: the ledger still ends exactly where this object left it (same size, same last line).
      if (size === known.size) {
        const last = await this.#storage.lastLine(name, known.size);
        if (last !== undefined && hashOfLine(last) === known.hash) return known;
      }
      const now = await this.#storage.read(name);
      const reached = now === undefined ? undefined : parseLedger(now, this.site, dataset, where).lines[known.seq];
      if (reached?.hash !== known.hash) {
        this.#rollback(dataset, `${where} was deleted, rolled back or rewritten while in use: it no longer holds seq ${known.seq} as written; no release until it is restored`, audit);
      }
      throw new DpError('E_DP_BUDGET_CORRUPT', `${where} was appended to by another writer: run one site process per workspace`);
    }
    const text = await this.#storage.read(name);
    const parsed = text === undefined ? { state: empty(), lines: [] as Line[] } : parseLedger(text, this.site, dataset, where);
    const lines = parsed.lines;
    let state = parsed.state;
    const head = this.#trusted.get(dataset);
    if (head !== undefined) {
      if (state.seq < head.seq) {
        this.#rollback(
          dataset,
          `${where} ${state.seq < 0 ? 'is missing' : `ends at seq ${state.seq}`} but the audit log recorded its head at seq ${head.seq}: it was deleted or restored from an older copy; no release until it is restored`,
          audit,
        );
      }
      if (lines[head.seq]?.hash !== head.hash) {
        this.#rollback(dataset, `${where} differs from the head the audit log recorded at seq ${head.seq}: it was rolled back and rewritten; no release until it is restored`, audit);
      }
    }
    if (state.seq < 0 && dataset === DEFAULT_DATASET) state = await this.#migrate(name, state);
    this.#loaded.set(dataset, state);
    return state;
  }

  /** Folds the per-job budget files of earlier versions into the default ledger's first line: an upgrade forgets nothing. */
  async #migrate(name: string, state: Loaded): Promise<Loaded> {
    const old = await this.#storage.legacy(this.site);
    if (old.length === 0) return state;
    const orders = old[0]!.orders;
    if (old.some((r) => r.orders.length !== orders.length || r.orders.some((o, i) => o !== orders[i]))) {
      corrupt(`privacy ledger of dataset "${DEFAULT_DATASET}"`, 'the per-job budget files of an earlier version use different RDP orders and cannot be folded into one ledger; keep them and ask for a migration');
    }
    const sum = (f: (r: LegacyRecord) => number) => old.reduce((s, r) => s + f(r), 0);
    const totals: LedgerTotals = {
      orders,
      rdp: orders.map((_, i) => sum((r) => r.rdp[i]!)),
      pureEpsilon: old.some((r) => r.pureEpsilon === null) ? null : sum((r) => r.pureEpsilon!),
      samplerEpsilon: sum((r) => r.samplerEpsilon),
      samplerTv: sum((r) => r.samplerTv),
      releases: sum((r) => r.releases),
    };
    const jobs = Object.fromEntries(old.map((r) => [r.job, { releases: r.releases, exhausted: r.exhausted, ...(r.clipNorm === undefined ? {} : { clip_norm: r.clipNorm }) }]));
    const line = this.#line(state, DEFAULT_DATASET, { kind: 'migrated', totals: totalsJson(totals), jobs });
    await this.#storage.append(name, lineText(line), true);
    state.size += Buffer.byteLength(lineText(line));
    applyLine(state, line);
    return state;
  }

  #line(state: Loaded, dataset: string, fields: Partial<Line> & Pick<Line, 'kind' | 'totals'>): Line {
    const body = { v: 1 as const, seq: state.seq + 1, site: this.site, dataset, ts: new Date().toISOString(), prev: state.hash, ...fields };
    return { ...body, hash: lineHash(body) };
  }

  async read(dataset: string, job: string): Promise<LedgerView> {
    checkDataset(dataset);
    return await withLock(this.#lockPrefix + this.nameOf(dataset), async () => {
      const state = await this.#state(dataset);
      return { totals: state.totals, job: state.jobs.get(job) ?? { releases: 0, exhausted: false } };
    });
  }

  async update<T>(dataset: string, job: string, change: (view: LedgerView) => { readonly entry?: LedgerEntry; readonly result: T }, audit?: AuditHook): Promise<T> {
    checkDataset(dataset);
    const name = this.nameOf(dataset);
    return await withLock(this.#lockPrefix + name, async () => {
      const state = await this.#state(dataset, audit);
      const decided = change({ totals: state.totals, job: state.jobs.get(job) ?? { releases: 0, exhausted: false } });
      const entry = decided.entry;
      if (entry === undefined) return decided.result;
      if (state.totals !== undefined && !grows(state.totals, entry.totals, entry.kind)) throw new RangeError('a ledger entry may not lower the spending');
      const line = this.#line(state, dataset, {
        kind: entry.kind,
        job,
        filter: entry.filter,
        totals: totalsJson(entry.totals),
        ...(entry.kind === 'release' && entry.clipNorm !== undefined ? { clip_norm: entry.clipNorm } : {}),
      });
      const text = lineText(line);
      await this.#storage.append(name, text, line.seq === 0);
      state.size += Buffer.byteLength(text);
      applyLine(state, line);
      // The head goes to the audit log before anything is released, so a later rollback of the ledger shows.
      (this.#audit ?? audit)?.({
        action: LEDGER_HEAD_ACTION,
        job,
        msg: `privacy ledger of dataset "${dataset}": ${entry.kind} by ${entry.filter}, head at seq ${line.seq}`,
        data: { dataset, seq: line.seq, head: line.hash, kind: entry.kind, filter: entry.filter, releases: entry.totals.releases },
      });
      return decided.result;
    });
  }

  heads(): readonly LedgerHead[] {
    return [...this.#loaded].filter(([, s]) => s.seq >= 0).map(([dataset, s]) => ({ dataset, seq: s.seq, hash: s.hash }));
  }
}

/** The last complete line of a text ending in a newline, without the newline. */
function lastLineOf(text: string): string | undefined {
  if (!text.endsWith('\n')) return undefined;
  return text.slice(text.lastIndexOf('\n', text.length - 2) + 1, -1);
}

/** The hash a line's content computes to, when it also is the hash the line states; else undefined. */
function hashOfLine(text: string): string | undefined {
  try {
    const { hash, ...body } = parseStrictJson(text) as unknown as Line;
    return lineHash(body) === hash ? hash : undefined;
  } catch {
    return undefined;
  }
}

function checkDataset(dataset: string): void {
  if (typeof dataset !== 'string' || !DATASET.test(dataset)) {
    throw new TypeError(`"dataset" expected 1 to 128 letters, digits, '.', '_' or '-', got ${JSON.stringify(String(dataset).slice(0, 40))}`);
  }
}

// ---- earlier versions' per-job budget files -----------------------------------------------------------------

const legacySchema = z.strictObject({
  version: z.literal(1),
  site: z.string(),
  job: z.string(),
  orders: z.array(finite).min(1).max(1024),
  rdp: z.array(nonNegative).min(1).max(1024),
  pureEpsilon: nonNegative.nullable(),
  samplerEpsilon: nonNegative,
  samplerTv: nonNegative,
  releases: z.number().int().min(0),
  exhausted: z.boolean(),
  clipNorm: positive.optional(),
  updatedAt: z.string(),
});
type LegacyRecord = z.infer<typeof legacySchema>;

async function legacyRecord(path: string): Promise<LegacyRecord> {
  let value: unknown;
  try {
    value = parseStrictJson(await readFile(path, 'utf8'));
  } catch (e) {
    return corrupt(`budget record ${path}`, `an earlier version's budget file cannot be read (${(e as Error).message}); it must be folded into the ledger`);
  }
  const parsed = legacySchema.safeParse(value);
  if (!parsed.success || parsed.data.orders.length !== parsed.data.rdp.length) return corrupt(`budget record ${path}`, "an earlier version's budget file fails validation");
  return parsed.data;
}

// ---- opening --------------------------------------------------------------------------------------------------

// One ledger object per folder in this process: two objects over one folder would each see the other's lines as
// tampering. openPrivacyLedger returns the same object for the same folder, adding heads and a hook.
const byFolder = new Map<string, Ledger>();

/**
 * Opens the site's privacy ledgers in a folder (created with mode 0700; one `ledger-<sha256>.jsonl` per dataset,
 * mode 0600). One object per folder per process: opening the same folder again returns it, with the heads given
 * added and the hook given (if any) in place of the previous one. Run one site process per workspace. Per-job
 * budget files of earlier versions in the folder are folded into the default dataset's ledger on first use.
 *
 * @throws TypeError for an empty folder or site, or a folder already open for another site.
 * @example
 * ```ts
 * const heads = await ledgerHeadsFromAudit(eventsOf(siteAuditLogPath));
 * const ledger = openPrivacyLedger(join(workspace, BUDGET_FOLDER), { site, trustedHeads: heads, audit: siteLog.append });
 * const registry = new Map(createDpFilterFactories({ ledger }).map((f) => [f.name, f]));
 * ```
 */
export function openPrivacyLedger(dir: string, options: PrivacyLedgerOptions): PrivacyLedger {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('"dir" expected a non-empty path');
  if (typeof options?.site !== 'string' || options.site.length === 0) throw new TypeError('"site" expected a non-empty string');
  const root = resolve(dir);
  let ledger = byFolder.get(root);
  if (ledger === undefined) {
    ledger = new Ledger(new FileStorage(root), options.site, `${root}\u0000`);
    byFolder.set(root, ledger);
  }
  return ledger.configure(options);
}

/**
 * The latest ledger head per dataset among audit events (the site's audit log read back: action
 * {@link LEDGER_HEAD_ACTION}, `data: { dataset, seq, head }`), for {@link PrivacyLedgerOptions.trustedHeads}.
 * Other actions and malformed events are skipped.
 *
 * @example
 * ```ts
 * // with @flare/audit: only events whose hash checks are read
 * async function* eventsOf(path: string) { for await (const { record } of readEvents(path)) yield record; }
 * const heads = await ledgerHeadsFromAudit(eventsOf('workspace/audit.jsonl'));
 * ```
 */
export async function ledgerHeadsFromAudit(
  events: AsyncIterable<{ readonly action: string; readonly data?: unknown }> | Iterable<{ readonly action: string; readonly data?: unknown }>,
): Promise<LedgerHead[]> {
  const heads = new Map<string, LedgerHead>();
  const shape = z.object({ dataset: z.string().regex(DATASET), seq: z.number().int().min(0), head: z.string().regex(/^[0-9a-f]{64}$/) });
  for await (const e of events) {
    if (e.action !== LEDGER_HEAD_ACTION) continue;
    const d = shape.safeParse(e.data);
    if (!d.success) continue;
    const known = heads.get(d.data.dataset);
    if (known === undefined || d.data.seq >= known.seq) heads.set(d.data.dataset, { dataset: d.data.dataset, seq: d.data.seq, hash: d.data.head });
  }
  return [...heads.values()];
}
