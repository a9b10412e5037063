import { EventEmitter } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { FlareError, silentLogger, TransportError, type Logger } from '@flare/core';
import { Pool } from './admission.js';
import { ReceiveBudget } from './budget.js';
import { WsConnection, type Connection, type ReceiveBuffer } from './connection.js';
import { resolveLimits, type ServerLimits } from './limits.js';
import { keyPem, MIN_TLS, requireTls, type ConnectionSecurity, type PrivateKeyInput } from './tls-options.js';
import { switchingProtocols, upgradeKey } from './websocket.js';

/** Options of {@link listen}. */
export interface ServerOptions<A> {
  readonly security: ConnectionSecurity;
  /** Address(es) to listen on (default `127.0.0.1`; use `0.0.0.0` and/or `::` to serve other machines). */
  readonly host?: string | readonly string[];
  /** TCP port; 0 picks a free one (with several hosts, the first host's port is reused for the others). */
  readonly port: number;
  /** The WebSocket path (default `/flare`); other paths get 404. */
  readonly path?: string;
  /** Server certificate and key (tls, mtls) and the CA that issues client certificates (mtls). */
  readonly tls?: { readonly certPem: string; readonly privateKey: PrivateKeyInput; readonly caPem?: string };
  readonly limits?: ServerLimits;
  /**
   * Runs on every new connection before it is handed out: the login handshake. Its result becomes
   * `connection.auth`; if it throws, the connection is closed with the error's code. It runs under the
   * login deadline and the pre-login size limit.
   */
  readonly authenticate?: (connection: Connection<A>) => Promise<A>;
  /** Supplies the buffers streamed messages are received into (default: a fresh allocation each). */
  readonly receiveBuffer?: ReceiveBuffer;
  readonly logger?: Logger;
}

/** A peer the server turned away, for logs and audit. */
export interface Refusal {
  readonly remote: { readonly address: string; readonly port: number };
  readonly error: FlareError;
}

/** Events of a {@link ServerEndpoint}. */
export interface ServerEvents<A> {
  /** An authenticated connection (its `auth` holds what authenticate returned). */
  connection: [Connection<A>];
  /** A connection refused before or during login (TLS failure, limit, login refused, timeout). */
  refused: [Refusal];
}

/** A listening FLARE-TS WebSocket endpoint. Create it with {@link listen}. */
export interface ServerEndpoint<A = unknown> {
  /** The port it listens on (useful with port 0). */
  readonly port: number;
  /** Upgraded connections currently open, logged in or not. */
  readonly connectionCount: number;
  /** Upgraded connections that have not completed their login. */
  readonly pendingLoginCount: number;
  /** Sockets in the TLS handshake or the WebSocket upgrade. */
  readonly handshakeCount: number;
  on<E extends keyof ServerEvents<A>>(event: E, listener: (...args: ServerEvents<A>[E]) => void): this;
  off<E extends keyof ServerEvents<A>>(event: E, listener: (...args: ServerEvents<A>[E]) => void): this;
  /** Stops listening and closes every connection with E_TRANSPORT_SHUTDOWN. */
  close(): Promise<void>;
}

class Endpoint<A> extends EventEmitter implements ServerEndpoint<A> {
  readonly servers: HttpServer[] = [];
  readonly open = new Set<WsConnection<A>>();
  port = 0;

  constructor(
    readonly handshakes: Pool<Socket>,
    readonly pending: Pool<WsConnection<A>>,
  ) {
    super();
  }

  get connectionCount(): number {
    return this.open.size;
  }

  get pendingLoginCount(): number {
    return this.pending.size;
  }

  get handshakeCount(): number {
    return this.handshakes.size;
  }

  async close(): Promise<void> {
    const closing = [...this.open].map((c) => c.close(new TransportError('E_TRANSPORT_SHUTDOWN', 'the server is shutting down')));
    await Promise.all([
      ...closing,
      ...this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    ]);
  }
}

