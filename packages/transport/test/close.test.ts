import { createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { AuthError, canonicalJson, DpError, encodeFrame, PkiError, PolicyError, SecAggError, TransportError, type JsonValue } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_REFUSED, dial, errorFromClose, listen, refusalOf, type Connection, type Header, type MessageGuard } from '../src/index.js';
import { within } from './certs.js';

describe('errorFromClose (RFC 6455 section 7.4 close codes)', () => {
  it('a normal close (1000) is no error; going away (1001) is E_TRANSPORT_SHUTDOWN; 1006 is E_TRANSPORT_CLOSED', () => {
    expect(errorFromClose(1000, '')).toBeUndefined();
    expect(errorFromClose(1001, '')?.code).toBe('E_TRANSPORT_SHUTDOWN');
    expect(errorFromClose(1006, '')?.code).toBe('E_TRANSPORT_CLOSED');
    expect(errorFromClose(1009, '')?.code).toBe('E_TRANSPORT_MESSAGE_TOO_LARGE');
  });

  it('a refusal (4000) re-creates the peer\'s code in its area class', () => {
    expect(errorFromClose(CLOSE_REFUSED, 'E_AUTH_REPLAY')).toBeInstanceOf(AuthError);
    expect(errorFromClose(CLOSE_REFUSED, 'E_CERT_REVOKED')).toBeInstanceOf(PkiError);
    expect(errorFromClose(CLOSE_REFUSED, 'E_TRANSPORT_IDLE')).toBeInstanceOf(TransportError);
    expect(errorFromClose(CLOSE_REFUSED, 'E_CERT_REVOKED')?.code).toBe('E_CERT_REVOKED');
  });

  it('every area comes back in its class (core\'s catalog, not a prefix table): dp, secagg and policy scope codes too', () => {
    expect(errorFromClose(CLOSE_REFUSED, 'E_DP_BUDGET_EXHAUSTED')).toBeInstanceOf(DpError);
    expect(errorFromClose(CLOSE_REFUSED, 'E_POLICY_SECAGG_REQUIRED')).toBeInstanceOf(PolicyError);
    expect(errorFromClose(CLOSE_REFUSED, 'E_SECAGG_MALFORMED')?.code).toBe('E_SECAGG_MALFORMED');
    expect(errorFromClose(CLOSE_REFUSED, 'E_SECAGG_MALFORMED')).toBeInstanceOf(SecAggError);
  });

  it('an unknown code or close code becomes E_TRANSPORT_REFUSED (never trusted as a code)', () => {
    expect(errorFromClose(CLOSE_REFUSED, 'E_MADE_UP')?.code).toBe('E_TRANSPORT_REFUSED');
    expect(errorFromClose(4999, 'E_AUTH_REPLAY')?.code).toBe('E_TRANSPORT_REFUSED');
  });
});

