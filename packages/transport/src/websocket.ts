// The WebSocket connection (RFC 6455) over a socket the HTTP upgrade handed over: the opening handshake's checks,
// sending frames, the closing handshake, ping/pong, pause/resume. Framing of received bytes is frames.ts.
import { createHash, randomFillSync } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { FrameError, FrameParser, frameHeader, xorMask, type FrameSink } from './frames.js';

// RFC 6455 1.3: the GUID the server appends to the client's key.
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** RFC 6455 4.2.2: Sec-WebSocket-Accept for a client's Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/**
 * Checks a client's upgrade request (RFC 6455 4.2.1); returns its key, or why it is not a WebSocket upgrade
 * this server speaks.
 */
export function upgradeKey(method: string | undefined, headers: IncomingHttpHeaders): { key: string } | { error: string } {
  if (method !== 'GET') return { error: 'the upgrade is not a GET' };
  if (headers.upgrade?.toLowerCase() !== 'websocket') return { error: 'Upgrade is not websocket' };
  if (!/(^|,)\s*upgrade\s*(,|$)/i.test(headers.connection ?? '')) return { error: 'Connection does not name Upgrade' };
  if (headers['sec-websocket-version'] !== '13') return { error: 'Sec-WebSocket-Version is not 13' };
  const key = headers['sec-websocket-key'];
  if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(key)) return { error: 'Sec-WebSocket-Key is not 16 bytes of base64' };
  return { key };
}

/** Client masking (RFC 6455 5.3): random keys, or the zero key inside TLS (see client.ts). */
export type Masking = 'none' | 'random' | 'zero';

const ZERO_MASK = new Uint8Array(4);

/** Events of a {@link WebSocketWire}, delivered to its owner. */
export interface WireOwner extends Omit<FrameSink, 'ping' | 'pong' | 'close'> {
  /** A ping or pong arrived (the wire answers pings itself). */
  alive(): void;
  /** The connection ended: the peer's close code and reason, or 1006 when none arrived. */
  closed(code: number, reason: string): void;
  /** The peer broke the protocol. */
  failed(error: FrameError): void;
}

/**
 * One WebSocket connection. `send` writes one binary frame; the payload must already hold room for nothing:
 * the header goes in a separate small write unless the caller leaves `headroom` bytes before the payload in
 * the same buffer (then header and payload leave in one write, which TLS encrypts without a copy).
 */
export class WebSocketWire {
  #state: 'open' | 'closing' | 'closed' = 'open';
  /** A close frame was sent / received. */
  #sentClose = false;
  #gotClose: { code: number; reason: string } | undefined;
  #paused = false;
  #backlog: Uint8Array[] = [];
  readonly #parser: FrameParser;
  #masks: Uint8Array = new Uint8Array(0);
  #maskAt = 0;

