import { createHash, createHmac, hkdfSync, randomBytes, randomUUID, timingSafeEqual, type KeyObject } from 'node:crypto';
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FlareRuntimeError, canonicalJson, decodeModel, encodeModel, parseStrictJson, writeFileAtomic, type FLModel, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { decodeJobBundle, encodeJobBundle, type JobBundle } from '../protocol/bundle.js';
import { parseMetaJson, type JobDefinition } from '../protocol/job-definition.js';
import type { JobSummary } from '../admin/client.js';

/** Where a job is in its life. */
export type JobStatus = 'SUBMITTED' | 'RUNNING' | 'FINISHED' | 'FAILED' | 'ABORTED';

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True for a job id (a UUID, lower case): the only strings that become a path in the store. */
export const isJobId = (id: string): boolean => ID.test(id);

const Identity = z.strictObject({ name: z.string().max(256), org: z.string().max(256), role: z.string().max(64).optional() });
const numbers = z.record(z.string().max(80), z.number());

/** One completed round, as the server recorded it. */
export const RoundRecord = z.strictObject({
  round: z.int().min(0),
  /** Sites whose update was aggregated. */
  contributors: z.array(z.string().max(64)),
  /** Wall-clock seconds from scatter to checkpoint. */
  seconds: z.number().min(0),
  /** Model bytes sent and received this round, per site. */
  bytes: z.record(z.string().max(64), z.int().min(0)),
  /**
   * Validation of the model after this round, across sites: bounded weighted means (`accuracy`, `loss`), their
   * spread (`accuracy_min`, `_max`, `_median`) and `sites` (see the workflow's `siteMetrics`).
   */
  metrics: numbers.default({}),
  /** Each site's validation of the model after this round. */
  site_validation: z.record(z.string().max(64), numbers).optional(),
  /** Per-site metrics the sites attached to their update (e.g. epsilon spent, HE encryption time). */
  site_metrics: z.record(z.string().max(64), numbers).default({}),
  /** Seconds the server spent aggregating (accepting updates, the result, the new global model). */
  aggregate_seconds: z.number().min(0).optional(),
  /** True when the round's updates were CKKS-encrypted (aggregated without decryption). */
  encrypted: z.boolean().optional(),
});
/** A completed round's record. */
export type RoundRecord = z.output<typeof RoundRecord>;

/** A job's record in the store: who submitted it, where it is, what happened. */
export const JobRecord = z.strictObject({
  id: z.string().regex(ID),
  name: z.string().max(64),
  submitter: Identity,
  status: z.enum(['SUBMITTED', 'RUNNING', 'FINISHED', 'FAILED', 'ABORTED']),
  submitted_at: z.string().max(40),
  ended_at: z.string().max(40).optional(),
  /** Rounds completed and checkpointed. */
  rounds_done: z.int().min(0).default(0),
  error: z.strictObject({ code: z.string().max(64), message: z.string().max(2048) }).optional(),
  /** Sites the job was deployed to. */
  sites: z.array(z.string().max(64)).default([]),
  /** Sites that refused deployment or left the job, with their own code and reason (`CODE: reason`). */
  refused: z.record(z.string().max(64), z.string().max(2048)).default({}),
  history: z.array(RoundRecord).default([]),
});
/** A job's record. */
export type JobRecord = z.output<typeof JobRecord>;

