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
  /** The payload's digest: SHA-256, or the session's keyed digest for large payloads (payload-digest.ts). */
  readonly payloadDigest: Uint8Array;
}

/**
 * HMAC-SHA256 (RFC 2104) over one unambiguous byte string: a context line, then the session id, sequence
 * number, timestamp, epoch, payload length and payload digest (hex), one per line, then the canonical JSON
 * (RFC 8785) of the application header. Every field before the header has a fixed alphabet without newlines,
 * and the header comes last, so no two inputs share an encoding; key order in the header does not matter.
 */
export function messageMac(key: Uint8Array, m: MacInput): Uint8Array {
  const digest = Buffer.from(m.payloadDigest.buffer, m.payloadDigest.byteOffset, m.payloadDigest.byteLength).toString('hex');
  const covered = `flare-ts/auth/v2 msg\n${m.sid}\n${m.seq}\n${m.ts}\n${m.epoch}\n${m.payloadLength}\n${digest}\n${canonicalJson(m.header)}`;
  return createHmac('sha256', key).update(covered).digest();
}

/** Constant-time comparison of two MACs (false for different lengths). */
export function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
