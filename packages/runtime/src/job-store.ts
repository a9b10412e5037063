import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FlareRuntimeError, decodeModel, encodeModel, parseStrictJson, type FLModel, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { writeFileAtomic } from './atomic.js';
import { JobDefinition, parseJobDefinition } from './job-definition.js';

/** Where a job is in its life. */
export type JobStatus = 'SUBMITTED' | 'RUNNING' | 'FINISHED' | 'FAILED' | 'ABORTED';

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const Identity = z.strictObject({ name: z.string().max(256), org: z.string().max(256), role: z.string().max(64).optional() });

/** One completed round, as the server recorded it. */
export const RoundRecord = z.strictObject({
  round: z.int().min(0),
  /** Sites whose update was aggregated. */
  contributors: z.array(z.string().max(64)),
  /** Wall-clock seconds from scatter to checkpoint. */
  seconds: z.number().min(0),
  /** Model bytes sent and received this round, per site. */
  bytes: z.record(z.string().max(64), z.int().min(0)),
  /** Sites' validation metrics of this round's incoming global model, averaged (when sites report them). */
  metrics: z.record(z.string().max(64), z.number()).default({}),
  /** Per-site metrics the sites attached to their update (e.g. epsilon spent, HE encryption time). */
  site_metrics: z.record(z.string().max(64), z.record(z.string().max(64), z.number())).default({}),
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
  /** Sites that refused deployment, with their reason code. */
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
  file: z.string().regex(/^global-r\d+\.safetensors$/),
});

/** What a job resumes from. */
export interface Checkpoint {
  /** The last completed round (0-based). */
  readonly round: number;
  readonly model: FLModel;
}

/** What {@link JobStore.create} needs. */
export interface NewJob {
  readonly definition: unknown;
  readonly submitter: { readonly name: string; readonly org: string; readonly role?: string };
  /** The initial global model (safetensors bytes, as in the job folder's `model.safetensors`). */
  readonly initialModel: Uint8Array;
  /** BYOC files by relative name (their digests must be those in the definition's `byoc.files`). */
  readonly files?: ReadonlyMap<string, Uint8Array>;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * The server's jobs on disk, one folder per job under `<root>/jobs/<uuid>/`: `meta.json` (the definition),
 * `record.json` (status, history), `initial.safetensors`, `checkpoint/` (the global model after the last
 * completed round and a `state.json` naming it with its SHA-256). Every write is atomic (temp + fsync +
 * rename), and the checkpoint's model is written before the state that names it, so a crash at any point
 * leaves the previous checkpoint intact. Job ids are server-made UUIDs, checked before they touch a path.
 */
export class JobStore {
  readonly root: string;
  // Serialises read-modify-write of one record (status changes race with round completions).
  #locks = new Map<string, Promise<unknown>>();

  private constructor(root: string) {
    this.root = root;
  }

  /** Opens (creating when needed) the store under `root`. */
  static async open(root: string): Promise<JobStore> {
    try {
      await mkdir(join(root, 'jobs'), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new FlareRuntimeError('E_RUNTIME_WORKSPACE', `cannot create the job store under ${root}`, { cause: e });
    }
    return new JobStore(root);
  }

  #dir(id: string): string {
    if (!ID.test(id)) throw new FlareRuntimeError('E_RUNTIME_JOB_NOT_FOUND', `'${id.slice(0, 64)}' is not a job id`);
    return join(this.root, 'jobs', id);
  }