const CheckpointState = z.strictObject({
  /** The last completed round (0-based); the checkpointed model is the global model after it. */
  round: z.int().min(0),
  /** SHA-256 of the model file, so a torn or swapped file is detected on resume. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  file: z.string().regex(/^global-r\d+(?:-[0-9a-f]{8})?\.safetensors$/),
  /** The aggregator's own state after the round (a server optimizer's moments), with its SHA-256. */
  aggregator: z.strictObject({ file: z.string().regex(/^aggregator-r\d+(?:-[0-9a-f]{8})?\.bin$/), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).optional(),
  /** The workflow's own state. */
  workflow: z.json().optional(),
  /** True when `round` is not complete yet: the model and state are progress inside it (a workflow's saveProgress). */
  partial: z.boolean().optional(),
  /** The checkpoint's number in the job: 1, 2, ... (each save adds one); the audit log records the newest. */
  seq: z.int().min(1).optional(),
  /** HMAC-SHA256 (hex) of the server's store key over the job id and the rest of this state (see {@link checkpointKeyFromKit}). */
  mac: z.string().regex(/^[0-9a-f]{64}$/).optional(),
});

const STATE = 'state.json';
const PREVIOUS_STATE = 'state.prev.json';
const CHECKPOINT_FILE = /^(global-r\d+(?:-[0-9a-f]{8})?\.safetensors|aggregator-r\d+(?:-[0-9a-f]{8})?\.bin)$/;
const MAC_DOMAIN = 'flare-ts checkpoint state v1\n';

/** The number of the checkpoint a state file holds (0 when none, or one written before numbers were kept). */
function seqOf(state: Uint8Array | undefined): number {
  if (state === undefined) return 0;
  try {
    const r = CheckpointState.safeParse(parseStrictJson(new TextDecoder().decode(state)));
    return r.success ? (r.data.seq ?? 0) : 0;
  } catch {
    return 0;
  }
}

/** The model and aggregator files a state names (to keep them while it is the fallback). */
function filesOf(state: Uint8Array | undefined): string[] {
  if (state === undefined) return [];
  try {
    const r = CheckpointState.safeParse(parseStrictJson(new TextDecoder().decode(state)));
    return r.success ? [r.data.file, ...(r.data.aggregator === undefined ? [] : [r.data.aggregator.file])] : [];
  } catch {
    return [];
  }
}

function stateMac(key: Uint8Array, id: string, state: Omit<z.output<typeof CheckpointState>, 'mac'>): string {
  return createHmac('sha256', key).update(`${MAC_DOMAIN}${id}\n${canonicalJson(state as unknown as JsonValue)}`).digest('hex');
}

/**
 * The key a server authenticates its checkpoints and job state with, derived from its kit's private key (HKDF-
 * SHA256 over the key's PKCS#8 bytes, bound to this use): only the holder of the server kit can write a
 * checkpoint the server will resume from.
 */
export function checkpointKeyFromKit(privateKey: KeyObject): Uint8Array {
  const ikm = privateKey.export({ type: 'pkcs8', format: 'der' });
  return new Uint8Array(hkdfSync('sha256', ikm, 'flare-ts job store', 'checkpoint and job state MAC v1', 32));
}

/**
 * The newest checkpoint of a job as the server's audit log recorded it (`checkpoint_saved`): its number and the
 * SHA-256 of its state file. A checkpoint older than this on disk is a rollback.
 */
export interface CheckpointHead {
  readonly seq: number;
  readonly sha256: string;
}

/** The audit action the server records after each checkpoint (job, round, seq, sha256 of the state). */
export const CHECKPOINT_SAVED_ACTION = 'checkpoint_saved';

/**
 * The newest checkpoint of every job an audit log recorded, read from its events (`checkpoint_saved`): what
 * `ServerEngineOptions.checkpointHeads` takes, so a server refuses to resume from a checkpoint older than its
 * log says it wrote. The log itself is protected against rollback by the sites' anchors.
 */
export async function checkpointHeadsFromAudit(events: AsyncIterable<{ readonly action: string; readonly job?: string | undefined; readonly data?: unknown }> | Iterable<{ readonly action: string; readonly job?: string | undefined; readonly data?: unknown }>): Promise<Map<string, CheckpointHead>> {
  const heads = new Map<string, CheckpointHead>();
  const shape = z.object({ seq: z.int().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/) });
  for await (const e of events) {
    if (e.action !== CHECKPOINT_SAVED_ACTION || e.job === undefined || !ID.test(e.job)) continue;
    const d = shape.safeParse(e.data);
    if (!d.success) continue;
    const known = heads.get(e.job);
    if (known === undefined || d.data.seq >= known.seq) heads.set(e.job, { seq: d.data.seq, sha256: d.data.sha256 });
  }
  return heads;
}

