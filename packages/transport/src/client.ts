import { EventEmitter } from 'node:events';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import { createHash, type KeyObject } from 'node:crypto';
import { FlareError, PkiError, silentLogger, TransportError, type Logger } from '@flare/core';
import { backoffDelay, cryptoRandom } from './backoff.js';
import { refusalOf, type CloseInfo } from './close.js';
import { WsConnection, type Connection, type ReceiveBuffer } from './connection.js';
import { resolveLimits, type TransportLimits } from './limits.js';
import { authority, connectTunnel, type HttpProxy } from './proxy.js';
import { keyPem, MIN_TLS, requireTls, type ConnectionSecurity, type PrivateKeyInput } from './tls-options.js';
import { clientUpgrade, type UpgradeRefused } from './websocket.js';

/** One server address: a DNS name, an IPv4 or an IPv6 literal, and a port. */
export interface Target {
  readonly host: string;
  readonly port: number;
}

/** Options of {@link dial} and {@link createClient}. */
export interface ClientOptions<A> {
  readonly security: ConnectionSecurity;
  /** Server addresses, tried in order (FLARE's host_names / connect_to). */
  readonly targets: readonly Target[];
  /** The WebSocket path (default `/flare`). */
  readonly path?: string;
  /**
   * TLS trust and identity: `caPem` verifies the server (the project root CA, or a proxy's custom_ca_cert);
   * `certPem` and `privateKey` are presented with mtls. Server identity is checked by the login handshake
   * against the kit, not by TLS host name (FLARE's behaviour), so any listed address works.
   *
   * `peerName` is the common name the server's certificate carries when TLS is end to end (the kit's server
   * name; leave it out behind a TLS-terminating proxy). It refuses nothing: when the TLS peer's verified
   * certificate has this name, a refusal that arrives before the login completed is known to come from the
   * server ({@link CloseInfo.authenticated}), so it may be final.
   */
  readonly tls?: { readonly caPem: string; readonly certPem?: string; readonly privateKey?: PrivateKeyInput; readonly peerName?: string };
  /** Reach the server through an HTTP CONNECT proxy. */
  readonly proxy?: HttpProxy;
  /** Time to open TCP, TLS and the WebSocket upgrade, per address (default 10 s). */
  readonly connectTimeoutMs?: number;
  readonly limits?: TransportLimits;
  /** The login handshake, run on every new connection before it is handed out; its result is `connection.auth`. */
  readonly authenticate?: (connection: Connection<A>) => Promise<A>;
  /** Supplies the buffers streamed messages are received into (default: a fresh allocation each). */
  readonly receiveBuffer?: ReceiveBuffer;
  /** The local address to connect from (default: the system's choice). */
  readonly localAddress?: string;
  readonly logger?: Logger;
}

/**
 * Opens one connection: tries each target in order and returns the first that connects and authenticates.
 *
 * @throws the last attempt's FlareError: TransportError E_TRANSPORT_CONNECT, E_TRANSPORT_TLS, E_TRANSPORT_PROXY,
 *   E_TRANSPORT_CONNECTION_LIMIT, E_TRANSPORT_CONFIG, or the code the server refused the login with.
 */
export async function dial<A = undefined>(options: ClientOptions<A>): Promise<Connection<A>> {
  if (options.targets.length === 0) throw new TransportError('E_TRANSPORT_CONFIG', 'no server address to connect to');
  let last: FlareError | undefined;
  for (const target of options.targets) {
    try {
      return await dialOne(options, target);
    } catch (error) {
      last = error instanceof FlareError ? error : new TransportError('E_TRANSPORT_CONNECT', `cannot connect to ${authority(target.host, target.port)}`, { cause: error });
      (options.logger ?? silentLogger).warn('connect failed', { target: authority(target.host, target.port), code: last.code });
      // A refusal by the server's login is an answer, not an unreachable address: do not try the next one.
      if (!(last instanceof TransportError)) throw last;
    }
  }
  throw last!;
}

// One TLS context per (CA, certificate, key), as an https.Agent keeps one: building a context parses the key,
// the certificate and the CA (about 1 ms of CPU per dial here, half of a client's mtls handshake). Contexts are
// immutable configuration; they are keyed by a digest of exactly what they hold, bounded, least recently used
// first out. Exported key PEMs are kept per KeyObject (weakly), so a kit's key is exported once.
const CONTEXTS_KEPT = 16;
const contexts = new Map<string, SecureContext>();
const exportedKeys = new WeakMap<KeyObject, string>();

