import * as crypto from 'node:crypto';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { CodecError, decodeFrame, encodeFrame, FlareError, TransportError, type JsonValue } from '@flare/core';
import type WebSocket from 'ws';
import { CLOSE_NORMAL, CLOSE_REFUSED, errorFromClose, markRefusal, type CloseInfo } from './close.js';
import type { ResolvedLimits } from './limits.js';
import { inlineSha256, workerHash, type WorkerHash } from './hash-worker.js';
import { CHUNK_HEADER, CHUNK_PREFIX, chunkFrame, FRAME_HEADER, GOODBYE_KEY, isChunkFrame, messageHeader, returnChunkBuffer, takeChunkBuffer, type FrameHeader } from './wire.js';

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
   * Small messages are views of the bytes read from the socket, large ones their own allocation; nothing
   * below writes to them after delivery.
   */
  readonly payload: Uint8Array;
  /**
   * The trailer the sender's guard attached, when this connection has no guard of its own (a guarded
   * connection verifies the trailer and strips it).
   */
  readonly trailer?: Header;
}

/**
 * Authenticates messages on a connection; @flare/auth's session implements it. `seal` runs on the sender when
 * a message's payload has been hashed and returns a trailer to send with it; `open` runs on the receiver
 * before the message is delivered and throws (a FlareError) to refuse it, which closes the connection. `open`
 * returns false for a control message the guard consumed itself (e.g. a session renewal): it is not delivered.
 */
export interface MessageGuard {
  seal(header: Header, payloadLength: number, payloadSha256: Uint8Array): Header;
  open(header: Header, payloadLength: number, payloadSha256: Uint8Array, trailer: Header | undefined): boolean;
}

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
   * chunks, at most `maxChunksInFlight` ahead of the socket (backpressure), each chunk copied once.
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
const EMPTY_SHA256 = createHash('sha256').digest();
// crypto.hash (Node >= 20.12) is a one-shot digest without a Hash object: ~35% cheaper for small messages.
const oneShot = (crypto as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer }).hash;
const sha256 = (bytes: Uint8Array): Uint8Array => (oneShot ? oneShot('sha256', bytes, 'buffer') : createHash('sha256').update(bytes).digest());

interface Incoming {
  readonly header: Header;
  readonly length: number;
  readonly buffer: Uint8Array;
  offset: number;
  /** The payload's SHA-256, on this thread ... */
  readonly hash: Hash | undefined;
  /** ... or on the hashing worker (large messages). */
  readonly worker: WorkerHash | undefined;
}

// Streamed messages this large are hashed on the worker thread (smaller ones are not worth the thread hop).
const WORKER_MIN_BYTES = 8 * 1024 * 1024;
// Chunks handed to the worker and not yet hashed, beyond which the socket is paused (backpressure: memory
// stays bounded by a few chunks however far the worker falls behind).
const HASH_BACKLOG_BYTES = 8 * 1024 * 1024;