/** What a job resumes from. */
export interface Checkpoint {
  /** The last completed round (0-based), or with `partial` the round in progress. */
  readonly round: number;
  /** True when the model and workflow state are progress inside `round`, which resumes (not the round after it). */
  readonly partial?: boolean;
  readonly model: FLModel;
  /** The aggregator's saved state (e.g. FedAdam's moments), when it has one. */
  readonly aggregator?: Uint8Array;
  /** The workflow's saved state. */
  readonly workflow?: JsonValue;
  /** Its number in the job (0 for a checkpoint written before numbers were kept) and the SHA-256 of its state file. */
  readonly head: CheckpointHead;
}

/** What {@link JobStore.create} needs. */
export interface NewJob {
  /** The job as the admin sent it: meta.json's bytes, the initial model, custom/ files. */
  readonly bundle: JobBundle;
  readonly submitter: { readonly name: string; readonly org: string; readonly role?: string | undefined };
  /** The id the admin chose (a UUID; a job manifest it signed names it); default: a new one. */
  readonly id?: string;
}

/** A stored job's definition: validated, and exactly as submitted. */
export interface StoredDefinition {
  readonly definition: JobDefinition;
  readonly raw: JsonValue;
}

/** A result name: it becomes a file name, so only `a-z 0-9 _ -`. */
function resultName(name: string): string {
  if (!/^[a-z0-9_-]{1,64}$/.test(name)) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `'${name.slice(0, 64)}' is not a result name (1-64 of a-z 0-9 _ -)`);
  return name;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const summaryOf = (r: JobRecord): JobSummary => ({ id: r.id, name: r.name, status: r.status, submitter: r.submitter.name, rounds_done: r.rounds_done });

/** Most job summaries {@link JobStore.summaries} returns at once (an admin message's `lines` bound). */
const MAX_SUMMARY_PAGE = 10_000;

/**
 * The server's jobs on disk, one folder per job under `<root>/jobs/<uuid>/`: `meta.json` (as submitted),
 * `deploy.bundle` (the signed job as sent to sites), `record.json` (status, history),
 * `initial.safetensors`, `checkpoint/` (the global model after the last completed round, the aggregator's
 * state, and a `state.json` naming both with their SHA-256 and, with a store key, an HMAC of the server's key;
 * the state before it is kept as `state.prev.json`, the fallback). Every write is atomic (temp + fsync + rename),
 * and the checkpoint's files are written before the state that names them, so a crash at any point leaves
 * the previous checkpoint intact. Job ids are UUIDs, checked before they touch a path.
 */
export class JobStore {
  readonly root: string;
  // Serialises read-modify-write of one record (status changes race with round completions).
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #key: Uint8Array | undefined;
  // Every job's summary in submission order, kept current by create() and update(): `flare admin list` is served
  // from here, never from a read of every record (a record holds a job's whole round history). Filled from disk
  // once, by list() (the server's start) or the first summaries().
  readonly #summaries = new Map<string, { readonly summary: JobSummary; readonly submittedAt: string }>();
  #indexed: Promise<void> | undefined;

  private constructor(root: string, key: Uint8Array | undefined) {
    this.root = root;
    this.#key = key;
  }

  /**
   * Opens (creating when needed) the store under `root`. With `key` (32 bytes or more, {@link
   * checkpointKeyFromKit}), checkpoints are authenticated: only states this key wrote are resumed from.
   */
  static async open(root: string, options: { readonly key?: Uint8Array } = {}): Promise<JobStore> {
    if (options.key !== undefined && options.key.byteLength < 32) throw new RangeError(`"key" expected at least 32 bytes, got ${options.key.byteLength}`);
    try {
      await mkdir(join(root, 'jobs'), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new FlareRuntimeError('E_RUNTIME_WORKSPACE', `cannot create the job store under ${root}`, { cause: e });
    }
    return new JobStore(root, options.key === undefined ? undefined : Uint8Array.from(options.key));
  }

  #dir(id: string): string {
    if (!ID.test(id)) throw new FlareRuntimeError('E_RUNTIME_JOB_NOT_FOUND', `'${id.slice(0, 64)}' is not a job id`);
    return join(this.root, 'jobs', id);
  }