function clientContext(caPem: string, certPem: string | undefined, privateKey: PrivateKeyInput | undefined): SecureContext {
  let key: string | undefined;
  if (privateKey !== undefined && certPem !== undefined) {
    if (typeof privateKey === 'string') key = privateKey;
    else {
      key = exportedKeys.get(privateKey);
      if (key === undefined) exportedKeys.set(privateKey, (key = keyPem(privateKey)));
    }
  }
  const id = createHash('sha256').update(caPem).update('\0').update(key === undefined ? '' : `${certPem}\0${key}`).digest('base64');
  let context = contexts.get(id);
  if (context !== undefined) {
    contexts.delete(id);
  } else {
    context = createSecureContext({ ca: caPem, ...(key === undefined ? {} : { cert: certPem, key }), minVersion: MIN_TLS });
    if (contexts.size >= CONTEXTS_KEPT) contexts.delete(contexts.keys().next().value!);
  }
  contexts.set(id, context);
  return context;
}

// RFC 6455 5.3 masks client frames with a random key so that bytes chosen by a script cannot look like HTTP
// to an intermediary that does not speak WebSocket (section 10.3). Over TLS no such intermediary sees the
// frames: only ciphertext crosses the network, and a TLS-terminating proxy is the server's own WebSocket-aware
// front end. There the all-zero key keeps the MASK bit servers require and leaves each chunk as it is (masking
// is a pass over every byte of a client upload: see README "Performance").
// Clear connections use random keys.

async function dialOne<A>(options: ClientOptions<A>, target: Target): Promise<Connection<A>> {
  const { security } = options;
  const limits = resolveLimits(options.limits);
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  const where = authority(target.host, target.port);
  const tunnel = options.proxy === undefined ? undefined : await connectTunnel(options.proxy, target.host, target.port, timeoutMs);
  let socket: Socket;
  if (security === 'clear') {
    socket = tunnel ?? netConnect({ host: target.host, port: target.port, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) });
  } else {
    const tls = requireTls(security, options.tls, 'the CA certificate that verifies the server');
    if (security === 'mtls' && (tls.certPem === undefined || tls.privateKey === undefined)) {
      throw new TransportError('E_TRANSPORT_CONFIG', 'connection security "mtls" needs a client certificate and key');
    }
    socket = tlsConnect({
      ...(tunnel === undefined
        ? { host: target.host, port: target.port, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) }
        : { socket: tunnel }),
      ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
      secureContext: clientContext(tls.caPem, tls.certPem, tls.privateKey),
      minVersion: MIN_TLS,
      // The chain is verified against caPem; the server's name is checked by the login handshake (kit pin).
      checkServerIdentity: () => undefined,
    });
  }
  // TCP, TLS and the WebSocket upgrade, within the connect timeout.
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    socket.destroy();
  }, timeoutMs);
  deadline.unref();
  let head: Uint8Array;
  try {
    head = await clientUpgrade(socket, where, options.path ?? '/flare');
  } catch (cause) {
    socket.destroy();
    throw upgradeFailure(cause, where, security, timedOut, timeoutMs);
  } finally {
    clearTimeout(deadline);
  }
  const peerName = options.tls?.peerName;
  const conn = new WsConnection<A>(socket, {
    side: 'client',
    security,
    limits,
    // See zero masking above.
    masking: security === 'clear' ? 'random' : 'zero',
    head,
    peerVerified: peerName !== undefined && tlsPeerIs(socket, peerName),
    receiveBuffer: options.receiveBuffer,
  });
  if (options.authenticate === undefined) {
    conn.promote(undefined as A);
    return conn;
  }
  const timer = setTimeout(() => conn.abort(new TransportError('E_TRANSPORT_LOGIN_TIMEOUT', `the login did not complete within ${limits.loginTimeoutMs} ms`)), limits.loginTimeoutMs);
  timer.unref();
  try {
    const value = await options.authenticate(conn);
    if (!conn.isOpen) throw conn.closeError();
    conn.promote(value);
    return conn;
  } catch (error) {
    const flare = error instanceof FlareError ? error : new TransportError('E_TRANSPORT_REFUSED', 'the login hook failed', { cause: error });
    if (conn.isOpen) await conn.close(flare);
    throw flare;
  } finally {
    clearTimeout(timer);
  }
}

