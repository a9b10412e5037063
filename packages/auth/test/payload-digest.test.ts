// The digest a message MAC covers: SHA-256 for small payloads, the session's keyed universal hash (Poly1305 of
// RFC 8439 with one key pair per session and direction) for large ones.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createClientAuth, createServerAuth, KEYED_DIGEST_MIN_BYTES, payloadDigest } from '../src/index.js';
import { channelPair, makeKits, type Kits } from './helpers.js';

let kits: Kits;
beforeAll(async () => {
  kits = await makeKits('digesttest');
});

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const digestOf = (key: Uint8Array, bytes: Uint8Array, piece = bytes.length || 1): string => {
  const d = payloadDigest(key, bytes.length);
  for (let at = 0; at < bytes.length; at += piece) d.update(bytes.subarray(at, at + piece));
  return hex(d.digest());
};

describe('payloadDigest', () => {
  it('below the threshold: SHA-256 of the payload', () => {
    const small = randomBytes(KEYED_DIGEST_MIN_BYTES - 1);
    expect(digestOf(randomBytes(32), small)).toBe(createHash('sha256').update(small).digest('hex'));
  });

  it('at and above it: RFC 8439 Poly1305 of the payload as associated data (ChaCha20-Poly1305, zero nonce, no plaintext)', () => {
    const key = randomBytes(32);
    const big = randomBytes(KEYED_DIGEST_MIN_BYTES);
    const c = createCipheriv('chacha20-poly1305', key, new Uint8Array(12), { authTagLength: 16 });
    c.setAAD(big, { plaintextLength: 0 });
    c.final();
    expect(digestOf(key, big)).toBe(c.getAuthTag().toString('hex'));
  });

  it('is the same however the payload is split, and differs under another key or one flipped bit', () => {
    const key = randomBytes(32);
    const big = randomBytes(300_000);
    const whole = digestOf(key, big);
    expect(digestOf(key, big, 16_384)).toBe(whole);
    expect(digestOf(key, big, 1_000_003)).toBe(whole);
    expect(digestOf(key, big, 7)).toBe(whole);
    expect(digestOf(randomBytes(32), big)).not.toBe(whole);
    const flipped = Buffer.from(big);
    flipped[123_456] = flipped[123_456]! ^ 1;
    expect(digestOf(key, flipped)).not.toBe(whole);
  });
});

describe('large messages in a session', () => {
  it('are digested with keys of this session and direction: both ends agree, another session does not', async () => {
    const pair = channelPair();
    const [server, client] = await Promise.all([createServerAuth({ kit: kits.server }).accept(pair.server), createClientAuth({ kit: kits.client, renewAt: false }).login(pair.client)]);
    const big = randomBytes(100_000);
    const d = (g: typeof server, sending: boolean): string => {
      const x = g.payloadDigest(big.length, sending);
      x.update(big);
      return hex(x.digest());
    };
    expect(d(client, true)).toBe(d(server, false));
    expect(d(server, true)).toBe(d(client, false));
    expect(d(client, true)).not.toBe(d(client, false));
    const other = channelPair();
    const [, client2] = await Promise.all([createServerAuth({ kit: kits.server }).accept(other.server), createClientAuth({ kit: kits.client, renewAt: false }).login(other.client)]);
    expect(d(client2, true)).not.toBe(d(client, true));
  });

  it('a flipped byte deep inside a large payload is refused (E_AUTH_MAC)', async () => {
    const pair = channelPair();
    await Promise.all([createServerAuth({ kit: kits.server }).accept(pair.server), createClientAuth({ kit: kits.client, renewAt: false }).login(pair.client)]);
    pair.client.wire = (f) => {
      const payload = f.payload.slice();
      payload[99_000] = payload[99_000]! ^ 0x80;
      return { ...f, payload };
    };
    await pair.client.send({ type: 'update' }, randomBytes(100_000));
    expect((await pair.server.closed).error?.code).toBe('E_AUTH_MAC');
    expect(pair.server.delivered).toHaveLength(0);
  });
});