  constructor(
    private readonly socket: Socket,
    private readonly masking: Masking,
    private readonly owner: WireOwner,
    head: Uint8Array,
  ) {
    const sink: FrameSink = {
      peek: owner.peek,
      maxFrame: () => owner.maxFrame(),
      start: (h, n) => owner.start(h, n),
      progress: (b) => owner.progress(b),
      end: () => owner.end(),
      frame: (p) => owner.frame(p),
      ping: (p) => {
        owner.alive();
        this.#control(0xa, p);
      },
      pong: () => owner.alive(),
      close: (code, reason) => this.#onCloseFrame(code, reason),
    };
    // A server reads masked client frames; a client reads unmasked server frames.
    this.#parser = new FrameParser(sink, masking === 'none', () => this.#paused);
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.#onData(d));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.#onSocketClose());
    if (head.length > 0) this.#onData(head);
  }

  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /**
   * Writes one binary frame whose payload is `frame.subarray(headroom)`; `headroom` bytes before it (at least
   * {@link HEADROOM}) receive the frame header, so header and payload go out in one write. Resolves when the
   * socket took the bytes; rejects when the connection is not open.
   */
  send(frame: Uint8Array, headroom: number): Promise<void> {
    if (this.#state !== 'open' || this.#sentClose) return Promise.reject(new Error('the WebSocket is not open'));
    const length = frame.length - headroom;
    const mask = this.#mask();
    const header = frameHeader(0x2, length, mask);
    if (header.length > headroom) throw new RangeError(`a frame header needs ${header.length} bytes of headroom, got ${headroom}`);
    const out = frame.subarray(headroom - header.length);
    out.set(header, 0);
    if (mask !== undefined && mask !== ZERO_MASK) xorMask(out.subarray(header.length), mask, 0);
    return new Promise((resolve, reject) => {
      this.socket.write(out, (error) => (error ? reject(error) : resolve()));
    });
  }

  ping(): void {
    this.#control(0x9, new Uint8Array(0));
  }

  /** Starts the closing handshake (RFC 6455 7.1.2) with `code` and `reason`; the socket ends once the peer answers. */
  close(code: number, reason: string): void {
    if (this.#state === 'closed' || this.#sentClose) return;
    const r = Buffer.from(reason, 'utf8').subarray(0, 123);
    const payload = new Uint8Array(2 + r.length);
    payload[0] = code >> 8;
    payload[1] = code & 0xff;
    payload.set(r, 2);
    this.#control(0x8, payload);
    this.#sentClose = true;
    this.#state = 'closing';
    // The peer already closed: the handshake is complete.
    if (this.#gotClose !== undefined) this.socket.end();
  }

  /** Stops reading the peer (refusal): nothing more is parsed; the socket ends after what was written. */
  stopReading(): void {
    this.#parser.stop();
    this.socket.pause();
  }

  /** Ends the socket now, without a closing handshake. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Stops parsing (and reading the socket) until {@link WebSocketWire.resume}; bytes already read wait here. */
  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    while (this.#backlog.length > 0 && !this.#paused) this.#parse(this.#backlog.shift()!);
    if (!this.#paused && this.#state !== 'closed') this.socket.resume();
  }

  #onData(d: Uint8Array): void {
    if (this.#paused) {
      this.#backlog.push(d);
      return;
    }
    this.#parse(d);
  }

  #parse(d: Uint8Array): void {
    try {
      const used = this.#parser.push(d);
      // Paused from inside a frame callback: keep the rest for resume().
      if (used < d.length) this.#backlog.unshift(d.subarray(used));
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      this.#parser.stop();
      this.owner.failed(error);
    }
  }

  /** 4 bytes of masking key for the next client frame (random keys drawn 4 KiB at a time). */
  #mask(): Uint8Array | undefined {
    if (this.masking === 'none') return undefined;
    if (this.masking === 'zero') return ZERO_MASK;
    if (this.#maskAt + 4 > this.#masks.length) {
      this.#masks = randomFillSync(new Uint8Array(4096));
      this.#maskAt = 0;
    }
    return this.#masks.subarray(this.#maskAt, (this.#maskAt += 4));
  }

  #control(opcode: number, payload: Uint8Array): void {
    if (this.#state === 'closed' || this.#sentClose) return;
    const mask = this.#mask();
    const header = frameHeader(opcode, payload.length, mask);
    const out = new Uint8Array(header.length + payload.length);
    out.set(header, 0);
    out.set(payload, header.length);
    if (mask !== undefined && mask !== ZERO_MASK) xorMask(out.subarray(header.length), mask, 0);
    this.socket.write(out);
  }

  #onCloseFrame(code: number, reason: string): void {
    this.#gotClose = { code, reason };
    this.#parser.stop();
    if (!this.#sentClose) {
      // RFC 6455 5.5.1: answer with a close frame echoing the code, then end the TCP connection.
      this.close(code === 1005 ? 1000 : code, '');
    }
    this.socket.end();
  }

  #onSocketClose(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    const got = this.#gotClose;
    this.owner.closed(got?.code ?? 1006, got?.reason ?? '');
  }
}

/** Bytes to leave before a payload for the largest frame header (10) and a client's masking key (4). */
export const HEADROOM = 14;

/** What a server answered instead of switching protocols. */
export interface UpgradeRefused {
  readonly status: number;
  /** Its X-Flare-Error header, if any. */
  readonly code: string | undefined;
}

/**
 * The client's opening handshake (RFC 6455 4.1) on `socket` (TCP, TLS or a proxy tunnel, connected or still
 * connecting) with Node's HTTP client: resolves with the bytes that followed the server's 101 answer, or
 * rejects with {@link UpgradeRefused} for any other answer, or the socket's error. A server that accepts but
 * answers the wrong key, or names an extension or protocol we did not ask for, is refused (RFC 6455 4.1).
 */
export function clientUpgrade(socket: Socket, host: string, path: string): Promise<Uint8Array> {
  const key = randomFillSync(Buffer.alloc(16)).toString('base64');
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      createConnection: () => socket,
      host,
      path,
      method: 'GET',
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': key },
    });
    req.once('upgrade', (res: IncomingMessage, _socket: Socket, head: Buffer) => {
      const ok =
        res.headers.upgrade?.toLowerCase() === 'websocket' &&
        res.headers['sec-websocket-accept'] === acceptKey(key) &&
        res.headers['sec-websocket-extensions'] === undefined &&
        res.headers['sec-websocket-protocol'] === undefined;
      if (!ok) {
        socket.destroy();
        reject({ status: 101, code: undefined } satisfies UpgradeRefused);
        return;
      }
      resolve(new Uint8Array(head.buffer, head.byteOffset, head.byteLength));
    });
    req.once('response', (res: IncomingMessage) => {
      const code = res.headers['x-flare-error'];
      res.resume();
      socket.destroy();
      reject({ status: res.statusCode ?? 0, code: typeof code === 'string' ? code : undefined } satisfies UpgradeRefused);
    });
    req.once('error', reject);
    req.end();
  });
}

/** The server's 101 answer to a checked upgrade request (RFC 6455 4.2.2), with no extension and no protocol. */
export function switchingProtocols(key: string): string {
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`;
}
