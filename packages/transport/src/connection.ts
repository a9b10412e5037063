import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { CodecError, decodeFrame, encodeFrame, FlareError, FRAME_PREFIX_BYTES, TransportError, type JsonValue } from '@flare/core';
import type { ReceiveBudget } from './budget.js';
import { CLOSE_NORMAL, CLOSE_REFUSED, errorFromClose, markRefusal, type CloseInfo } from './close.js';
import type { FrameError } from './frames.js';
import type { ResolvedLimits } from './limits.js';
import { heartbeat } from './liveness.js';
import { HEADROOM, WebSocketWire, type Masking, type WireOwner } from './websocket.js';
import { CHUNK_HEADER, CHUNK_PREFIX, chunkFrame, FRAME_HEADER, FRAME_OVERHEAD, GOODBYE_KEY, isChunkFrame, messageHeader, returnChunkBuffer, takeChunkBuffer, type FrameHeader } from './wire.js';

/** A JSON object header, as sent and as received (received headers are null-prototype objects). */
export type Header = { readonly [key: string]: JsonValue };

/**
 * What `send` accepts: bytes, or a list of byte ranges sent back to back without concatenating them (the
 * shape of `encodeModelParts` from @flare/core, so a model streams straight from its tensors' buffers).
 */
export type Payload = Uint8Array | { readonly byteLength: number; readonly parts: readonly Uint8Array[] };

/** A message as received: its header and its payload (one buffer owned by the receiver). */
export interface Message {
  readonly header: Header;
  /**
   * The payload: a plain `Uint8Array`, never a Node `Buffer` (whose `slice()` returns a view instead of a copy,
   * so code written for Uint8Array, such as @flare/core's decodeModel, would alias memory it meant to copy).
   * A small message is its own allocation; a streamed one is the buffer `receiveBuffer` supplied (or a fresh
   * one). Nothing below writes to it after delivery.
   */
  readonly payload: Uint8Array;
  /**
   * The trailer the sender's guard attached, when this connection has no guard of its own (a guarded
   * connection verifies the trailer and strips it).
   */
  readonly trailer?: Header;
}

/** An incremental digest of one payload, as a {@link MessageGuard} wants it. */
export interface PayloadDigest {
  /** Adds `bytes`, which must not change until the next `update` or `digest` call (they may be read then). */
  update(bytes: Uint8Array): void;
  /** The digest of everything updated; called once. */
  digest(): Uint8Array;
}

/**
 * Authenticates messages on a connection; @flare/auth's session implements it. `seal` runs on the sender when
 * a message's payload has been digested and returns a trailer to send with it; `open` runs on the receiver
 * before the message is delivered and throws (a FlareError) to refuse it, which closes the connection. `open`
 * returns false for a control message the guard consumed itself (e.g. a session renewal): it is not delivered.
 *
 * The payload digest is SHA-256 unless the guard supplies its own with `payloadDigest` (auth's is keyed and
 * several times faster for large payloads), created when a message of `length` bytes starts, in the order
 * messages leave (`sending`) or arrive.
 */
export interface MessageGuard {
  payloadDigest?(length: number, sending: boolean): PayloadDigest;
  seal(header: Header, payloadLength: number, payloadDigest: Uint8Array): Header;
  open(header: Header, payloadLength: number, payloadDigest: Uint8Array, trailer: Header | undefined): boolean;
}

/**
 * Supplies the buffer a streamed message is received into, when it starts (its length already checked
 * against `maxMessageBytes` and the memory budget): exactly `length` bytes, which the payload then is, or
 * undefined for a fresh allocation. Hand out memory you reuse (the same model size every round): filling
 * fresh memory costs page faults, several times the copy itself on this VM (README "Performance"). Supply
 * each buffer to one message at a time, and only once nothing reads the previous payload held in it.
 */
export type ReceiveBuffer = (length: number, header: Header) => Uint8Array | undefined;

/** The TLS layer of a connection, when this hop is TLS. */
export interface TlsInfo {
  /** The negotiated protocol, e.g. `TLSv1.3`. */
  readonly protocol: string;
  /**
   * The peer's certificate (PEM), when it presented one (mtls on the server; always on the client). A server
   * reads it when the connection opens; a client reads it on first access, which must happen while the
   * connection is open.
   */
  readonly peerCertificatePem: string | undefined;
  /** RFC 5705 / RFC 8446 section 7.5 exporter over this TLS connection, for channel binding. */
  exportKeyingMaterial(length: number, label: string): Uint8Array;
}