// A guard for these tests: HMAC-SHA256 with a shared key over a counter, the canonical header and the payload
// digest (what @flare/auth's session does, in miniature).
class TestGuard implements MessageGuard {
  #out = 0;
  #in = 0;
  constructor(private readonly key: string) {}
  #mac(seq: number, header: Header, length: number, sha: Uint8Array): string {
    return createHmac('sha256', this.key).update(`${seq}\n${length}\n${Buffer.from(sha).toString('hex')}\n${canonicalJson(header)}`).digest('base64url');
  }
  seal(header: Header, length: number, sha: Uint8Array): Header {
    const seq = this.#out++;
    return { seq, mac: this.#mac(seq, header, length, sha) };
  }
  open(header: Header, length: number, sha: Uint8Array, trailer: Header | undefined): boolean {
    const expected = Buffer.from(this.#mac(this.#in, header, length, sha));
    const got = Buffer.from(String(trailer?.['mac'] ?? ''));
    if (trailer?.['seq'] !== this.#in || got.length !== expected.length || !timingSafeEqual(got, expected)) throw new AuthError('E_AUTH_MAC', 'not sealed by the peer');
    this.#in++;
    return true;
  }
}

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A relay on the path that can write its own bytes to the client (what a man in the middle of clear traffic can do). */
async function relay(backendPort: number): Promise<{ port: number; toClient(bytes: Uint8Array): void }> {
  let client: Socket | undefined;
  const sockets = new Set<Socket>();
  const server = createNetServer((c) => {
    client = c;
    const backend = netConnect({ host: '127.0.0.1', port: backendPort });
    sockets.add(c).add(backend);
    c.pipe(backend).pipe(c);
    backend.on('error', () => c.destroy());
    c.on('error', () => backend.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return { port: (server.address() as { port: number }).port, toClient: (bytes) => client!.write(bytes) };
}

/** An unmasked server-to-client WebSocket frame (RFC 6455 5.2) of up to 64 KiB. */
function serverFrame(opcode: number, payload: Uint8Array): Buffer {
  const head = payload.length < 126 ? Buffer.from([0x80 | opcode, payload.length]) : Buffer.from([0x80 | opcode, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, payload]);
}
const closeFrame = (code: number, reason: string): Buffer => serverFrame(0x8, Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]));

/** A guarded pair through a relay: the server side and the client side, both with a TestGuard. */
async function guardedPair(): Promise<{ server: Connection; client: Connection; path: Awaited<ReturnType<typeof relay>> }> {
  const endpoint = await listen({ security: 'clear', port: 0, authenticate: async (c) => void c.setGuard(new TestGuard('k')) });
  cleanup.push(() => endpoint.close());
  const accepted = once(endpoint as unknown as NodeJS.EventEmitter, 'connection') as Promise<[Connection]>;
  const path = await relay(endpoint.port);
  const client = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: path.port }], authenticate: async (c) => void c.setGuard(new TestGuard('k')) });
  cleanup.push(() => client.close());
  const [server] = await within(accepted);
  // One message each way, so both guards are in use.
  const got = within(server.receive());
  await client.send({ hello: 1 });
  await got;
  return { server, client, path };
}

describe('authenticated refusals (#14.9: close frames are not authenticated)', () => {
  it('a refusal inside a guarded connection arrives in a sealed goodbye: authenticated', async () => {
    const { server, client } = await guardedPair();
    void server.close(new AuthError('E_AUTH_SESSION_REVOKED', 'revoked'));
    const info = await within(client.closed);
    expect([info.by, info.error?.code, info.authenticated]).toEqual(['remote', 'E_AUTH_SESSION_REVOKED', true]);
    expect(refusalOf(info.error)).toEqual({ code: 'E_AUTH_SESSION_REVOKED', authenticated: true });
  });

  it('a close frame injected on the path is the peer\'s word only in form: not authenticated', async () => {
    const { client, path } = await guardedPair();
    path.toClient(closeFrame(CLOSE_REFUSED, 'E_AUTH_SESSION_REVOKED'));
    const info = await within(client.closed);
    expect([info.by, info.error?.code, info.authenticated]).toEqual(['remote', 'E_AUTH_SESSION_REVOKED', false]);
    expect(refusalOf(info.error)).toEqual({ code: 'E_AUTH_SESSION_REVOKED', authenticated: false });
  });

  it('a goodbye the session did not seal is refused with the guard\'s code (E_AUTH_MAC)', async () => {
    const { client, path } = await guardedPair();
    const forged = encodeFrame({ t: 'x', c: 'E_AUTH_SESSION_REVOKED', a: { seq: 0, mac: 'forged' } as { [k: string]: JsonValue } });
    path.toClient(serverFrame(0x2, forged));
    const info = await within(client.closed);
    expect([info.by, info.error?.code]).toEqual(['local', 'E_AUTH_MAC']);
  });

  it('applications cannot send a header that poses as a goodbye (TypeError)', async () => {
    const { client } = await guardedPair();
    await expect(client.send({ $close: 'E_AUTH_SESSION_REVOKED' })).rejects.toBeInstanceOf(TypeError);
  });
});