/** The FlareError for a failed connect: refused by the server, TLS, the network, or the timeout. */
function upgradeFailure(cause: unknown, where: string, security: ConnectionSecurity, timedOut: boolean, timeoutMs: number): FlareError {
  if (timedOut) return new TransportError('E_TRANSPORT_CONNECT', `${where} did not complete TLS and the WebSocket upgrade within ${timeoutMs} ms`);
  if (isUpgradeRefused(cause)) {
    return cause.code === 'E_TRANSPORT_CONNECTION_LIMIT'
      ? new TransportError('E_TRANSPORT_CONNECTION_LIMIT', `${where} is at its connection limit`)
      : new TransportError('E_TRANSPORT_CONNECT', `${where} answered HTTP ${cause.status} instead of a WebSocket upgrade`);
  }
  const error = cause as Error & { code?: string };
  const tlsFailure = security !== 'clear' && (/^ERR_SSL|CERT|UNABLE_TO|SELF_SIGNED/.test(error.code ?? '') || error.code === 'ECONNRESET' || /alert|certificate/i.test(error.message ?? ''));
  return tlsFailure
    ? new TransportError('E_TRANSPORT_TLS', `TLS with ${where} failed (${error.code ?? 'error'})`, { cause })
    : new TransportError('E_TRANSPORT_CONNECT', `cannot connect to ${where} (${error.code ?? 'error'})`, { cause });
}

const isUpgradeRefused = (v: unknown): v is UpgradeRefused => typeof v === 'object' && v !== null && 'status' in v && !(v instanceof Error);

/** True when `socket` is TLS, its peer's chain verified against the CA, and the certificate's CN is `name`. */
function tlsPeerIs(socket: Socket, name: string): boolean {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return false;
  const cn = socket.getPeerCertificate(false)?.subject?.CN as string | string[] | undefined;
  return cn === name;
}

/** Options of {@link createClient}: dial options plus reconnect behaviour. */
export interface ReconnectingClientOptions<A> extends ClientOptions<A> {
  /** Backoff between attempts (exponential with full jitter). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number; readonly factor?: number };
  /** Attempts in a row without success before the client gives up (default 10,000). */
  readonly maxAttempts?: number;
  /**
   * Whether to retry after `error`. The default ({@link isFinalRefusal} negated) retries everything except an
   * authenticated refusal that cannot change by retrying (a revoked, expired or unknown certificate, a login
   * the site refused, a revoked or replaced session) and this side's own configuration errors: a refusal that
   * may have been forged on the path is never final.
   */
  readonly retryable?: (error: FlareError) => boolean;
  /** Random source in [0, 1) for jitter (default: node:crypto). */
  readonly random?: () => number;
}

/** Events of a {@link Client}. */
export interface ClientEvents<A> {
  /** A new authenticated connection. */
  open: [Connection<A>];
  /** The current connection closed (the client will reconnect unless stopped or given up). */
  close: [CloseInfo];
  /** An attempt failed; the next one starts after `delayMs`. */
  retry: [{ readonly attempt: number; readonly delayMs: number; readonly error: FlareError }];
  /** The client stopped trying: `final` for a refusal it may not retry (see `retryable`), else maxAttempts was reached. */
  giveup: [FlareError, { readonly final: boolean }];
}

/** A client that keeps one authenticated connection open, reconnecting with backoff. */
export interface Client<A = unknown> {
  /** The open connection, if any. */
  readonly connection: Connection<A> | undefined;
  /** Resolves with an open connection (now or at the next `open`), or rejects after `timeoutMs` or on give-up. */
  ready(timeoutMs?: number): Promise<Connection<A>>;
  /** Stops reconnecting and closes the connection. */
  stop(): Promise<void>;
  on<E extends keyof ClientEvents<A>>(event: E, listener: (...args: ClientEvents<A>[E]) => void): this;
  once<E extends keyof ClientEvents<A>>(event: E, listener: (...args: ClientEvents<A>[E]) => void): this;
  off<E extends keyof ClientEvents<A>>(event: E, listener: (...args: ClientEvents<A>[E]) => void): this;
}

