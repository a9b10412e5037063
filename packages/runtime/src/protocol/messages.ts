import { FlareRuntimeError, type Identity, type JsonValue } from '@flare/core';
import { z } from 'zod';

const id = z.string().min(1).max(80);
const reason = z.strictObject({ code: z.string().max(64), message: z.string().max(2048) });
const identity = z.strictObject({ name: z.string().max(256), org: z.string().max(256), role: z.string().max(64).optional() });
/** An admin as a deploy or abort message names it (the type is implied: always an admin). */
type WireIdentity = z.output<typeof identity>;
const numbers = z.record(z.string().max(64), z.number());
const json: z.ZodType<JsonValue> = z.lazy(() => z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(json), z.record(z.string(), json)]));
/** A workflow's task kind: `train`, `validate`, or a workflow's own (`secagg.share`, ...). */
const taskKind = z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/);
const jobEnd = z.enum(['FINISHED', 'FAILED', 'ABORTED']);

/**
 * Every runtime message header, by type `t` (server <-> site <-> admin). Headers are strict: an unknown field
 * or type is refused before anything acts on it. Bulk data travels as the payload after the header, never in
 * it: models (safetensors), job bundles (meta.json and the job's files, see `encodeJobBundle`), attestation
 * evidence. Identity is never a header field (it is the channel's authenticated peer).
 */
export const Message = z.discriminatedUnion('t', [
  // site -> server
  z.strictObject({ t: z.literal('register'), resources: numbers }),
  z.strictObject({ t: z.literal('heartbeat') }),
  z.strictObject({ t: z.literal('deploy_reply'), id, job: id, ok: z.boolean(), ref: id.optional(), error: reason.optional() }),
  z.strictObject({
    t: z.literal('result'),
    job: id,
    round: z.int().min(0),
    task: id,
    kind: taskKind,
    ref: id.optional(),
    ok: z.boolean(),
    error: reason.optional(),
    metrics: numbers.default({}),
    /** A workflow's own small JSON answer (the payload carries bytes). */
    data: json.optional(),
  }),
  /** An aggregating relay -> its server (or the relay above): the sites registered with it now (docs/relays.md). */
  z.strictObject({ t: z.literal('relay_sites'), sites: z.array(id).max(100_000) }),
  /** A site stops running a job on its own (its wall time ran out, its budget is spent): the server stops sending it tasks. */
  z.strictObject({ t: z.literal('leave'), job: id, reason, ref: id.optional() }),
  // server -> site
  z.strictObject({ t: z.literal('welcome') }),
  /**
   * A newer CRL the server (or an aggregating relay) accepted while the site is connected: the payload is its
   * PEM; the site keeps it only when it is signed by the project root and newer than its own (@flare/pki CrlStore).
   */
  z.strictObject({ t: z.literal('crl') }),
  /** A job for the site to admit; the payload is the job bundle (meta.json exactly as submitted, custom/ files). */
  z.strictObject({ t: z.literal('deploy'), id, job: id, submitter: identity, ref: id.optional() }),
  z.strictObject({ t: z.literal('task'), job: id, round: z.int().min(0), task: id, kind: taskKind, ref: id.optional(), data: json.optional() }),
  z.strictObject({ t: z.literal('abort'), job: id, ref: id.optional(), by: identity.optional() }),
  /** The job ended at the server: the site releases what it reserved and closes the learner. */
  z.strictObject({ t: z.literal('job_end'), job: id, status: jobEnd, ref: id.optional(), error: reason.optional() }),
  // admin -> server; submit carries the job bundle (meta.json, model.safetensors, custom/) as the payload
  z.strictObject({
    t: z.literal('admin'),
    id,
    cmd: z.enum(['submit', 'list', 'status', 'abort', 'download', 'audit', 'sites', 'result']),
    job: id.optional(),
    /** `audit`: the last lines of the log; `list`: the newest jobs. */
    lines: z.int().min(1).max(10_000).optional(),
    /** The name of a job result (`result`: e.g. `cross_site_eval`). */
    name: z.string().regex(/^[a-z0-9_-]{1,64}$/).optional(),
  }),
  // server -> admin
  /**
   * `body: 'json'`: the answer is the payload (UTF-8 JSON), not `data`: a large answer (a job's status with a
   * thousand sites) would exceed the header's 64 KiB limit.
   */
  z.strictObject({ t: z.literal('reply'), id, ok: z.boolean(), error: reason.optional(), data: json.optional(), body: z.literal('json').optional() }),
  /** Either way between server and site: the sender's latest signed audit checkpoint (its anchor) as the payload (JSON). */
  z.strictObject({ t: z.literal('anchor') }),
  // either way: the sender ends the connection, saying why (e.g. an attestation refusal)
  z.strictObject({ t: z.literal('bye'), reason: reason.optional() }),
  // either way between server and site: attestation inside the authenticated session. The evidence travels
  // as the reply's payload (JSON of @flare/cc-attest's wire form), never in the header.
  z.strictObject({ t: z.literal('attest_request'), id, purpose: z.string().regex(/^[A-Za-z0-9:_.#-]{1,160}$/), types: z.array(z.enum(['snp', 'tdx', 'gpu'])).max(3) }),
  z.strictObject({ t: z.literal('attest_reply'), id, ok: z.boolean(), error: reason.optional() }),
]);
/** A decoded runtime message header. */
export type Message = z.output<typeof Message>;
/** The message of type `T`. */
export type MessageOf<T extends Message['t']> = Extract<Message, { t: T }>;
/** How a job ended, as the server tells its sites. */
export type JobEndStatus = z.output<typeof jobEnd>;

/** Validates an untrusted header. @throws FlareRuntimeError E_RUNTIME_PROTOCOL for anything that is not a runtime message. */
export function parseMessage(header: unknown): Message {
  const r = Message.safeParse(header);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `malformed runtime message${first === undefined ? '' : ` at ${first.path.join('.') || 'header'}: ${first.message}`}`, { cause: r.error });
  }
  return r.data;
}

/** A header ready to send (checked against the schema first: we never send what we would refuse). */
export function outgoing(header: z.input<typeof Message>): { readonly [key: string]: JsonValue } {
  return Message.parse(header) as unknown as { readonly [key: string]: JsonValue };
}

/** The admin a message or job record names (`name`, `org`, `role`), as core's {@link Identity}; an empty role is none. */
export function adminIdentity(w: { readonly name: string; readonly org: string; readonly role?: string | undefined }): Identity {
  return { name: w.name, org: w.org, type: 'admin', ...(w.role === undefined || w.role === '' ? {} : { role: w.role }) };
}

/** An admin's identity as deploy and abort messages carry it (no type: it is always an admin). */
export function wireIdentity(id: Identity): WireIdentity {
  return { name: id.name, org: id.org, ...(id.role === undefined || id.role === '' ? {} : { role: id.role }) };
}