/** Events of a {@link Connection}. */
export interface ConnectionEvents {
  /** A complete message (after the guard, if any, accepted it). */
  message: [Message];
  /** The connection ended; emitted once. */
  close: [CloseInfo];
}

/**
 * One WebSocket connection, on either side. Messages are delivered in order; sends are serialised, so a large
 * message streams in chunks without interleaving with the next one.
 *
 * Until the endpoint's `authenticate` hook has accepted the connection it is unauthenticated: the server
 * bounds what the peer may send (`preLoginMaxBytes`) and how long it may take (`loginTimeoutMs`), and the
 * handshake reads messages with {@link Connection.receive}. After that, listen for `message` events (messages
 * that arrived before the first listener are queued and delivered to it).
 */
export interface Connection<A = unknown> {
  /** Random id for logs (not an identity). */
  readonly id: string;
  readonly side: 'server' | 'client';
  readonly security: 'clear' | 'tls' | 'mtls';
  readonly remote: { readonly address: string; readonly port: number };
  readonly tls: TlsInfo | undefined;
  /** True once the endpoint's authenticate hook accepted the connection. */
  readonly authenticated: boolean;
  /** What the authenticate hook returned (e.g. an auth session). Throws TypeError before authentication. */
  readonly auth: A;
  /** Resolves when the connection has closed, with how. */
  readonly closed: Promise<CloseInfo>;
  /**
   * Sends a message and resolves once its last byte has been handed to the socket. Large payloads go out in
   * chunks, at most `maxChunksInFlight` ahead of the socket (backpressure), each chunk copied once into a
   * pooled frame buffer.
   *
   * @throws TransportError E_TRANSPORT_CLOSED when the connection closes first, E_TRANSPORT_MESSAGE_TOO_LARGE
   *   above maxMessageBytes; a FlareError from the guard (e.g. an expired session); TypeError for a header
   *   that uses the reserved key `$close`.
   */
  send(header: Header, payload?: Payload): Promise<void>;
  /** The next message not yet delivered to a listener (for handshakes). Rejects when the connection closes. */
  receive(): Promise<Message>;
  /** Installs the guard that seals and opens every later message (done by the auth handshake). */
  setGuard(guard: MessageGuard): void;
  /**
   * Called by the server's login once the peer proved who it is (a verified signature), before the login
   * completes: the connection then no longer counts as anonymous (a flood of anonymous connections cannot
   * displace it) and logins in progress are bounded per participant (`maxPendingLoginsPerIdentity`). No effect
   * on a client or after the login.
   */
  identified(name: string): void;
  /**
   * Closes the connection: normally, or as a refusal carrying `error`'s code to the peer. With a guard
   * installed, a refusal is first sent as a goodbye sealed by the guard, so the peer knows it is authentic
   * (see {@link CloseInfo.authenticated}).
   */
  close(error?: FlareError): Promise<CloseInfo>;
  on<E extends keyof ConnectionEvents>(event: E, listener: (...args: ConnectionEvents[E]) => void): this;
  once<E extends keyof ConnectionEvents>(event: E, listener: (...args: ConnectionEvents[E]) => void): this;
  off<E extends keyof ConnectionEvents>(event: E, listener: (...args: ConnectionEvents[E]) => void): this;
}

const EMPTY = new Uint8Array(0);
/** Alignment of a frame's payload (the widest tensor element, float64 / int64). */
const PAYLOAD_ALIGN = 8;
/** Offset of the little-endian uint32 header length in a core frame (after magic and version). */
const HEADER_LENGTH_AT = 5;
const sha256Digest = (): PayloadDigest => {
  const h = createHash('sha256');
  return { update: (b) => void h.update(b), digest: () => h.digest() };
};
const digestOf = (guard: MessageGuard, length: number, sending: boolean, bytes: Uint8Array): Uint8Array => {
  const d = guard.payloadDigest?.(length, sending) ?? sha256Digest();
  d.update(bytes);
  return d.digest();
};

interface Incoming {
  readonly header: Header;
  readonly length: number;
  readonly buffer: Uint8Array;
  offset: number;
  /** Start of the chunk being received (digested whole once it is complete). */
  chunkStart: number;
  readonly digest: PayloadDigest | undefined;
  /** Bytes of the budget this message holds. */
  readonly reserved: number;
  /** For the minimum rate: when the current window started and what arrived in it. */
  windowStart: number;
  windowBytes: number;
}

