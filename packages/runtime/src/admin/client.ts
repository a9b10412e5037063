import { randomUUID } from 'node:crypto';
import { FlareRuntimeError, parseStrictJson, type JsonValue } from '@flare/core';
import { RUNTIME_DEFAULTS } from '../defaults.js';
import { errorFromReason } from '../errors.js';
import { encodeJobBundle, type JobBundle } from '../protocol/bundle.js';
import { signAbortRequest, signJobBundle, type AdminSigningKit } from '../protocol/job-trust.js';
import type { PeerChannel } from '../protocol/channel.js';
import { outgoing, parseMessage, type MessageOf } from '../protocol/messages.js';
import { PendingRequests } from '../protocol/pending.js';
import type { SiteState } from '../server/admin-api.js';
import type { RelayedSiteSighting } from '../server/relay-status.js';
import type { SiteSighting } from '../server/registry.js';
import { JobRecord, type JobRecord as JobRecordType } from '../server/job-store.js';

/** A job as `list` shows it. */
export interface JobSummary {
  readonly id: string;
  readonly name: string;
  readonly status: string;
  readonly submitter: string;
  readonly rounds_done: number;
}

type Reply = [MessageOf<'reply'>, Uint8Array];

/** A large answer the server sent as the payload (`body: 'json'`). @throws E_RUNTIME_PROTOCOL when it is not JSON. */
function replyBody(cmd: string, payload: Uint8Array): JsonValue {
  try {
    return parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch (e) {
    throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `the server's answer to '${cmd}' is not valid JSON`, { cause: e });
  }
}

/**
 * The admin API over the admin's authenticated channel: every call is authorized by the server (and, for
 * jobs, by each site when they are deployed). Replies that refuse reject with a FlareError carrying the code
 * of the component that decided (the server's, or a site's).
 *
 * @example
 * ```ts
 * const admin = new AdminClient(channel, { signer: adminKit }); // signs every job and abort
 * const id = await admin.submit(await readJobFolder('jobs/spam'));
 * console.log((await admin.status(id)).status);
 * ```
 */
export class AdminClient {
  readonly #ch: PeerChannel;
  readonly #timeoutMs: number;
  readonly #pending = new PendingRequests<Reply, PeerChannel>();
  readonly #signer: AdminSigningKit | undefined;

  /**
   * `signer` is the admin's kit (@flare/pki's `Kit` fits): every job and every abort is signed with its key, as
   * each site requires. Without it jobs and aborts go unsigned, and every site refuses them.
   */
  constructor(channel: PeerChannel, options: { readonly timeoutMs?: number; readonly signer?: AdminSigningKit } = {}) {
    this.#ch = channel;
    this.#timeoutMs = options.timeoutMs ?? RUNTIME_DEFAULTS.adminTimeoutMs;
    this.#signer = options.signer;
    channel.onMessage((h, payload) => {
      let msg;
      try {
        msg = parseMessage(h);
      } catch {
        return;
      }
      if (msg.t === 'reply') this.#pending.settle(msg.id, channel, [msg, payload]);
    });
    channel.onClose(() => this.#pending.rejectAll(new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'the server closed the admin connection')));
  }

  async #call(req: Omit<MessageOf<'admin'>, 't' | 'id'>, payload?: Uint8Array): Promise<[JsonValue, Uint8Array]> {
    const id = randomUUID();
    const reply = this.#pending.open(id, this.#ch, { timeoutMs: this.#timeoutMs, onTimeout: () => new FlareRuntimeError('E_RUNTIME_TIMEOUT', `no answer to '${req.cmd}' within ${this.#timeoutMs} ms`) });
    this.#ch.send(outgoing({ t: 'admin', id, ...req }), payload).catch((e: unknown) => this.#pending.reject(id, e));
    const [msg, body] = await reply;
    if (!msg.ok) throw errorFromReason(msg.error);
    if (msg.body === 'json') return [replyBody(req.cmd, body), new Uint8Array(0)];
    return [msg.data ?? null, body];
  }