/** @internal The one implementation of {@link Connection}, used by both endpoints. */
export class WsConnection<A = unknown> extends EventEmitter implements Connection<A> {
  readonly id = randomBytes(8).toString('hex');
  readonly tls: TlsInfo | undefined;
  readonly remote: { readonly address: string; readonly port: number };
  readonly closed: Promise<CloseInfo>;
  #auth: { value: A } | undefined;
  #guard: MessageGuard | undefined;
  #queue: Message[] = [];
  #waiters: Array<{ resolve: (m: Message) => void; reject: (e: Error) => void }> = [];
  #incoming: Incoming | undefined;
  /** Deliveries waiting for a worker digest; later messages queue behind them, in order. */
  #pending: Promise<void> | undefined;
  #hashBacklog = 0;
  #pausedForHash = false;
  #sendChain: Promise<void> = Promise.resolve();
  #closeInfo: CloseInfo | undefined;
  #localClose: FlareError | null | undefined;
  #resolveClosed!: (info: CloseInfo) => void;
  #lastSeen = Date.now();
  /** The refusal code of the peer's goodbye, once the guard verified it. */
  #peerGoodbye: string | undefined;
  #timers: NodeJS.Timeout[] = [];
  #preLoginBytes = 0;
  readonly #onData = (chunk: Buffer): void => {
    this.#preLoginBytes += chunk.length;
    if (this.#preLoginBytes > this.limits.preLoginMaxBytes) {
      this.abort(new TransportError('E_TRANSPORT_PRELOGIN_LIMIT', `an unauthenticated peer sent more than ${this.limits.preLoginMaxBytes} bytes`));
    }
  };

  /**
   * @param peerVerified the TLS peer is the pinned server (client side): a refusal that arrives before a
   *   session exists is then authentic too.
   */
  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Socket,
    readonly side: 'server' | 'client',
    readonly security: 'clear' | 'tls' | 'mtls',
    private readonly limits: ResolvedLimits,
    private readonly peerVerified = false,
  ) {
    super();
    this.remote = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    this.tls = socket instanceof TLSSocket ? tlsInfo(socket, side === 'server') : undefined;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    // Pre-login bytes are counted on the socket, below ws: a peer cannot make us buffer a large frame first.
    if (side === 'server') socket.on('data', this.#onData);
    ws.on('message', (data, isBinary) => this.#onMessage(data as Buffer, isBinary));
    ws.on('pong', () => (this.#lastSeen = Date.now()));
    ws.on('ping', () => (this.#lastSeen = Date.now()));
    ws.on('error', () => {
      // ws follows every 'error' with 'close'; the close handler reports it.
    });
    ws.on('close', (code, reason) => this.#onClose(code, reason.toString('utf8')));
    this.on('newListener', (event) => {
      if (event === 'message') queueMicrotask(() => this.#flush());
    });
    const heartbeat = setInterval(() => {
      if (Date.now() - this.#lastSeen > limits.idleTimeoutMs) {
        this.abort(new TransportError('E_TRANSPORT_IDLE', `nothing received from the peer for ${limits.idleTimeoutMs} ms`));
      } else if (ws.readyState === ws.OPEN) ws.ping();
    }, limits.heartbeatMs);
    heartbeat.unref();
    this.#timers.push(heartbeat);
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
      if (this.ws.readyState === this.ws.CONNECTING || this.ws.readyState === this.ws.OPEN) {
        this.ws.close(error === undefined ? CLOSE_NORMAL : CLOSE_REFUSED, error?.code);
      }
      // A peer that never answers the close frame is cut after 2 s (ws itself waits 30 s).
      const timer = setTimeout(() => this.ws.terminate(), 2000);
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
    this.socket.pause();
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
    if (guard === undefined || this.ws.readyState !== this.ws.OPEN) return;
    try {
      const trailer = guard.seal({ [GOODBYE_KEY]: error.code }, 0, EMPTY_SHA256);
      this.ws.send(encodeFrame({ t: 'x', c: error.code, a: trailer }), { binary: true, compress: false });
    } catch {
      // The close frame still carries the code, unauthenticated.
    }
  }

  async #send(header: Header, payload: Payload): Promise<void> {
    if (this.#closeInfo !== undefined || this.#localClose !== undefined) throw this.#closedError();
    const parts = payload instanceof Uint8Array ? [payload] : payload.parts;
    const length = payload.byteLength;
    if (length > this.limits.maxMessageBytes) {
      throw new TransportError('E_TRANSPORT_MESSAGE_TOO_LARGE', `a message of ${length} bytes exceeds this endpoint's ${this.limits.maxMessageBytes}-byte limit`);
    }
    const guard = this.#guard;
    if (length <= this.limits.chunkBytes) {
      const bytes = parts.length === 1 ? parts[0]! : concat(parts, length);
      const trailer = guard?.seal(header, length, sha256(bytes));
      await this.#write(encodeFrame(messageHeader(header, length, trailer), bytes));
      return;
    }
    await this.#write(encodeFrame(messageHeader(header, length)));
    const hash = guard === undefined ? undefined : createHash('sha256');
    const inFlight: Array<Promise<void>> = [];
    const cursor = { part: 0, offset: 0 };
    const chunkBytes = this.limits.chunkBytes;
    try {
      for (let sent = 0; sent < length; ) {
        const size = Math.min(chunkBytes, length - sent);
        const buffer = takeChunkBuffer(chunkBytes);
        const frame = chunkFrame(buffer, parts, cursor, size);
        hash?.update(frame.subarray(frame.length - size));
        // The buffer goes back to the pool only once ws has handed it to the socket.
        inFlight.push(this.#write(frame).then(() => returnChunkBuffer(chunkBytes, buffer)));
        sent += size;
        // Backpressure: never more than maxChunksInFlight chunks between us and the kernel.
        if (inFlight.length >= this.limits.maxChunksInFlight) await inFlight.shift();
      }
    } finally {
      await Promise.allSettled(inFlight);
    }
    await Promise.all(inFlight);
    const trailer = guard?.seal(header, length, hash!.digest());
    await this.#write(encodeFrame(trailer === undefined ? { t: 'e' } : { t: 'e', a: trailer }));
  }

  #write(frame: Uint8Array): Promise<void> {
    // A write that fails because the connection is closing reports why it closed (the peer's code), once known.
    const failed = (reject: (e: FlareError) => void): void => void this.closed.then(() => reject(this.#closedError()));
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== this.ws.OPEN) return failed(reject);
      this.ws.send(frame, { binary: true, compress: false }, (err) => (err ? failed(reject) : resolve()));
    });
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    this.#lastSeen = Date.now();
    if (this.#closeInfo !== undefined || this.#localClose !== undefined) return;
    try {
      if (!isBinary) throw new TransportError('E_TRANSPORT_PROTOCOL', 'the peer sent a text frame');
      const preLogin = this.side === 'server' && this.#auth === undefined;
      const maxBytes = preLogin ? this.limits.preLoginMaxBytes : this.limits.chunkBytes;
      // A chunk frame is byte for byte the prefix we encode for {t:'c'}: recognise it without decoding JSON
      // (the one frame type of a large transfer); anything else goes through the strict decoder and schema.
      // ws gives each frame that spanned several socket reads its own buffer; only then may it be handed on.
      const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
      if (isChunkFrame(data)) {
        const payload = data.subarray(CHUNK_PREFIX.length);
        if (payload.length > maxBytes) throw new CodecError('E_CODEC_TOO_LARGE', `frame payload of ${payload.length} bytes exceeds the ${maxBytes}-byte limit`);
        this.#onFrame(CHUNK_HEADER, payload, preLogin, owned);
        return;
      }
      const { header, payload } = decodeFrame(data, FRAME_HEADER, { maxBytes });
      this.#onFrame(header, payload, preLogin, owned);
    } catch (error) {
      this.abort(error instanceof FlareError ? error : new TransportError('E_TRANSPORT_PROTOCOL', 'the peer sent a frame that could not be processed', { cause: error }));
    }
  }

  #onFrame(frame: FrameHeader, payload: Uint8Array, preLogin: boolean, owned: boolean): void {
    const incoming = this.#incoming;
    if (frame.t === 'x') {
      if (payload.length !== 0) throw new TransportError('E_TRANSPORT_PROTOCOL', 'a goodbye carries a payload');
      // Without a guard there is nothing to verify it with: the close frame that follows counts as it is.
      const guard = this.#guard;
      if (guard === undefined) return;
      const goodbye = { [GOODBYE_KEY]: frame.c };
      const verify = (): void => {
        // Throws (E_AUTH_MAC, E_AUTH_REPLAY...) for a goodbye the session did not seal: that closes the connection.
        guard.open(goodbye, 0, EMPTY_SHA256, frame.a);
        this.#peerGoodbye = frame.c;
      };
      // In sequence with the messages still waiting for their digest.
      if (this.#pending === undefined) verify();
      else this.#later(verify);
      return;
    }
    if (frame.t === 'm') {
      if (incoming !== undefined) throw new TransportError('E_TRANSPORT_PROTOCOL', 'a message started before the previous one ended');
      if (frame.n > this.limits.maxMessageBytes) {
        throw new TransportError('E_TRANSPORT_MESSAGE_TOO_LARGE', `the peer announced a ${frame.n}-byte message; the limit is ${this.limits.maxMessageBytes}`);
      }
      if (frame.n <= this.limits.chunkBytes || payload.length > 0) {
        if (payload.length !== frame.n) throw new TransportError('E_TRANSPORT_PROTOCOL', `a message declares ${frame.n} bytes but carries ${payload.length}`);
        this.#deliverInOrder(frame.h, payload, frame.a);
        return;
      }
      if (preLogin) throw new TransportError('E_TRANSPORT_PRELOGIN_LIMIT', 'an unauthenticated peer tried to stream a large message');
      const guarded = this.#guard !== undefined;
      // A failed worker acknowledges nothing more: release whatever it held (reading resumes).
      const worker = guarded && frame.n >= WORKER_MIN_BYTES ? workerHash((bytes) => this.#hashed(bytes), () => this.#hashed(this.#hashBacklog)) : undefined;
      // The one allocation of the message: declared length, already bounded by maxMessageBytes.
      this.#incoming = {
        header: frame.h,
        length: frame.n,
        buffer: Buffer.allocUnsafe(frame.n),
        offset: 0,
        hash: guarded && worker === undefined ? createHash('sha256') : undefined,
        worker,
      };
      return;
    }
    if (incoming === undefined) throw new TransportError('E_TRANSPORT_PROTOCOL', `a '${frame.t}' frame arrived outside a message`);
    if (frame.t === 'c') {
      if (incoming.offset + payload.length > incoming.length) throw new TransportError('E_TRANSPORT_PROTOCOL', 'chunks exceed the declared message length');
      incoming.buffer.set(payload, incoming.offset);
      incoming.offset += payload.length;
      incoming.hash?.update(payload);
      if (incoming.worker !== undefined) {
        // The worker hashes the very bytes just copied: ws's own buffer for this frame, given away (no copy)
        // when this frame owns it, else a copy. Nothing on this thread can change them after this point.
        // Counted before handing over: the worker may acknowledge (or fail) before update() returns.
        this.#hashBacklog += payload.length;
        if (!incoming.worker.update(payload, owned ? 'transfer' : 'copy')) this.#hashBacklog -= payload.length;
        if (this.#hashBacklog > HASH_BACKLOG_BYTES && !this.#pausedForHash) {
          this.#pausedForHash = true;
          this.ws.pause();
        }
      }
      return;
    }
    if (payload.length !== 0 || incoming.offset !== incoming.length) {
      throw new TransportError('E_TRANSPORT_PROTOCOL', `a message ended after ${incoming.offset} of ${incoming.length} bytes`);
    }
    this.#incoming = undefined;
    if (incoming.worker === undefined) {
      this.#deliverInOrder(incoming.header, incoming.buffer, frame.a, incoming.hash?.digest());
      return;
    }
    // If the worker fails, the same bytes are in the message buffer: hash them here instead.
    const digest = incoming.worker.digest().catch(() => inlineSha256(incoming.buffer));
    this.#later(async () => this.#deliver(incoming.header, incoming.buffer, frame.a, await digest));
  }

  /** The worker hashed `bytes` more: resume reading once its backlog is half gone. */
  #hashed(bytes: number): void {
    this.#hashBacklog -= bytes;
    if (this.#pausedForHash && this.#hashBacklog <= HASH_BACKLOG_BYTES / 2) {
      this.#pausedForHash = false;
      if (this.isOpen) this.ws.resume();
    }
  }

  /** Delivers now, or after the deliveries still waiting for a digest (messages keep their order). */
  #deliverInOrder(header: Header, received: Uint8Array, trailer: Header | undefined, digest?: Uint8Array): void {
    if (this.#pending === undefined) this.#deliver(header, received, trailer, digest);
    else this.#later(() => this.#deliver(header, received, trailer, digest));
  }

  #later(step: () => void | Promise<void>): void {
    const run = (this.#pending ?? Promise.resolve())
      .then(() => {
        // A connection that closed meanwhile delivers nothing more.
        if (this.#closeInfo === undefined && this.#localClose === undefined) return step();
        return undefined;
      })
      .catch((error: unknown) => {
        this.abort(error instanceof FlareError ? error : new TransportError('E_TRANSPORT_PROTOCOL', 'a message could not be delivered', { cause: error }));
      })
      .finally(() => {
        if (this.#pending === run) this.#pending = undefined;
      });
    this.#pending = run;
  }

  #deliver(header: Header, received: Uint8Array, trailer: Header | undefined, digest?: Uint8Array): void {
    // ws hands out Buffers; Buffer#slice is a view where Uint8Array#slice copies. A decoder that slices to copy
    // an unaligned tensor (@flare/core's decodeModel does) then builds its typed array on the whole underlying
    // ArrayBuffer from offset 0: the socket's read buffer, other frames' bytes. Deliver the same bytes as a
    // plain Uint8Array view (no copy), whose slice() copies as the type promises.
    const payload = Buffer.isBuffer(received) ? new Uint8Array(received.buffer, received.byteOffset, received.byteLength) : received;
    let message: Message;
    if (this.#guard !== undefined) {
      if (!this.#guard.open(header, payload.length, digest ?? sha256(payload), trailer)) return;
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
    this.#incoming?.worker?.drop();
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
      const authenticated = refusal && this.peerVerified;
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
