import { createHash } from 'node:crypto';
import { AuthError, canonicalJson } from '@flare/core';
import { z } from 'zod';
import type { AuthHeader } from './channel.js';
import { PROTOCOL } from './key-schedule.js';

// The login messages (DESIGN.md "Message authentication"). Every field is bounded; unknown fields are refused.
//   client -> server  hello     {name, cert, nonce, eph, ts, cb, cred?, via?, sig}   signed with the client kit key
//                     (via: the relays between client and server, nearest the server first, from the kit's fqsn)
//   server -> client  welcome   {name, cert, nonce, eph, sid, exp, ts, cb, sig} signed over hello + welcome
//   client -> server  finished  sealed with the new session (key confirmation)
//   server -> client  ready     sealed with the new session
// Renewal, inside the session: renew {eph, nonce} -> renewed {eph, nonce, exp}.

/** The header key that marks protocol control messages; applications may not use it. */
export const CONTROL = '$auth';

const b64u32 = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'expected 32 bytes, base64url');
const sig = z.string().max(2048).regex(/^[A-Za-z0-9_-]+$/, 'expected base64url');
const pem = z.string().min(1).max(16 * 1024);
const name = z.string().min(1).max(256);
const ts = z.int().min(0).max(2 ** 53 - 1);

export const HELLO = z.strictObject({
  [CONTROL]: z.literal('hello'),
  v: z.literal(2),
  name,
  cert: pem,
  nonce: b64u32,
  eph: b64u32,
  ts,
  cb: z.boolean(),
  cred: z.record(z.string().max(256), z.json()).optional(),
  via: z.array(name).min(1).max(16).optional(),
  sig,
});

export const WELCOME = z.strictObject({
  [CONTROL]: z.literal('welcome'),
  v: z.literal(2),
  name,
  cert: pem,
  nonce: b64u32,
  eph: b64u32,
  sid: z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'expected a 16-byte session id'),
  exp: ts,
  ts,
  cb: z.boolean(),
  sig,
});

export const TRAILER = z.strictObject({
  sid: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected a base64url session id'),
  seq: z.int().min(0).max(2 ** 53 - 1),
  ts,
  e: z.int().min(0).max(2 ** 31),
  mac: b64u32,
});
export type Trailer = z.infer<typeof TRAILER>;

export const RENEW = z.strictObject({ [CONTROL]: z.literal('renew'), eph: b64u32, nonce: b64u32 });
export const RENEWED = z.strictObject({ [CONTROL]: z.literal('renewed'), eph: b64u32, nonce: b64u32, exp: ts });

/** Parses a login message or throws E_AUTH_HANDSHAKE naming the first bad field (never echoing its value). */
export function parseMessage<S extends z.ZodType>(schema: S, header: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(header);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new AuthError('E_AUTH_HANDSHAKE', `malformed ${what}: ${first?.path.join('.') || 'message'} ${first?.message ?? ''}`.trim());
  }
  return parsed.data;
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
const withoutSig = (m: AuthHeader): AuthHeader => Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'sig')) as AuthHeader;

/** The bytes the client signs: a context line, then the canonical hello without its signature. */
export function helloSigningInput(hello: AuthHeader): Buffer {
  return utf8(`${PROTOCOL} client hello\n${canonicalJson(withoutSig(hello))}`);
}

/** The bytes the server signs: a context line, the hash of the whole signed hello, the canonical welcome. */
export function welcomeSigningInput(hello: AuthHeader, welcome: AuthHeader): Buffer {
  const h = createHash('sha256').update(canonicalJson(hello)).digest('hex');
  return utf8(`${PROTOCOL} server welcome\n${h}\n${canonicalJson(withoutSig(welcome))}`);
}

/** The transcript hash: SHA-256 over both signed login messages, canonical and separated. */
export function transcriptHash(hello: AuthHeader, welcome: AuthHeader): Uint8Array {
  return createHash('sha256').update(`${PROTOCOL} transcript\n`).update(canonicalJson(hello)).update('\n').update(canonicalJson(welcome)).digest();
}

/** The renewal transcript: the previous epoch's transcript, then both renewal messages. */
export function renewalHash(previous: Uint8Array, renew: AuthHeader, renewed: AuthHeader): Uint8Array {
  return createHash('sha256').update(`${PROTOCOL} renewal\n`).update(previous).update(canonicalJson(renew)).update('\n').update(canonicalJson(renewed)).digest();
}

export const b64u = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
export const fromB64u = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64url'));