/**
 * Starts a WebSocket server endpoint: clear, TLS or mutual TLS (TLS 1.2 minimum, 1.3 preferred).
 *
 * With mtls, TLS itself refuses a client without a certificate from `tls.caPem`. A socket must complete TLS
 * and the WebSocket upgrade within `handshakeTimeoutMs`; each connection then runs `authenticate` (the login)
 * under a short deadline and a small byte budget; only then is it emitted as `connection`. Until a peer has
 * proven who it is it sits in small pools with per-address caps where the oldest anonymous entry makes room
 * for a newcomer (see {@link ServerLimits}), so a flood of sockets that never finish TLS or never log in
 * cannot keep anyone else out. WebSocket frames are capped at one chunk: large messages always stream, into
 * memory reserved from `receiveBudgetBytes`, at no less than `minBytesPerSecond`.
 *
 * @example
 * ```ts
 * const server = await listen({ security: 'mtls', port: 8002, tls: { certPem, privateKey, caPem: rootCaPem },
 *   authenticate: (conn) => serverAuth.accept(conn) });
 * server.on('connection', (conn) => conn.on('message', (m) => conn.send({ type: 'echo' }, m.payload)));
 * ```
 * @throws TransportError E_TRANSPORT_CONFIG when tls/mtls lacks a certificate or mtls lacks a CA.
 */
