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
 * HMAC-SHA256 (RFC 2104) over one unambiguous byte string: a context line, then the session id, sequence
 * number, timestamp, epoch, payload length and payload SHA-256 (hex), one per line, then the canonical JSON
 * (RFC 8785) of the application header. Every field before the header has a fixed alphabet without newlines,
 * and the header comes last, so no two inputs share an encoding; key order in the header does not matter.
 */
export function messageMac(key: Uint8Array, m: MacInput): Uint8Array {
  const sha = Buffer.from(m.payloadSha256.buffer, m.payloadSha256.byteOffset, m.payloadSha256.byteLength).toString('hex');
  const covered = `flare-ts/auth/v1 msg\n${m.sid}\n${m.seq}\n${m.ts}\n${m.epoch}\n${m.payloadLength}\n${sha}\n${canonicalJson(m.header)}`;
  return createHmac('sha256', key).update(covered).digest();
}

/** Constant-time comparison of two MACs (false for different lengths). */
export function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