  /**
   * Validates and stores a new job; returns its record (status SUBMITTED) and definition.
   *
   * @throws FlareRuntimeError E_RUNTIME_JOB_INVALID (meta.json, the model, an id in use), E_RUNTIME_BYOC_SIGNATURE
   *   (custom/ files that do not match meta.json's byoc digests).
   */
  async create(job: NewJob): Promise<{ record: JobRecord } & StoredDefinition> {
    const { raw, definition } = parseMetaJson(job.bundle.meta);
    const initial = job.bundle.model;
    // Refuse a malformed model now rather than at round 0; the error names the file.
    try {
      if (initial === undefined) throw new RangeError('missing');
      decodeModel(initial);
    } catch (e) {
      throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `model.safetensors is not a valid safetensors model${e instanceof Error && e.message !== 'missing' ? `: ${e.message}` : ' (the job folder has none)'}`, { cause: e });
    }
    const files = job.bundle.files;
    // A job signature covers custom/ files; meta.json's older byoc digests, when present, must still match.
    if (definition.byoc !== undefined) {
      const declared = definition.byoc?.files ?? {};
      if (Object.keys(declared).length !== files.size) throw new FlareRuntimeError('E_RUNTIME_BYOC_SIGNATURE', 'the custom files do not match byoc.files in meta.json');
      for (const [name, bytes] of files) {
        if (!Object.hasOwn(declared, name) || declared[name] !== sha256(bytes)) throw new FlareRuntimeError('E_RUNTIME_BYOC_SIGNATURE', `custom/${name.slice(0, 80)} does not match its digest in meta.json`);
      }
    }
    const id = job.id ?? randomUUID();
    const dir = this.#dir(id);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (e) {
      throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `a job with id ${id} already exists`, { cause: e });
    }
    await mkdir(join(dir, 'checkpoint'), { mode: 0o700 });
    const record: JobRecord = {
      id,
      name: definition.name,
      submitter: job.submitter.role === undefined ? { name: job.submitter.name, org: job.submitter.org } : { name: job.submitter.name, org: job.submitter.org, role: job.submitter.role },
      status: 'SUBMITTED',
      submitted_at: new Date().toISOString(),
      rounds_done: 0,
      sites: [],
      refused: {},
      history: [],
    };
    await writeFileAtomic(join(dir, 'initial.safetensors'), initial!);
    // What every site receives: the job exactly as its admin signed it (the model too: the signature covers it).
    const signature = job.bundle.signature;
    await writeFileAtomic(join(dir, 'deploy.bundle'), encodeJobBundle({ meta: job.bundle.meta, model: initial!, files, ...(signature === undefined ? {} : { signature }) }));
    await writeFileAtomic(join(dir, 'meta.json'), job.bundle.meta);
    // The record last: a folder without one is an incomplete submission and is never listed.
    await writeFileAtomic(join(dir, 'record.json'), JSON.stringify(record, null, 2));
    this.#remember(record);
    return { record, definition, raw };
  }

  /** The job's record. @throws E_RUNTIME_JOB_NOT_FOUND */
  async get(id: string): Promise<JobRecord> {
    const dir = this.#dir(id);
    let text: string;
    try {
      text = await readFile(join(dir, 'record.json'), 'utf8');
    } catch {
      throw new FlareRuntimeError('E_RUNTIME_JOB_NOT_FOUND', `no job '${id}'`);
    }
    return JobRecord.parse(parseStrictJson(text));
  }

  /** The job's definition, validated and as submitted. */
  async definition(id: string): Promise<StoredDefinition> {
    const bytes = await readFile(join(this.#dir(id), 'meta.json')).catch(() => {
      throw new FlareRuntimeError('E_RUNTIME_JOB_NOT_FOUND', `no job '${id}'`);
    });
    return parseMetaJson(bytes);
  }

  /** What a site receives at deploy: the job as its admin signed it (meta.json, model, custom/ files, signature; an encoded job bundle). */
  async deployBundle(id: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(join(this.#dir(id), 'deploy.bundle')));
  }

  /** The job's own files (BYOC), by relative name; empty when it brings none. */
  async customFiles(id: string): Promise<ReadonlyMap<string, Uint8Array>> {
    return decodeJobBundle(await this.deployBundle(id)).files;
  }

  /**
   * Every job's full record, oldest first, read from disk (once, when the server starts: the scheduler keeps its
   * own index, and {@link JobStore.summaries} serves listings from memory afterwards).
   */
  async list(): Promise<JobRecord[]> {
    const names = await readdir(join(this.root, 'jobs'));
    const out: JobRecord[] = [];
    for (const n of names) {
      if (!ID.test(n)) continue;
      const r = await this.get(n).catch(() => undefined);
      if (r !== undefined) out.push(r);
    }
    out.sort((a, b) => a.submitted_at.localeCompare(b.submitted_at));
    this.#index(out);
    return out;
  }

  /**
   * The newest `limit` jobs' summaries (id, name, status, submitter, rounds done), oldest first, from memory:
   * after the first call (or {@link JobStore.list}) no record is read from disk again, whatever the number of jobs.
   *
   * @throws RangeError for a `limit` outside 1-{@link MAX_SUMMARY_PAGE}.
   */
  async summaries(limit: number = MAX_SUMMARY_PAGE): Promise<JobSummary[]> {
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SUMMARY_PAGE) throw new RangeError(`"limit" expected a whole number from 1 to ${MAX_SUMMARY_PAGE}, got ${limit}`);
    this.#indexed ??= this.list().then(
      () => undefined,
      (e: unknown) => {
        this.#indexed = undefined;
        throw e;
      },
    );
    await this.#indexed;
    const all = [...this.#summaries.values()];
    return all.slice(Math.max(0, all.length - limit)).map((e) => e.summary);
  }

  /** Merges records read from disk into the summaries; an entry create() or update() wrote meanwhile is newer and stays. */
  #index(records: readonly JobRecord[]): void {
    const merged = [...this.#summaries.values()];
    for (const r of records) if (!this.#summaries.has(r.id)) merged.push({ summary: summaryOf(r), submittedAt: r.submitted_at });
    merged.sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
    this.#summaries.clear();
    for (const m of merged) this.#summaries.set(m.summary.id, m);
    this.#indexed ??= Promise.resolve();
  }

  #remember(r: JobRecord): void {
    this.#summaries.set(r.id, { summary: summaryOf(r), submittedAt: r.submitted_at });
  }

  /** Applies `change` to the record under a per-job lock and writes it atomically. */
  async update(id: string, change: (r: JobRecord) => void): Promise<JobRecord> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const next = prev.then(async () => {
      const r = await this.get(id);
      change(r);
      const checked = JobRecord.parse(r);
      await writeFileAtomic(join(this.#dir(id), 'record.json'), JSON.stringify(checked, null, 2));
      this.#remember(checked);
      return checked;
    });
    const settled = next.catch(() => undefined);
    this.#locks.set(id, settled);
    // Forget the lock once nothing queued after it: the map holds only jobs with writes in flight.
    void settled.then(() => {
      if (this.#locks.get(id) === settled) this.#locks.delete(id);
    });
    return next;
  }

  /** The job's initial global model. */
  async initialModel(id: string): Promise<FLModel> {
    return decodeModel(await readFile(join(this.#dir(id), 'initial.safetensors')));
  }

  /**
   * Checkpoints the global model after `round` (0-based) with the aggregator's and the workflow's state:
   * data files first, then the state naming them with their digests, all atomic. With a store key the state
   * carries an HMAC of this server's key over the job id and the state, so a checkpoint written by anyone else
   * is refused on load. The previous state is kept as `state.prev.json` (with its files): the fallback when
   * the newest does not verify. Older files are removed once the new state is durable.
   */
  async saveCheckpoint(id: string, round: number, global: FLModel, extra: { readonly aggregator?: Uint8Array; readonly workflow?: JsonValue; readonly partial?: boolean } = {}): Promise<CheckpointHead> {
    const dir = join(this.#dir(id), 'checkpoint');
    const bytes = encodeModel(global);
    // A fresh name per checkpoint: a partial checkpoint of a round never overwrites the fallback's files.
    const tag = randomBytes(4).toString('hex');
    const file = `global-r${round}-${tag}.safetensors`;
    await writeFileAtomic(join(dir, file), bytes);
    let aggregator: { file: string; sha256: string } | undefined;
    if (extra.aggregator !== undefined) {
      aggregator = { file: `aggregator-r${round}-${tag}.bin`, sha256: sha256(extra.aggregator) };
      await writeFileAtomic(join(dir, aggregator.file), extra.aggregator);
    }
    const previous = await readFile(join(dir, STATE)).catch(() => undefined);
    const seq = seqOf(previous) + 1;
    const state = { round, sha256: sha256(bytes), file, ...(aggregator === undefined ? {} : { aggregator }), ...(extra.workflow === undefined ? {} : { workflow: extra.workflow }), ...(extra.partial === true ? { partial: true } : {}), seq };
    if (previous !== undefined) await writeFileAtomic(join(dir, PREVIOUS_STATE), previous);
    const text = JSON.stringify(this.#key === undefined ? state : { ...state, mac: stateMac(this.#key, id, state) });
    await writeFileAtomic(join(dir, STATE), text);
    const keep = new Set([file, aggregator?.file, ...filesOf(previous)]);
    for (const f of await readdir(dir)) if (CHECKPOINT_FILE.test(f) && !keep.has(f)) await unlink(join(dir, f)).catch(() => undefined);
    return { seq, sha256: sha256(new TextEncoder().encode(text)) };
  }

  /**
   * The last checkpoint that verifies, or undefined when no round has completed. The newest state is tried
   * first, then the one before it: a checkpoint whose MAC (with a store key), digests or files do not verify is
   * refused, `onRefused` hears why (the server audits it), and the previous one is used.
   *
   * With `newest` (the newest checkpoint the server's audit log recorded, {@link checkpointHeadsFromAudit}), a
   * checkpoint older than it is a rollback and is refused (E_RUNTIME_CHECKPOINT_ROLLBACK): an authentic copy
   * restored from before, or none where the log says one was written. The one exception is the fallback: when
   * the newest state is refused (torn, planted), the one right before the newest recorded is still used.
   *
   * @throws FlareRuntimeError E_RUNTIME_CHECKPOINT_FORGED or E_RUNTIME_CHECKPOINT when no checkpoint verifies,
   *   E_RUNTIME_CHECKPOINT_ROLLBACK when the one that verifies is older than `newest`.
   */
  async loadCheckpoint(id: string, options: { readonly onRefused?: (error: FlareRuntimeError, file: string) => void; readonly newest?: CheckpointHead } = {}): Promise<Checkpoint | undefined> {
    const dir = join(this.#dir(id), 'checkpoint');
    const newest = options.newest;
    let first: FlareRuntimeError | undefined;
    for (const name of [STATE, PREVIOUS_STATE]) {
      const text = await readFile(join(dir, name), 'utf8').catch(() => undefined);
      if (text === undefined) continue;
      let cp: Checkpoint;
      try {
        cp = await this.#verifiedCheckpoint(id, dir, name, text);
      } catch (e) {
        const err = e instanceof FlareRuntimeError ? e : new FlareRuntimeError('E_RUNTIME_CHECKPOINT', `job ${id}: checkpoint/${name} cannot be read`, { cause: e });
        first ??= err;
        options.onRefused?.(err, `checkpoint/${name}`);
        continue;
      }
      const h = cp.head;
      const current = newest === undefined || h.seq > newest.seq || (h.seq === newest.seq && h.sha256 === newest.sha256);
      const fallback = newest !== undefined && first !== undefined && h.seq === newest.seq - 1;
      if (current || fallback) return cp;
      const err = new FlareRuntimeError('E_RUNTIME_CHECKPOINT_ROLLBACK', `job ${id}: checkpoint/${name} is checkpoint ${h.seq} (round ${cp.round}), but the server's audit log records checkpoint ${newest.seq} as the newest: an older copy was put back`);
      options.onRefused?.(err, `checkpoint/${name}`);
      throw err;
    }
    if (first !== undefined) throw first;
    if (newest !== undefined) {
      const err = new FlareRuntimeError('E_RUNTIME_CHECKPOINT_ROLLBACK', `job ${id}: no checkpoint on disk, but the server's audit log records checkpoint ${newest.seq}: the job's checkpoints were removed`);
      options.onRefused?.(err, 'checkpoint/');
      throw err;
    }
    return undefined;
  }

  async #verifiedCheckpoint(id: string, dir: string, name: string, text: string): Promise<Checkpoint> {
    const bad = (what: string, code: 'E_RUNTIME_CHECKPOINT' | 'E_RUNTIME_CHECKPOINT_FORGED' = 'E_RUNTIME_CHECKPOINT'): never => {
      throw new FlareRuntimeError(code, `job ${id}: ${what}`);
    };
    let parsed: unknown;
    try {
      parsed = parseStrictJson(text);
    } catch {
      bad(`checkpoint/${name} is not valid JSON`);
    }
    const r = CheckpointState.safeParse(parsed);
    if (!r.success) return bad(`checkpoint/${name} is malformed`);
    const { mac, ...state } = r.data;
    if (this.#key !== undefined) {
      // The MAC covers the digests of the model and aggregator files: a planted file with its digest recomputed fails here.
      if (mac === undefined) bad(`checkpoint/${name} carries no MAC of this server's key: it was not written by this server`, 'E_RUNTIME_CHECKPOINT_FORGED');
      const want = Buffer.from(stateMac(this.#key, id, state), 'hex');
      if (!timingSafeEqual(want, Buffer.from(mac!, 'hex'))) bad(`checkpoint/${name}'s MAC does not verify with this server's key: it was written by someone else, or changed`, 'E_RUNTIME_CHECKPOINT_FORGED');
    }
    const read = async (file: string, digest: string): Promise<Uint8Array> => {
      const b = await readFile(join(dir, file)).catch(() => bad(`checkpoint/${file} is missing`));
      if (sha256(b) !== digest) bad(`checkpoint/${file} does not match its digest`);
      return new Uint8Array(b);
    };
    const model = decodeModel(await read(state.file, state.sha256));
    const aggregator = state.aggregator === undefined ? undefined : await read(state.aggregator.file, state.aggregator.sha256);
    return {
      round: state.round,
      head: { seq: state.seq ?? 0, sha256: sha256(new TextEncoder().encode(text)) },
      model,
      ...(aggregator === undefined ? {} : { aggregator }),
      ...(state.workflow === undefined ? {} : { workflow: state.workflow as JsonValue }),
      ...(state.partial === true ? { partial: true } : {}),
    };
  }

  /**
   * Stores a named JSON result of the job (`results/<name>.json`, atomic), replacing one of the same name.
   *
   * @throws FlareRuntimeError E_RUNTIME_JOB_INVALID for a name outside `[a-z0-9_-]{1,64}`.
   */
  async saveResult(id: string, name: string, value: JsonValue): Promise<void> {
    const dir = join(this.#dir(id), 'results');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(dir, `${resultName(name)}.json`), JSON.stringify(value, null, 1));
  }

  /** A named result of the job. @throws E_RUNTIME_JOB_NOT_FOUND when the job or the result does not exist */
  async readResult(id: string, name: string): Promise<JsonValue> {
    const file = join(this.#dir(id), 'results', `${resultName(name)}.json`);
    const text = await readFile(file, 'utf8').catch(() => {
      throw new FlareRuntimeError('E_RUNTIME_JOB_NOT_FOUND', `job ${id} has no result '${name}' (yet)`);
    });
    return parseStrictJson(text);
  }

  /** The final global model's bytes (safetensors) of a FINISHED job. @throws E_RUNTIME_JOB_STATE */
  async result(id: string): Promise<Uint8Array> {
    const r = await this.get(id);
    if (r.status !== 'FINISHED') throw new FlareRuntimeError('E_RUNTIME_JOB_STATE', `job ${id} is ${r.status}, results exist once it is FINISHED`);
    const cp = await this.loadCheckpoint(id);
    if (cp === undefined) throw new FlareRuntimeError('E_RUNTIME_CHECKPOINT', `job ${id} has no checkpoint`);
    return encodeModel(cp.model);
  }
}