  /** Validates and stores a new job; returns its record (status SUBMITTED). */
  async create(job: NewJob): Promise<JobRecord> {
    const definition = parseJobDefinition(job.definition);
    // Refuse a malformed model now rather than at round 0.
    try {
      decodeModel(job.initialModel);
    } catch (e) {
      throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', 'model.safetensors is not a valid safetensors model', { cause: e });
    }
    if (definition.byoc !== undefined || (job.files !== undefined && job.files.size > 0)) {
      const declared = definition.byoc?.files ?? {};
      const given = job.files ?? new Map<string, Uint8Array>();
      if (Object.keys(declared).length !== given.size) throw new FlareRuntimeError('E_RUNTIME_BYOC_SIGNATURE', 'the custom files do not match byoc.files');
      for (const [name, bytes] of given) {
        if (declared[name] !== sha256(bytes)) throw new FlareRuntimeError('E_RUNTIME_BYOC_SIGNATURE', `custom file '${name.slice(0, 80)}' does not match its digest`);
      }
    }
    const id = randomUUID();
    const dir = this.#dir(id);
    await mkdir(join(dir, 'checkpoint'), { recursive: true, mode: 0o700 });
    const record: JobRecord = {
      id,
      name: definition.name,
      submitter: job.submitter.role === undefined ? { name: job.submitter.name, org: job.submitter.org } : { ...job.submitter, role: job.submitter.role },
      status: 'SUBMITTED',
      submitted_at: new Date().toISOString(),
      rounds_done: 0,
      sites: [],
      refused: {},
      history: [],
    };
    await writeFileAtomic(join(dir, 'initial.safetensors'), job.initialModel);
    if (job.files !== undefined && job.files.size > 0) {
      // One JSON file keyed by the relative names: names never become paths on the server.
      const custom = Object.fromEntries([...job.files].map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
      await writeFileAtomic(join(dir, 'custom.json'), JSON.stringify(custom));
    }
    await writeFileAtomic(join(dir, 'meta.json'), JSON.stringify(job.definition, null, 2));
    await writeFileAtomic(join(dir, 'record.json'), JSON.stringify(record, null, 2));
    return record;
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

  /** The job's validated definition. */
  async definition(id: string): Promise<JobDefinition> {
    const text = await readFile(join(this.#dir(id), 'meta.json'), 'utf8').catch(() => {
      throw new FlareRuntimeError('E_RUNTIME_JOB_NOT_FOUND', `no job '${id}'`);
    });
    return JobDefinition.parse(parseStrictJson(text));
  }

  /** The definition exactly as submitted (JSON), for forwarding to sites. */
  async rawDefinition(id: string): Promise<JsonValue> {
    return parseStrictJson(await readFile(join(this.#dir(id), 'meta.json'), 'utf8'));
  }

  /** Every job, oldest first. */
  async list(): Promise<JobRecord[]> {
    const names = await readdir(join(this.root, 'jobs'));
    const out: JobRecord[] = [];
    for (const n of names) if (ID.test(n)) out.push(await this.get(n).catch(() => undefined as never));
    return out.filter((r) => r !== undefined).sort((a, b) => a.submitted_at.localeCompare(b.submitted_at));
  }

  /** Applies `change` to the record under a per-job lock and writes it atomically. */
  async update(id: string, change: (r: JobRecord) => void): Promise<JobRecord> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const next = prev.then(async () => {
      const r = await this.get(id);
      change(r);
      const checked = JobRecord.parse(r);
      await writeFileAtomic(join(this.#dir(id), 'record.json'), JSON.stringify(checked, null, 2));
      return checked;
    });
    this.#locks.set(id, next.catch(() => undefined));
    return next;
  }

  /** The job's own files (BYOC), by relative name; empty when it brings none. */
  async customFiles(id: string): Promise<Map<string, Uint8Array>> {
    const text = await readFile(join(this.#dir(id), 'custom.json'), 'utf8').catch(() => undefined);
    if (text === undefined) return new Map();
    const parsed = z.record(z.string(), z.string()).parse(parseStrictJson(text));
    return new Map(Object.entries(parsed).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))]));
  }

  /** The job's initial global model. */
  async initialModel(id: string): Promise<FLModel> {
    return decodeModel(await readFile(join(this.#dir(id), 'initial.safetensors')));
  }

  /**
   * Checkpoints the global model after `round` (0-based): model file first, then the state naming it, both
   * atomic; the older model file is kept until the new state is durable.
   */
  async saveCheckpoint(id: string, round: number, global: FLModel): Promise<void> {
    const dir = join(this.#dir(id), 'checkpoint');
    const bytes = encodeModel(global);
    const file = `global-r${round}.safetensors`;
    await writeFileAtomic(join(dir, file), bytes);
    await writeFileAtomic(join(dir, 'state.json'), JSON.stringify({ round, sha256: sha256(bytes), file }));
    const old = await readdir(dir);
    for (const f of old) if (/^global-r\d+\.safetensors$/.test(f) && f !== file) await unlink(join(dir, f)).catch(() => undefined);
  }

  /** The last checkpoint, or undefined when no round has completed. @throws E_RUNTIME_CHECKPOINT */
  async loadCheckpoint(id: string): Promise<Checkpoint | undefined> {
    const dir = join(this.#dir(id), 'checkpoint');
    let text: string;
    try {
      text = await readFile(join(dir, 'state.json'), 'utf8');
    } catch {
      return undefined;
    }
    const state = CheckpointState.safeParse(parseStrictJson(text));
    if (!state.success) throw new FlareRuntimeError('E_RUNTIME_CHECKPOINT', `job ${id}: checkpoint state is malformed`);
    const bytes = await readFile(join(dir, state.data.file)).catch(() => {
      throw new FlareRuntimeError('E_RUNTIME_CHECKPOINT', `job ${id}: checkpoint ${state.data.file} is missing`);
    });
    if (sha256(bytes) !== state.data.sha256) throw new FlareRuntimeError('E_RUNTIME_CHECKPOINT', `job ${id}: checkpoint ${state.data.file} does not match its digest`);
    return { round: state.data.round, model: decodeModel(bytes) };
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
