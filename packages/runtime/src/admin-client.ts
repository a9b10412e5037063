import { randomUUID } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { FlareError, FlareRuntimeError, isFlareErrorCode, parseStrictJson, type JsonValue } from '@flare/core';
import type { PeerChannel } from './channel.js';
import type { JobRecord } from './job-store.js';
import { JobRecord as JobRecordSchema } from './job-store.js';
import { outgoing, parseMessage, type Message } from './messages.js';

/** A job folder read from disk: `meta.json`, `model.safetensors`, optional `custom/` (BYOC) files. */
export interface JobBundle {
  readonly definition: JsonValue;
  readonly initialModel: Uint8Array;
  readonly files: ReadonlyMap<string, Uint8Array>;
}

/** Reads a job folder (FLARE's job layout, simplified): meta.json, model.safetensors, custom/**. */
export async function readJobFolder(dir: string): Promise<JobBundle> {
  const read = async (name: string): Promise<Buffer> =>
    readFile(join(dir, name)).catch((e: unknown) => {
      throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `the job folder has no readable ${name}`, { cause: e });
    });
  const definition = parseStrictJson((await read('meta.json')).toString('utf8'));
  const initialModel = new Uint8Array(await read('model.safetensors'));
  const files = new Map<string, Uint8Array>();
  const custom = join(dir, 'custom');
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 8) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', 'custom/ is nested too deeply');
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `custom/${relative(custom, p)} is a symbolic link`);
      if (e.isDirectory()) await walk(p, depth + 1);
      else if (e.isFile()) files.set(relative(custom, p).split('\\').join('/'), new Uint8Array(await readFile(p)));
    }
  };
  if ((await stat(custom).catch(() => undefined))?.isDirectory() === true) await walk(custom, 0);
  return { definition, initialModel, files };
}

/** A job as `list` shows it. */
export interface JobSummary {
  readonly id: string;
  readonly name: string;
  readonly status: string;
  readonly submitter: string;
  readonly rounds_done: number;
}

/**
 * The admin API over the admin's authenticated channel: every call is authorized by the server (and, for
 * jobs, by each site when they are deployed). Replies that refuse reject with a FlareRuntimeError carrying
 * the server's code.
 *
 * @example
 * ```ts
 * const admin = new AdminClient(channel);
 * const id = await admin.submit(await readJobFolder('jobs/spam'));
 * console.log((await admin.status(id)).status);
 * ```
 */
export class AdminClient {
  readonly #ch: PeerChannel;
  readonly #timeoutMs: number;
  readonly #pending = new Map<string, { resolve(r: [Extract<Message, { t: 'reply' }>, Uint8Array]): void; reject(e: unknown): void }>();

  constructor(channel: PeerChannel, options: { readonly timeoutMs?: number } = {}) {
    this.#ch = channel;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    channel.onMessage((h, payload) => {
      let msg: Message;
      try {
        msg = parseMessage(h);
      } catch {
        return;
      }
      if (msg.t !== 'reply') return;
      const p = this.#pending.get(msg.id);
      if (p === undefined) return;
      this.#pending.delete(msg.id);
      p.resolve([msg, payload]);
    });
    channel.onClose(() => {
      for (const p of this.#pending.values()) p.reject(new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'the server closed the admin connection'));
      this.#pending.clear();
    });
  }

  async #call(req: Omit<Extract<Message, { t: 'admin' }>, 't' | 'id'>, payload?: Uint8Array): Promise<[JsonValue, Uint8Array]> {
    const id = randomUUID();
    const reply = new Promise<[Extract<Message, { t: 'reply' }>, Uint8Array]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new FlareRuntimeError('E_RUNTIME_TIMEOUT', `no answer to '${req.cmd}' within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      this.#pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
    await this.#ch.send(outgoing({ t: 'admin', id, ...req }), payload);
    const [msg, body] = await reply;
    if (!msg.ok) {
      const code = msg.error?.code ?? 'E_RUNTIME_PROTOCOL';
      // The server's code is stable API: rethrow it as such when this build knows it.
      if (isFlareErrorCode(code)) throw new FlareError(code, msg.error?.message ?? 'refused');
      throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `the server answered with unknown code ${code.slice(0, 64)}`);
    }
    return [msg.data ?? null, body];
  }

  /** Submits a job; returns its id. Needs `submit_job` (and `byoc` for custom code) at the server. */
  async submit(bundle: JobBundle): Promise<string> {
    const files = Object.fromEntries([...bundle.files].map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
    const [data] = await this.#call({ cmd: 'submit', definition: bundle.definition, ...(bundle.files.size > 0 ? { files } : {}) }, bundle.initialModel);
    return String((data as { id: string }).id);
  }

  /** Every job the server knows. */
  async list(): Promise<JobSummary[]> {
    const [data] = await this.#call({ cmd: 'list' });
    return data as unknown as JobSummary[];
  }

  /** A job's full record (status, rounds, history, refusals). */
  async status(job: string): Promise<JobRecord> {
    const [data] = await this.#call({ cmd: 'status', job });
    return JobRecordSchema.parse(data);
  }

  /** Aborts a job. */
  async abort(job: string): Promise<void> {
    await this.#call({ cmd: 'abort', job });
  }

  /** The final global model of a FINISHED job (safetensors bytes). */
  async download(job: string): Promise<Uint8Array> {
    const [, body] = await this.#call({ cmd: 'download', job });
    return body;
  }

  /** The last lines of the server's audit log. */
  async audit(lines = 50): Promise<string[]> {
    const [data] = await this.#call({ cmd: 'audit', lines });
    return (data as JsonValue[]).map(String);
  }

  /** Closes the channel. */
  close(): void {
    this.#ch.close();
  }
}