// Refusals that retrying cannot change, when they provably come from the server: its certificate checks of this
// participant (PkiError: untrusted, expired, revoked, wrong name or type), its login policy, a revocation, and a
// newer login of the same participant elsewhere.
const FINAL_CODES: ReadonlySet<string> = new Set(['E_AUTH_REFUSED', 'E_AUTH_SESSION_REVOKED', 'E_AUTH_SESSION_REPLACED']);
// This side's own configuration: no peer is involved, so nothing on the path can cause it.
const LOCAL_FINAL_CODES: ReadonlySet<string> = new Set(['E_TRANSPORT_CONFIG', 'E_AUTH_KEY']);

/**
 * Whether `error` should stop a reconnecting client for good: an authenticated refusal by the server
 * ({@link refusalOf}) of a kind retrying cannot change (a PkiError about this participant's certificate,
 * E_AUTH_REFUSED, E_AUTH_SESSION_REVOKED, E_AUTH_SESSION_REPLACED), or a configuration error of this side
 * (E_TRANSPORT_CONFIG, E_AUTH_KEY). A refusal that is not authenticated (a close frame on a clear connection,
 * behind a TLS-terminating proxy, or from a TLS peer that is not the pinned server) is never final: anyone on
 * the path could have sent it.
 */
export function isFinalRefusal(error: FlareError): boolean {
  const refusal = refusalOf(error);
  if (refusal === undefined) return LOCAL_FINAL_CODES.has(error.code);
  return refusal.authenticated && (error instanceof PkiError || FINAL_CODES.has(error.code));
}

const defaultRetryable = (e: FlareError): boolean => !isFinalRefusal(e);

class ReconnectingClient<A> extends EventEmitter implements Client<A> {
  connection: Connection<A> | undefined;
  #stopped = false;
  #gaveUp: FlareError | undefined;
  #wake: (() => void) | undefined;
  readonly #done: Promise<void>;

  constructor(private readonly options: ReconnectingClientOptions<A>) {
    super();
    this.#done = this.#loop();
  }

  async #loop(): Promise<void> {
    const maxAttempts = this.options.maxAttempts ?? 10_000;
    const retryable = this.options.retryable ?? defaultRetryable;
    let attempt = 0;
    while (!this.#stopped) {
      let error: FlareError;
      try {
        const conn = await dial(this.options);
        if (this.#stopped) {
          await conn.close();
          return;
        }
        attempt = 0;
        this.connection = conn;
        this.emit('open', conn);
        const info = await conn.closed;
        this.connection = undefined;
        this.emit('close', info);
        if (this.#stopped) return;
        error = info.error ?? new TransportError('E_TRANSPORT_CLOSED', 'the server closed the connection');
      } catch (e) {
        error = e instanceof FlareError ? e : new TransportError('E_TRANSPORT_CONNECT', 'connection attempt failed', { cause: e });
      }
      if (this.#stopped) return;
      const final = !retryable(error);
      if (final || attempt + 1 >= maxAttempts) {
        this.#gaveUp = error;
        this.emit('giveup', error, { final });
        return;
      }
      const delayMs = backoffDelay(attempt, this.options.backoff, this.options.random ?? cryptoRandom);
      this.emit('retry', { attempt, delayMs, error });
      attempt++;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  ready(timeoutMs = 30_000): Promise<Connection<A>> {
    if (this.connection !== undefined) return Promise.resolve(this.connection);
    if (this.#gaveUp !== undefined) return Promise.reject(this.#gaveUp);
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off('open', onOpen);
        this.off('giveup', onGiveUp);
      };
      const onOpen = (c: Connection<A>): void => (cleanup(), resolve(c));
      const onGiveUp = (e: FlareError): void => (cleanup(), reject(e));
      const timer = setTimeout(() => (cleanup(), reject(new TransportError('E_TRANSPORT_CONNECT', `no connection within ${timeoutMs} ms`))), timeoutMs);
      this.on('open', onOpen);
      this.on('giveup', onGiveUp);
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.connection?.close();
    await this.#done;
  }
}

/**
 * Starts a client that connects (trying every target), authenticates, and reconnects with exponential backoff
 * and full jitter whenever the connection drops. Listen for `open` to get each new connection.
 *
 * @example
 * ```ts
 * const client = createClient({ ...clientOptionsFromKit(kit), authenticate: (c) => clientAuth.login(c) });
 * const conn = await client.ready(10_000);
 * await conn.send({ type: 'hello' });
 * ```
 */
export function createClient<A = undefined>(options: ReconnectingClientOptions<A>): Client<A> {
  return new ReconnectingClient(options);
}