export async function listen<A = undefined>(options: ServerOptions<A>): Promise<ServerEndpoint<A>> {
  const { security } = options;
  const limits = resolveLimits(options.limits);
  const logger = options.logger ?? silentLogger;
  const path = options.path ?? '/flare';
  const hosts = typeof options.host === 'string' ? [options.host] : (options.host ?? ['127.0.0.1']);
  if (hosts.length === 0) throw new TransportError('E_TRANSPORT_CONFIG', 'no address to listen on');
  const refuse = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }, error: FlareError): void => {
    logger.warn('connection refused', { code: error.code, address: socket.remoteAddress });
    endpoint.emit('refused', { remote: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }, error });
  };
  const handshakes = new Pool<Socket>('sockets in the TLS handshake or upgrade', limits.maxHandshakes, limits.maxHandshakesPerAddress, Infinity, (socket, error) => {
    refuse(socket, error);
    socket.destroy();
  });
  // A displaced login is reported by admit(), where its authenticate hook ends.
  const pending = new Pool<WsConnection<A>>('connections logging in', limits.maxPendingLogins, limits.maxPendingLoginsPerAddress, limits.maxPendingLoginsPerIdentity, (conn, error) => conn.abort(error));
  const endpoint = new Endpoint<A>(handshakes, pending);
  // Sockets between TCP accept and the upgrade, by remote address and port (the TLS socket of an https server
  // is another object than the TCP socket it wraps, with the same address and port).
  const handshaking = new Map<string, { socket: Socket; timer: NodeJS.Timeout }>();
  const peerKey = (s: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string => `${s.remoteAddress ?? ''}|${s.remotePort ?? 0}`;
  const onTcp = (socket: Socket): void => {
    const key = peerKey(socket);
    const address = socket.remoteAddress ?? '';
    handshakes.makeRoom(address);
    handshakes.add(socket, address);
    const timer = setTimeout(() => {
      handshaking.delete(key);
      handshakes.remove(socket);
      refuse(socket, new TransportError('E_TRANSPORT_HANDSHAKE_TIMEOUT', `the peer did not complete TLS and the WebSocket upgrade within ${limits.handshakeTimeoutMs} ms`));
      socket.destroy();
    }, limits.handshakeTimeoutMs);
    timer.unref();
    handshaking.set(key, { socket, timer });
    socket.once('close', () => upgraded(key));
  };
  /** The socket of `key` upgraded, or closed: it no longer counts as in the handshake. */
  const upgraded = (key: string): void => {
    const h = handshaking.get(key);
    if (h === undefined) return;
    handshaking.delete(key);
    clearTimeout(h.timer);
    handshakes.remove(h.socket);
  };
  const budget = new ReceiveBudget(limits.receiveBudgetBytes);

  const onUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    upgraded(peerKey(socket));
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== path) return reject(socket, 404, 'Not Found');
    const request = upgradeKey(req.method, req.headers);
    if ('error' in request) {
      refuse(socket, new TransportError('E_TRANSPORT_PROTOCOL', `not a WebSocket upgrade: ${request.error}`));
      return reject(socket, 400, 'Bad Request');
    }
    const address = socket.remoteAddress ?? '';
    // Logged-in connections are never displaced (they are bounded per participant by the login); anonymous
    // logins in progress make room for newcomers.
    const full = endpoint.open.size - pending.size >= limits.maxConnections;
    if (full || (endpoint.open.size >= limits.maxConnections && !pending.displaceOldest(`more than ${limits.maxConnections} connections`)) || !pending.makeRoom(address)) {
      refuse(socket, new TransportError('E_TRANSPORT_CONNECTION_LIMIT', full ? 'the server holds its largest number of logged-in connections' : 'every login slot is taken by logins in progress'));
      return reject(socket, 503, 'Service Unavailable', 'E_TRANSPORT_CONNECTION_LIMIT');
    }
    // The HTTP server's timeouts no longer apply: the connection's own heartbeat and deadlines do.
    socket.setTimeout(0);
    socket.write(switchingProtocols(request.key));
    const conn = new WsConnection<A>(socket, {
      side: 'server', security, limits, masking: 'none', head, budget, receiveBuffer: options.receiveBuffer,
    });
    endpoint.open.add(conn);
    pending.add(conn, address);
    conn.onIdentified = (name) => pending.identify(conn, name);
    void conn.closed.then(() => {
      endpoint.open.delete(conn);
      pending.remove(conn);
    });
    conn.deadline(limits.loginTimeoutMs);
    void admit(conn);
  };

  const admit = async (conn: WsConnection<A>): Promise<void> => {
    try {
      const value =
        options.authenticate === undefined
          ? (undefined as A)
          : await Promise.race([
              options.authenticate(conn),
              // A login that times out or a peer that leaves must not leave the hook pending forever.
              conn.closed.then((): never => {
                throw conn.closeError();
              }),
            ]);
      if (!conn.isOpen) throw conn.closeError();
      conn.promote(value);
      pending.remove(conn);
      endpoint.emit('connection', conn);
    } catch (cause) {
      pending.remove(conn);
      const error = cause instanceof FlareError ? cause : new TransportError('E_TRANSPORT_REFUSED', 'the login hook failed', { cause });
      if (!(cause instanceof FlareError)) logger.error('authenticate hook threw a non-FLARE error', { error: String(cause) });
      refuse({ remoteAddress: conn.remote.address, remotePort: conn.remote.port }, error);
      conn.abort(error);
    }
  };

  for (const host of hosts) {
    const server =
      security === 'clear'
        ? createHttpServer()
        : createHttpsServer({
            cert: requireTls(security, options.tls, 'a server certificate and key').certPem,
            key: keyPem(options.tls!.privateKey),
            minVersion: MIN_TLS,
            // Node's own TLS deadline is only a backstop: ours (from TCP accept to the upgrade) decides first.
            handshakeTimeout: limits.handshakeTimeoutMs + 1000,
            ...(security === 'mtls'
              ? { ca: requireTls(security, options.tls!.caPem, 'the CA that issues client certificates'), requestCert: true, rejectUnauthorized: true }
              : {}),
          });
    server.on('request', (_req, res) => {
      res.writeHead(426, { connection: 'close', upgrade: 'websocket' }).end();
    });
    server.on('connection', onTcp);
    server.on('upgrade', onUpgrade);
    server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      refuse(
        socket,
        err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT'
          ? new TransportError('E_TRANSPORT_HANDSHAKE_TIMEOUT', `the peer did not complete TLS within ${limits.handshakeTimeoutMs} ms`, { cause: err })
          : new TransportError('E_TRANSPORT_TLS', `TLS handshake failed (${err.code ?? 'error'})`, { cause: err }),
      );
    });
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', (cause) => reject(new TransportError('E_TRANSPORT_CONFIG', `cannot listen on ${host}:${endpoint.port || options.port}`, { cause })));
      server.listen({ host, port: endpoint.port || options.port }, () => resolve());
    }).catch(async (e: unknown) => {
      await endpoint.close();
      throw e;
    });
    endpoint.port = (server.address() as AddressInfo).port;
    endpoint.servers.push(server);
  }
  return endpoint;
}

function reject(socket: Socket, status: number, text: string, code?: string): void {
  const extra = code === undefined ? '' : `X-Flare-Error: ${code}\r\n`;
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${extra}Content-Length: 0\r\n\r\n`);
}