/** What an endpoint hands a connection besides its socket. */
export interface ConnectionSetup {
  readonly side: 'server' | 'client';
  readonly security: 'clear' | 'tls' | 'mtls';
  readonly limits: ResolvedLimits;
  readonly masking: Masking;
  /** Bytes the peer sent after the upgrade response, already read. */
  readonly head?: Uint8Array;
  /** The TLS peer is the pinned server (client side): a refusal before a session exists is authentic too. */
  readonly peerVerified?: boolean;
  readonly receiveBuffer?: ReceiveBuffer | undefined;
  /** Memory for messages in progress, shared by the endpoint's connections. */
  readonly budget?: ReceiveBudget | undefined;
}

/** @internal The one implementation of {@link Connection}, used by both endpoints. */
export class WsConnection<A = unknown> extends EventEmitter implements Connection<A> {
  readonly id = randomBytes(8).toString('hex');
  readonly side: 'server' | 'client';
  readonly security: 'clear' | 'tls' | 'mtls';
  readonly tls: TlsInfo | undefined;
  readonly remote: { readonly address: string; readonly port: number };
  readonly closed: Promise<CloseInfo>;
  /** Set by the server endpoint: the login proved who the peer is. */
  onIdentified: ((name: string) => void) | undefined;
  readonly #wire: WebSocketWire;
  readonly #limits: ResolvedLimits;
  readonly #setup: ConnectionSetup;
  #auth: { value: A } | undefined;
  #guard: MessageGuard | undefined;
  #queue: Message[] = [];
  #waiters: Array<{ resolve: (m: Message) => void; reject: (e: Error) => void }> = [];
  #incoming: Incoming | undefined;
  /** A streamed message waiting for budget: reading is paused until it gets it. */
  #waitingForBudget: (() => void) | undefined;
  #sendChain: Promise<void> = Promise.resolve();
  #closeInfo: CloseInfo | undefined;
  #localClose: FlareError | null | undefined;
  #resolveClosed!: (info: CloseInfo) => void;
  #lastSeen = Date.now();
  #timers: NodeJS.Timeout[] = [];
  /** The minimum-rate check and the deadline of the message in progress. */
  #rateTimers: NodeJS.Timeout[] = [];
  #preLoginBytes = 0;
  /** The refusal code of the peer's goodbye, once the guard verified it. */
  #peerGoodbye: string | undefined;
  readonly #onData = (chunk: Buffer): void => {
    this.#preLoginBytes += chunk.length;
    if (this.#preLoginBytes > this.#limits.preLoginMaxBytes) {
      this.abort(new TransportError('E_TRANSPORT_PRELOGIN_LIMIT', `an unauthenticated peer sent more than ${this.#limits.preLoginMaxBytes} bytes`));
    }
  };

  constructor(
    private readonly socket: Socket,
    setup: ConnectionSetup,
  ) {
    super();
    this.side = setup.side;
    this.security = setup.security;
    this.#limits = setup.limits;
    this.#setup = setup;
    this.remote = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    this.tls = socket instanceof TLSSocket ? tlsInfo(socket, setup.side === 'server') : undefined;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    // Pre-login bytes are counted on the socket, before any framing: a peer cannot make us buffer a large frame first.
    if (setup.side === 'server') {
      socket.on('data', this.#onData);
      if (setup.head !== undefined) this.#onData(Buffer.from(setup.head));
    }
    this.#wire = new WebSocketWire(socket, setup.masking, this.#owner(), setup.head ?? EMPTY);
    this.on('newListener', (event) => {
      if (event === 'message') queueMicrotask(() => this.#flush());
    });
    let lastBeat = Date.now();
    const beats = setInterval(() => {
      const now = Date.now();
      // Reading paused by this side (waiting for memory) is no silence of the peer.
      if (this.#waitingForBudget !== undefined) this.#lastSeen = now;
      const beat = heartbeat({ now, lastSeen: this.#lastSeen, lastBeat }, this.#limits);
      lastBeat = now;
      if (beat === 'drop') {
        this.abort(new TransportError('E_TRANSPORT_IDLE', `nothing received from the peer for ${this.#limits.idleTimeoutMs} ms`));
      } else if (beat === 'ping' && this.#wire.isOpen) this.#wire.ping();
    }, this.#limits.heartbeatMs);
    beats.unref();
    this.#timers.push(beats);
  }

  get authenticated(): boolean {
    return this.#auth !== undefined;
  }

  get auth(): A {
    if (this.#auth === undefined) throw new TypeError('connection is not authenticated yet');
    return this.#auth.value;
  }

  /** @internal True until the connection starts closing. */
  get isOpen(): boolean {
    return this.#closeInfo === undefined && this.#localClose === undefined;
  }

  /** @internal The error that describes why the connection closed (E_TRANSPORT_CLOSED when it closed normally). */
  closeError(): FlareError {
    return this.#closedError();
  }

  /** @internal Marks the connection authenticated: lifts the pre-login limits. */
  promote(value: A): void {
    this.#auth = { value };
    this.socket.off('data', this.#onData);
  }

  /** @internal Arms the login deadline. */
  deadline(ms: number): void {
    const timer = setTimeout(() => {
      if (this.#auth === undefined) this.abort(new TransportError('E_TRANSPORT_LOGIN_TIMEOUT', `the peer did not log in within ${ms} ms`));
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }

  setGuard(guard: MessageGuard): void {
    this.#guard = guard;
  }

  identified(name: string): void {
    if (this.side === 'server' && this.#auth === undefined && this.isOpen) this.onIdentified?.(name);
  }

  send(header: Header, payload: Payload = EMPTY): Promise<void> {
    if (Object.hasOwn(header, GOODBYE_KEY)) return Promise.reject(new TypeError(`the header key "${GOODBYE_KEY}" is reserved by the transport`));
    const run = this.#sendChain.then(() => this.#send(header, payload));
    this.#sendChain = run.catch(() => undefined);
    return run;
  }

  receive(): Promise<Message> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#closeInfo !== undefined) return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  close(error?: FlareError): Promise<CloseInfo> {
    if (this.#closeInfo === undefined && this.#localClose === undefined) {
      this.#localClose = error ?? null;
      if (error !== undefined) this.#goodbye(error);
      this.#wire.close(error === undefined ? CLOSE_NORMAL : CLOSE_REFUSED, error?.code ?? '');
      this.#release();
      // A peer that never answers the close frame is cut after 2 s.
      const timer = setTimeout(() => this.#wire.terminate(), 2000);
      timer.unref();
      this.#timers.push(timer);
    }
    return this.closed;
  }

  /** @internal Refuses the peer: sends the code in a close frame, stops reading and ends the socket. */
  abort(error: FlareError): void {
    if (this.#closeInfo !== undefined || this.#localClose !== undefined) return;
    void this.close(error);
    // Stop reading what the peer sends; flush our close frame, then drop the socket.
    this.#wire.stopReading();
    this.socket.once('finish', () => this.socket.destroy());
    this.socket.end();
  }

  /**
   * Sends the refusal's code sealed by the guard, ahead of anything still queued: the close frame that follows
   * can be forged by anyone on the path, this cannot. Sealed and written at once, so the guard's sequence
   * numbers follow the order of the wire. Without a guard, or when it refuses to seal (an expired session),
   * the close goes out unauthenticated.
   */
  #goodbye(error: FlareError): void {
    const guard = this.#guard;
    if (guard === undefined || !this.#wire.isOpen) return;
    try {
      const trailer = guard.seal({ [GOODBYE_KEY]: error.code }, 0, digestOf(guard, 0, true, EMPTY));
      void this.#wire.send(withHeadroom(encodeFrame({ t: 'x', c: error.code, a: trailer })), HEADROOM).catch(() => undefined);
    } catch {
      // The close frame still carries the code, unauthenticated.
    }
  }

  async #send(header: Header, payload: Payload): Promise<void> {
    if (this.#closeInfo !== undefined || this.#localClose !== undefined) throw this.#closedError();
    const parts = payload instanceof Uint8Array ? [payload] : payload.parts;
    const length = payload.byteLength;
    if (length > this.#limits.maxMessageBytes) {
      throw new TransportError('E_TRANSPORT_MESSAGE_TOO_LARGE', `a message of ${length} bytes exceeds this endpoint's ${this.#limits.maxMessageBytes}-byte limit`);
    }
    const guard = this.#guard;
    if (length <= this.#limits.chunkBytes) {
      const bytes = parts.length === 1 ? parts[0]! : concat(parts, length);
      const trailer = guard?.seal(header, length, digestOf(guard, length, true, bytes));
      await this.#write(frameWithHeadroom(messageHeader(header, length, trailer), bytes));
      return;
    }
    // The digest starts with the message, in send order (sends are serialised).
    const digest = guard === undefined ? undefined : (guard.payloadDigest?.(length, true) ?? sha256Digest());
    await this.#write(frameWithHeadroom(messageHeader(header, length)));
    const inFlight: Array<Promise<void>> = [];
    const cursor = { part: 0, offset: 0 };
    const chunkBytes = this.#limits.chunkBytes;
    try {
      for (let sent = 0; sent < length; ) {
        const size = Math.min(chunkBytes, length - sent);
        // [room for the WebSocket header][chunk prefix][payload]: one buffer, one write (TLS encrypts it
        // without a copy; several buffers in one write are first joined into a fresh one by Node's TLS).
        const buffer = takeChunkBuffer(chunkBytes, HEADROOM);
        const frame = chunkFrame(buffer, HEADROOM, parts, cursor, size);
        digest?.update(frame.subarray(frame.length - size));
        // The buffer goes back to the pool only once the socket has taken it.
        inFlight.push(this.#write(frame).then(() => returnChunkBuffer(buffer)));
        sent += size;
        // Backpressure: never more than maxChunksInFlight chunks between us and the kernel.
        if (inFlight.length >= this.#limits.maxChunksInFlight) await inFlight.shift();
      }
    } finally {
      await Promise.allSettled(inFlight);
    }
    await Promise.all(inFlight);
    const trailer = guard?.seal(header, length, digest!.digest());
    await this.#write(frameWithHeadroom(trailer === undefined ? { t: 'e' } : { t: 'e', a: trailer }));
  }

  /** Writes one frame that starts with {@link HEADROOM} spare bytes. */
  #write(frame: Uint8Array): Promise<void> {
    // A write that fails because the connection is closing reports why it closed (the peer's code), once known.
    const failed = async (): Promise<never> => {
      await this.closed;
      throw this.#closedError();
    };
    if (!this.#wire.isOpen) return failed();
    return this.#wire.send(frame, HEADROOM).catch(failed);
  }

  /** The wire's view of this connection: where frames go, and what to do when it ends. */
  #owner(): WireOwner {
    // Chunk frames are recognised by their first bytes and stream into the message they belong to; anything
    // else is collected whole and goes through the strict decoder and schema.
    return {
      peek: CHUNK_PREFIX.length,
      maxFrame: () => (this.side === 'server' && this.#auth === undefined ? this.#limits.preLoginMaxBytes : this.#limits.chunkBytes + FRAME_OVERHEAD),
      start: (head, length) => this.#guarded(() => this.#chunkInto(head, length)),
      progress: (bytes) => this.#guarded(() => this.#chunkProgress(bytes.length)),
      end: () => this.#guarded(() => this.#chunkEnd()),
      frame: (payload) => this.#guarded(() => this.#onMessage(payload)),
      alive: () => (this.#lastSeen = Date.now()),
      closed: (code, reason) => this.#onClose(code, reason),
      failed: (error) => this.#failed(error),
    };
  }

  /** Runs a frame handler: a refusal it throws closes the connection with its code. */
  #guarded<T>(step: () => T): T | undefined {
    if (!this.isOpen) return undefined;
    try {
      return step();
    } catch (error) {
      this.abort(error instanceof FlareError ? error : new TransportError('E_TRANSPORT_PROTOCOL', 'the peer sent a frame that could not be processed', { cause: error }));
      return undefined;
    }
  }

  #failed(error: FrameError): void {
    this.#lastSeen = Date.now();
    const preLogin = this.side === 'server' && this.#auth === undefined;
    if (error.tooLarge) {
      this.abort(
        preLogin
          ? new TransportError('E_TRANSPORT_PRELOGIN_LIMIT', `an unauthenticated peer sent a frame larger than ${this.#limits.preLoginMaxBytes} bytes`)
          : new CodecError('E_CODEC_TOO_LARGE', error.message),
      );
    } else this.abort(new TransportError('E_TRANSPORT_PROTOCOL', error.message));
  }

  /** Where the rest of a frame that starts with `head` goes: into the message in progress, if it is its next chunk. */
  #chunkInto(head: Uint8Array, length: number): Uint8Array | undefined {
    this.#lastSeen = Date.now();
    const incoming = this.#incoming;
    if (incoming === undefined || this.#waitingForBudget !== undefined || !isChunkFrame(head)) return undefined;
    const size = length - CHUNK_PREFIX.length;
    // Sizes that do not fit go the slow way, which refuses them with their code.
    if (size > this.#limits.chunkBytes || incoming.offset + size > incoming.length) return undefined;
    incoming.chunkStart = incoming.offset;
    return incoming.buffer.subarray(incoming.offset, incoming.offset + size);
  }

  #chunkProgress(bytes: number): void {
    const incoming = this.#incoming!;
    incoming.offset += bytes;
    incoming.windowBytes += bytes;
  }

  #chunkEnd(): void {
    const incoming = this.#incoming!;
    incoming.digest?.update(incoming.buffer.subarray(incoming.chunkStart, incoming.offset));
  }

  #onMessage(data: Uint8Array): void {
    this.#lastSeen = Date.now();
    const preLogin = this.side === 'server' && this.#auth === undefined;
    const maxBytes = preLogin ? this.#limits.preLoginMaxBytes : this.#limits.chunkBytes;
    if (isChunkFrame(data)) {
      const payload = data.subarray(CHUNK_PREFIX.length);
      if (payload.length > maxBytes) throw new CodecError('E_CODEC_TOO_LARGE', `frame payload of ${payload.length} bytes exceeds the ${maxBytes}-byte limit`);
      this.#onFrame(CHUNK_HEADER, payload, preLogin);
      return;
    }
    const { header, payload } = decodeFrame(data, FRAME_HEADER, { maxBytes });
    this.#onFrame(header, payload, preLogin);
  }

  #onFrame(frame: FrameHeader, payload: Uint8Array, preLogin: boolean): void {
    const incoming = this.#incoming;
    if (frame.t === 'x') {
      if (payload.length !== 0) throw new TransportError('E_TRANSPORT_PROTOCOL', 'a goodbye carries a payload');
      // Without a guard there is nothing to verify it with: the close frame that follows counts as it is.
      const guard = this.#guard;
      if (guard === undefined) return;
      // Throws (E_AUTH_MAC, E_AUTH_REPLAY...) for a goodbye the session did not seal: that closes the connection.
      guard.open({ [GOODBYE_KEY]: frame.c }, 0, digestOf(guard, 0, false, EMPTY), frame.a);
      this.#peerGoodbye = frame.c;
      return;
    }
    if (frame.t === 'm') {
      if (incoming !== undefined || this.#waitingForBudget !== undefined) throw new TransportError('E_TRANSPORT_PROTOCOL', 'a message started before the previous one ended');
      if (frame.n > this.#limits.maxMessageBytes) {
        throw new TransportError('E_TRANSPORT_MESSAGE_TOO_LARGE', `the peer announced a ${frame.n}-byte message; the limit is ${this.#limits.maxMessageBytes}`);
      }
      if (frame.n <= this.#limits.chunkBytes || payload.length > 0) {
        if (payload.length !== frame.n) throw new TransportError('E_TRANSPORT_PROTOCOL', `a message declares ${frame.n} bytes but carries ${payload.length}`);
        this.#deliver(frame.h, payload, frame.a, this.#guard === undefined ? undefined : digestOf(this.#guard, payload.length, false, payload));
        return;
      }
      if (preLogin) throw new TransportError('E_TRANSPORT_PRELOGIN_LIMIT', 'an unauthenticated peer tried to stream a large message');
      this.#begin(frame.h, frame.n);
      return;
    }
    if (incoming === undefined) throw new TransportError('E_TRANSPORT_PROTOCOL', `a '${frame.t}' frame arrived outside a message`);
    if (frame.t === 'c') {
      // A chunk that was not streamed into place (the fast path declines only what must be checked here).
      if (payload.length > this.#limits.chunkBytes) throw new CodecError('E_CODEC_TOO_LARGE', `a chunk of ${payload.length} bytes exceeds the ${this.#limits.chunkBytes}-byte limit`);
      if (incoming.offset + payload.length > incoming.length) throw new TransportError('E_TRANSPORT_PROTOCOL', 'chunks exceed the declared message length');
      incoming.buffer.set(payload, incoming.offset);
      incoming.chunkStart = incoming.offset;
      this.#chunkProgress(payload.length);
      this.#chunkEnd();
      return;
    }
    if (payload.length !== 0 || incoming.offset !== incoming.length) {
      throw new TransportError('E_TRANSPORT_PROTOCOL', `a message ended after ${incoming.offset} of ${incoming.length} bytes`);
    }
    this.#incoming = undefined;
    this.#stopRateTimer();
    this.#setup.budget?.give(incoming.reserved);
    this.#deliver(incoming.header, incoming.buffer, frame.a, incoming.digest?.digest());
  }

  /**
   * A streamed message of `length` bytes starts: reserve its memory from the endpoint's budget (pausing reading
   * until there is enough), take its buffer, and watch its rate.
   */
  #begin(header: Header, length: number): void {
    const budget = this.#setup.budget;
    if (budget !== undefined && length > budget.total) {
      throw new TransportError('E_TRANSPORT_MESSAGE_TOO_LARGE', `the peer announced a ${length}-byte message; this endpoint receives at most ${budget.total} bytes at once`);
    }
    const start = (): void => {
      this.#waitingForBudget = undefined;
      const supplied = this.#setup.receiveBuffer?.(length, header);
      if (supplied !== undefined && supplied.length !== length) {
        budget?.give(length);
        throw new RangeError(`receiveBuffer returned ${supplied.length} bytes for a ${length}-byte message`);
      }
      const now = Date.now();
      this.#incoming = {
        header,
        length,
        // The one allocation of the message: declared length, already bounded by maxMessageBytes.
        buffer: supplied ?? new Uint8Array(length),
        offset: 0,
        chunkStart: 0,
        digest: this.#guard === undefined ? undefined : (this.#guard.payloadDigest?.(length, false) ?? sha256Digest()),
        reserved: budget === undefined ? 0 : length,
        windowStart: now,
        windowBytes: 0,
      };
      this.#startRateTimer();
    };
    if (budget === undefined || budget.take(length)) return start();
    // Wait for memory: stop reading (the peer's TCP window fills and its send waits); nothing is buffered here.
    this.#wire.pause();
    this.#waitingForBudget = budget.wait(length, () => {
      if (!this.isOpen) return budget.give(length);
      this.#guarded(start);
      this.#wire.resume();
    });
  }

  /**
   * A message in progress must keep a minimum rate over every window and finish by its deadline: a peer that
   * announces a large message, streams part of it and stalls (answering pings) would otherwise hold its memory
   * for ever.
   */
  #startRateTimer(): void {
    const { stallWindowMs, minBytesPerSecond, messageTimeoutMs } = this.#limits;
    const rate = setInterval(() => {
      const incoming = this.#incoming;
      if (incoming === undefined) return this.#stopRateTimer();
      const now = Date.now();
      const elapsed = now - incoming.windowStart;
      // A check that fired far too late means this side's event loop was blocked, not the peer slow: judge
      // the next window instead.
      const needed = elapsed > 2 * stallWindowMs ? 0 : (minBytesPerSecond * elapsed) / 1000;
      if (incoming.windowBytes < needed) {
        return this.abort(
          new TransportError('E_TRANSPORT_STALLED', `a message in progress received ${incoming.windowBytes} bytes in ${now - incoming.windowStart} ms, below the minimum of ${minBytesPerSecond} bytes/s`),
        );
      }
      incoming.windowStart = now;
      incoming.windowBytes = 0;
    }, stallWindowMs);
    const deadline = setTimeout(() => {
      const incoming = this.#incoming;
      if (incoming === undefined) return;
      this.abort(new TransportError('E_TRANSPORT_STALLED', `a ${incoming.length}-byte message did not complete within ${messageTimeoutMs} ms (${incoming.offset} bytes arrived)`));
    }, Math.min(messageTimeoutMs, 2 ** 31 - 1));
    rate.unref();
    deadline.unref();
    this.#rateTimers = [rate, deadline];
  }

  #stopRateTimer(): void {
    for (const t of this.#rateTimers) clearTimeout(t);
    this.#rateTimers = [];
  }

  /** Gives back what a message in progress holds (the connection is closing). */
  #release(): void {
    this.#stopRateTimer();
    const incoming = this.#incoming;
    this.#incoming = undefined;
    if (incoming !== undefined) this.#setup.budget?.give(incoming.reserved);
    this.#waitingForBudget?.();
    this.#waitingForBudget = undefined;
  }

  #deliver(header: Header, payload: Uint8Array, trailer: Header | undefined, digest: Uint8Array | undefined): void {
    let message: Message;
    if (this.#guard !== undefined) {
      if (!this.#guard.open(header, payload.length, digest!, trailer)) return;
      message = { header, payload };
    } else {
      message = trailer === undefined ? { header, payload } : { header, payload, trailer };
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve(message);
    else if (this.#queue.length === 0 && this.listenerCount('message') > 0) this.emit('message', message);
    else this.#queue.push(message);
  }

  #flush(): void {
    while (this.#queue.length > 0 && this.listenerCount('message') > 0) this.emit('message', this.#queue.shift()!);
  }

  #closedError(cause?: unknown): FlareError {
    const info = this.#closeInfo;
    if (info?.error !== undefined) return info.error;
    if (this.#localClose) return this.#localClose;
    return new TransportError('E_TRANSPORT_CLOSED', 'the connection is closed', cause === undefined ? undefined : { cause });
  }

  #onClose(code: number, reason: string): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#release();
    this.socket.off('data', this.#onData);
    const local = this.#localClose;
    let info: CloseInfo;
    if (local !== undefined) {
      info =
        local === null
          ? { code: CLOSE_NORMAL, reason: '', by: 'local', authenticated: false }
          : { code: CLOSE_REFUSED, reason: local.code, by: 'local', error: local, authenticated: false };
    } else if (this.#peerGoodbye !== undefined) {
      // The sealed goodbye decides, whatever the (unauthenticated) close frame says or whether it arrived.
      const goodbye = this.#peerGoodbye;
      info = { code: CLOSE_REFUSED, reason: goodbye, by: 'remote', error: markRefusal(errorFromClose(CLOSE_REFUSED, goodbye)!, true), authenticated: true };
    } else {
      const error = errorFromClose(code, reason);
      // A lost connection is no one's refusal; anything else is the peer's word, authentic only from a verified TLS peer.
      const refusal = error !== undefined && code !== 1005 && code !== 1006;
      const authenticated = refusal && this.#setup.peerVerified === true;
      if (refusal) markRefusal(error, authenticated);
      info = error === undefined ? { code, reason, by: 'remote', authenticated: false } : { code, reason, by: 'remote', error, authenticated };
    }
    this.#closeInfo = info;
    const err = this.#closedError();
    for (const w of this.#waiters.splice(0)) w.reject(err);
    this.#resolveClosed(info);
    this.emit('close', info);
  }
}

/** `bytes` with {@link HEADROOM} spare bytes in front, for the WebSocket header. */
function withHeadroom(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADROOM + bytes.length);
  out.set(bytes, HEADROOM);
  return out;
}

/**
 * A core frame (header, payload) encoded after {@link HEADROOM} spare bytes: the payload is copied once. A
 * payload starts at a multiple of {@link PAYLOAD_ALIGN} bytes into the frame (the JSON header is padded with
 * trailing spaces, which JSON allows): the receiver collects a frame into a buffer of its own, so the payload
 * is then aligned there too and a model's float32/float64 tensors decode as views instead of copies. Without
 * it the alignment depended on the header's length (the auth trailer's digits), and a misaligned 1 MB model
 * cost a fresh allocation and a copy on every receipt.
 */
function frameWithHeadroom(header: { readonly [key: string]: JsonValue }, payload: Uint8Array = EMPTY): Uint8Array {
  const prefix = encodeFrame(header);
  const pad = payload.length === 0 ? 0 : (PAYLOAD_ALIGN - (prefix.length % PAYLOAD_ALIGN)) % PAYLOAD_ALIGN;
  const out = new Uint8Array(HEADROOM + prefix.length + pad + payload.length);
  out.set(prefix, HEADROOM);
  if (pad > 0) {
    out.fill(0x20, HEADROOM + prefix.length, HEADROOM + prefix.length + pad);
    new DataView(out.buffer).setUint32(HEADROOM + HEADER_LENGTH_AT, prefix.length - FRAME_PREFIX_BYTES + pad, true);
  }
  out.set(payload, HEADROOM + prefix.length + pad);
  return out;
}

function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function tlsInfo(socket: TLSSocket, eager: boolean): TlsInfo {
  // The first look at the peer certificate makes OpenSSL decode it and its key (about 0.2 ms). A server reads
  // it at once (its login compares it with the login certificate, and it must not vanish with the socket); a
  // client reads it only if asked, while the socket is open (a client dialing a thousand connections saves it).
  let pem: { value: string | undefined } | undefined = eager ? { value: peerPem(socket) } : undefined;
  return {
    protocol: socket.getProtocol() ?? 'unknown',
    get peerCertificatePem(): string | undefined {
      pem ??= { value: peerPem(socket) };
      return pem.value;
    },
    exportKeyingMaterial: (length, label) => new Uint8Array(socket.exportKeyingMaterial(length, label, Buffer.alloc(0))),
  };
}

function peerPem(socket: TLSSocket): string | undefined {
  const raw = socket.getPeerCertificate(false);
  return raw !== null && typeof raw === 'object' && 'raw' in raw && Buffer.isBuffer(raw.raw)
    ? `-----BEGIN CERTIFICATE-----\n${raw.raw.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`
    : undefined;
}
