import { hash } from 'node:crypto';
import { canonicalJson, type JsonValue } from '@flare/core';
import { z } from 'zod';

/** Version of the line format. */
export const AUDIT_FORMAT_VERSION = 1;
/** `prev` of the first line: 64 zero hex digits. */
export const GENESIS = '0'.repeat(64);
/** The action of checkpoint lines; refused from {@link AuditLog.append}, like every action starting with `audit_`. */
export const CHECKPOINT_ACTION = 'audit_checkpoint';
/** The action the log writes when it is opened (new or resumed). */
export const OPEN_ACTION = 'audit_open';
/** The action of a peer's anchor recorded by {@link AuditLog.recordAnchor}: `data.anchor` is the peer's checkpoint line. */
export const ANCHOR_ACTION = 'audit_anchor';
/** The action written when a peer's anchor is older than (or forks from) one recorded before. */
export const ANCHOR_ROLLBACK_ACTION = 'audit_anchor_rollback';
/** Longest line (bytes, with its newline): bounds memory when reading a log from an untrusted place. */
export const MAX_LINE_BYTES = 64 * 1024;

/** One audit event as written: a line of the JSON Lines file. */
export interface AuditRecord {
  readonly v: 1;
  /** Position in this log, from 0, without gaps. */
  readonly seq: number;
  /** ISO-8601 UTC with milliseconds. */
  readonly ts: string;
  readonly site: string;
  /** A random UUID (v4). */
  readonly id: string;
  /** The peer's event id this event answers to (cross-site correlation). */
  readonly ref?: string;
  readonly user?: string;
  readonly job?: string;
  readonly scope?: string;
  readonly action: string;
  readonly msg?: string;
  /** Small structured details. */
  readonly data?: Readonly<Record<string, JsonValue>>;
  /** `hash` of the previous line ({@link GENESIS} for the first). */
  readonly prev: string;
  /** SHA-256 (hex) of the canonical JSON (RFC 8785) of this line without `hash` (and `sig`). */
  readonly hash: string;
}

/** A checkpoint line: part of the chain, and signed by the site's key. */
export interface CheckpointRecord extends Omit<AuditRecord, 'ref' | 'user' | 'job' | 'scope' | 'msg' | 'data'> {
  readonly action: typeof CHECKPOINT_ACTION;
  readonly cp: {
    /** ES256, PS256 or EdDSA. */
    readonly alg: SignatureAlg;
    /** The signer's public key, SPKI DER in base64, so a verifier can check signatures without the certificate (and compare it with one). */
    readonly key: string;
    /** True for the checkpoint written by close(): the log was closed cleanly here. */
    readonly final: boolean;
  };
  /** Base64 signature over `flare-ts audit checkpoint v1\n` + `hash`. */
  readonly sig: string;
}

/** Signature algorithms of checkpoints. */
export type SignatureAlg = 'ES256' | 'PS256' | 'EdDSA';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const text = (max: number) => z.string().max(max);
const base = {
  v: z.literal(1),
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  ts: z.iso.datetime({ precision: 3 }),
  site: text(256).min(1),
  id: z.uuid(),
  prev: hex64,
  hash: hex64,
};

/** Actions are short snake/dotted names (FLARE's commands such as `submit_job`, `scheduler.check_resource`). */
export const ACTION = /^[a-z][a-z0-9_.:-]{0,63}$/;

export const eventSchema = z.strictObject({
  ...base,
  ref: text(256).optional(),
  user: text(256).optional(),
  job: text(256).optional(),
  scope: text(256).optional(),
  action: z.string().regex(ACTION).refine((a) => a !== CHECKPOINT_ACTION),
  msg: text(8192).optional(),
  data: z.record(z.string(), z.json()).optional(),
});

export const checkpointSchema = z.strictObject({
  ...base,
  action: z.literal(CHECKPOINT_ACTION),
  cp: z.strictObject({ alg: z.enum(['ES256', 'PS256', 'EdDSA']), key: z.base64().max(4096), final: z.boolean() }),
  sig: z.base64().max(2048),
});

/** SHA-256 hex of a string's UTF-8 bytes. */
export function sha256Hex(s: string): string {
  // One-shot hash (Node >= 20.12): no Hash object per line, a third of the hashing cost on the append path.
  return hash('sha256', s, 'hex');
}

/** The hash of a parsed line as a verifier computes it: canonical JSON of everything but `hash` and `sig`. */
export function recordHash(record: Readonly<Record<string, JsonValue>>): string {
  const { hash: _hash, sig: _sig, ...body } = record;
  return sha256Hex(canonicalJson(body));
}
