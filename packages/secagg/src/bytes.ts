// Byte helpers shared by the protocol modules. Internal.

const utf8 = new TextEncoder();

/**
 * Concatenates fields with a 4-byte big-endian length before each one, so that no two different lists of
 * fields encode to the same bytes (the transcripts that are signed, MACed or fed to HKDF depend on it).
 */
export function encodeFields(...fields: ReadonlyArray<Uint8Array | string>): Uint8Array {
  const parts = fields.map((f) => (typeof f === 'string' ? utf8.encode(f) : f));
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of parts) {
    view.setUint32(at, p.length);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** base64url without padding, the form every binary field takes in a message header. */
export function toB64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64url');
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Decodes base64url, or returns undefined when `text` is not canonical base64url of `length` bytes. */
export function fromB64(text: string, length?: number): Uint8Array | undefined {
  if (!B64URL.test(text) || text.length % 4 === 1) return undefined;
  const bytes = new Uint8Array(Buffer.from(text, 'base64url'));
  if (length !== undefined && bytes.length !== length) return undefined;
  // Canonical only: a second encoding of the same bytes would let two messages differ yet mean the same.
  if (toB64(bytes) !== text) return undefined;
  return bytes;
}

/** Constant-time equality of two byte strings of public length. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
