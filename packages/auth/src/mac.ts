import { createHmac, timingSafeEqual } from 'node:crypto';
import { canonicalJson, type JsonValue } from '@flare/core';

/** What a message MAC covers besides the key. */
export interface MacInput {
  readonly sid: string;
  readonly seq: number;
  readonly ts: number;
  /** Key epoch (0 at login, +1 per renewal). */
  readonly epoch: number;
  readonly header: { readonly [key: string]: JsonValue };
  readonly payloadLength: number;
  readonly payloadSha256: Uint8Array;
}

/**
 * HMAC-SHA256 over the canonical JSON (RFC 8785) of the session id, sequence number, timestamp, epoch, the
 * application header, the payload length and the payload's SHA-256: one canonical byte string, so a field
 * cannot be moved between header and trailer, and two implementations agree on what was authenticated.
 */
export function messageMac(key: Uint8Array, m: MacInput): Uint8Array {
  const covered = canonicalJson({
    e: m.epoch,
    h: m.header,
    len: m.payloadLength,
    seq: m.seq,
    sha: Buffer.from(m.payloadSha256.buffer, m.payloadSha256.byteOffset, m.payloadSha256.byteLength).toString('base64url'),
    sid: m.sid,
    ts: m.ts,
  });
  return createHmac('sha256', key).update('flare-ts/auth/v1 msg\n').update(covered).digest();
}

/** Constant-time comparison of two MACs (false for different lengths). */
export function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