  /**
   * Submits a job (meta.json, the initial model, custom/ files, carried as the message payload); returns its
   * id. `id` (a UUID) names the job in advance. With a `signer`, the job is signed for that id over all its
   * files (a bundle that already carries a signature is sent as it is). Needs `submit_job` (and `byoc` for
   * custom code) at the server, and at every site.
   */
  async submit(bundle: JobBundle, options: { readonly id?: string } = {}): Promise<string> {
    const id = options.id ?? randomUUID();
    const signed = this.#signer === undefined || bundle.signature !== undefined ? bundle : signJobBundle(this.#signer, bundle, id);
    const [data] = await this.#call({ cmd: 'submit', job: id }, encodeJobBundle(signed));
    return String((data as { id: string }).id);
  }

  /** The newest jobs the server knows, oldest first: `last` of them (1-10,000; default the server's page of 1,000). */
  async list(options: { readonly last?: number } = {}): Promise<JobSummary[]> {
    const [data] = await this.#call({ cmd: 'list', ...(options.last === undefined ? {} : { lines: options.last }) });
    return data as unknown as JobSummary[];
  }

  /** A job's full record (status, rounds, history, refusals). */
  async status(job: string): Promise<JobRecordType> {
    return (await this.jobStatus(job)).record;
  }

  /**
   * A job's record and each site's state with it (connected, last seen, running, refused, contributions), and
   * the sites behind the server's aggregating relays (`relaySites`, when it has any: their updates reach the
   * server inside their relay's).
   */
  async jobStatus(job: string): Promise<{ readonly record: JobRecordType; readonly sites: SiteState[]; readonly relaySites?: RelayedSiteSighting[] }> {
    const [data] = await this.#call({ cmd: 'status', job });
    const d = data as { record?: unknown; sites?: unknown; relay_sites?: unknown };
    const relaySites = Array.isArray(d.relay_sites) ? (d.relay_sites as RelayedSiteSighting[]) : undefined;
    return { record: JobRecord.parse(d.record), sites: (Array.isArray(d.sites) ? d.sites : []) as SiteState[], ...(relaySites === undefined ? {} : { relaySites }) };
  }

  /** Aborts a job; with a `signer`, the abort is signed for this job (sites obey only a signed abort). */
  async abort(job: string): Promise<void> {
    await this.#call({ cmd: 'abort', job }, this.#signer === undefined ? undefined : signAbortRequest(this.#signer, job));
  }

  /** The final global model of a FINISHED job (safetensors bytes). */
  async download(job: string): Promise<Uint8Array> {
    const [, body] = await this.#call({ cmd: 'download', job });
    return body;
  }

  /**
   * A named result a job's workflow stored (JSON), e.g. `cross_site_eval`: the cross-site evaluation matrix.
   * Needs `download_job`. @throws E_RUNTIME_JOB_NOT_FOUND when the job has no such result (yet).
   */
  async result(job: string, name: string): Promise<JsonValue> {
    const [data] = await this.#call({ cmd: 'result', job, name });
    return data;
  }

  /** The last lines of the server's audit log. */
  async audit(lines = 50): Promise<string[]> {
    const [data] = await this.#call({ cmd: 'audit', lines });
    return (data as JsonValue[]).map(String);
  }

  /**
   * The sites the server has seen since it started: connected ones first, with when each was last seen; then the
   * sites behind its aggregating relays (`behind`: the relay; `relayLost`: that relay is not connected now).
   */
  async sites(): Promise<Array<SiteSighting & { readonly behind?: string; readonly relayLost?: boolean }>> {
    const [data] = await this.#call({ cmd: 'sites' });
    return data as unknown as Array<SiteSighting & { readonly behind?: string; readonly relayLost?: boolean }>;
  }

  /** Closes the channel. */
  close(): void {
    this.#ch.close();
  }
}
