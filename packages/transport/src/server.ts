import { EventEmitter } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { FlareError, silentLogger, TransportError, type Logger } from '@flare/core';
import { WebSocketServer } from 'ws';
import { WsConnection, type Connection } from './connection.js';
import { resolveLimits, type ServerLimits } from './limits.js';
import { keyPem, MIN_TLS, requireTls, type ConnectionSecurity, type PrivateKeyInput } from './tls-options.js';
import { FRAME_OVERHEAD } from './wire.js';

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
  /** Connections currently open, logged in or not. */
  readonly connectionCount: number;
  on<E extends keyof ServerEvents<A>>(event: E, listener: (...args: ServerEvents<A>[E]) => void): this;
  off<E extends keyof ServerEvents<A>>(event: E, listener: (...args: ServerEvents<A>[E]) => void): this;
  /** Stops listening and closes every connection with E_TRANSPORT_SHUTDOWN. */
  close(): Promise<void>;
}

class Endpoint<A> extends EventEmitter implements ServerEndpoint<A> {
  readonly servers: HttpServer[] = [];
  readonly open = new Set<WsConnection<A>>();
  pending = 0;
  port = 0;

  get connectionCount(): number {
    return this.open.size;
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
 * With mtls, TLS itself refuses a client without a certificate from `tls.caPem`. Each connection then runs
 * `authenticate` (the login) under a short deadline and a small byte budget, so a flood of sockets that never
 * log in cannot exhaust the server; only then is it emitted as `connection`. WebSocket frames are capped at one
 * chunk (ws maxPayload = chunkBytes + frame overhead): large messages always stream.
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
  const endpoint = new Endpoint<A>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.chunkBytes + FRAME_OVERHEAD, perMessageDeflate: false, clientTracking: false });

  const refuse = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }, error: FlareError): void => {
    logger.warn('connection refused', { code: error.code, address: socket.remoteAddress });
    endpoint.emit('refused', { remote: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }, error });
  };

  const onUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== path) return reject(socket, 404, 'Not Found');
    if (endpoint.open.size >= limits.maxConnections || endpoint.pending >= limits.maxPendingLogins) {
      refuse(socket, new TransportError('E_TRANSPORT_CONNECTION_LIMIT', 'connection or pending-login limit reached'));
      return reject(socket, 503, 'Service Unavailable', 'E_TRANSPORT_CONNECTION_LIMIT');
    }
    endpoint.pending++;
    wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = new WsConnection<A>(ws, socket, 'server', security, limits);
      endpoint.open.add(conn);
      void conn.closed.then(() => endpoint.open.delete(conn));
      conn.deadline(limits.loginTimeoutMs);
      void admit(conn);
    });
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
      endpoint.pending--;
      endpoint.emit('connection', conn);
    } catch (cause) {
      endpoint.pending--;
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
            ...(security === 'mtls'
              ? { ca: requireTls(security, options.tls!.caPem, 'the CA that issues client certificates'), requestCert: true, rejectUnauthorized: true }
              : {}),
          });
    server.on('request', (_req, res) => {
      res.writeHead(426, { connection: 'close', upgrade: 'websocket' }).end();
    });
    server.on('upgrade', onUpgrade);
    server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      refuse(socket, new TransportError('E_TRANSPORT_TLS', `TLS handshake failed (${err.code ?? 'error'})`, { cause: err }));
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
