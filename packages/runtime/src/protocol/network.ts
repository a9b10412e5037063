import { FlareError, FlareRuntimeError, PkiError, TransportError, type AuditHook, type Logger } from '@flare/core';
import { createClientAuth, createServerAuth, type AuthEventSource, type ClientAuthOptions, type ServerAuthOptions } from '@flare/auth';
import { verifyCertificate, type Kit } from '@flare/pki';
import { clientOptionsFromKit, createClient, dial, isFinalRefusal, listen, serverOptionsFromKit, type Connection, type ServerEndpoint, type ServerLimits, type TransportLimits } from '@flare/transport';
import { RUNTIME_DEFAULTS } from '../defaults.js';
import { aggregatingRelayOf, relayPathOf, relayTreeOf } from '../relay/path.js';
import type { ChannelServer, PeerChannel, PeerIdentity, ServerLink } from './channel.js';

/**
 * The identity an authenticator proved, and (when it made a session) the session's keying-material exporter,
 * which the runtime hands to attestation as the channel's `exportKeyingMaterial` (never part of the identity
 * that events and audit lines see).
 */
export interface AuthenticatedPeer extends PeerIdentity {
  readonly exportKeyingMaterial?: (label: string, length: number) => Uint8Array;
}

/**
 * Proves who is on the other end of a new connection and returns that identity; throws (a FlareError) to
 * refuse. It runs inside the transport's login deadline and pre-login size limit. The default,
 * {@link certificateIdentity}, reads the peer's mTLS certificate; @flare/auth's login handshake (session keys,
 * per-message MACs, replay defence) plugs in here.
 */
export type ParticipantAuthenticator = (connection: Connection<AuthenticatedPeer>, kit: Kit) => Promise<AuthenticatedPeer>;

/**
 * The largest message the runtime's endpoints accept or send unless told otherwise: 2 GiB. Model updates
 * stream in 1 MiB chunks, so this bounds one message, not a frame; the transport refuses a larger declared
 * length before allocating anything (E_TRANSPORT_MESSAGE_TOO_LARGE). 2 GiB holds the largest update the HE
 * aggregator can take (about 32 million parameters, ~1.3 GB as seeded CKKS ciphertexts at ~40 bytes per
 * parameter) and plaintext models up to ~500 million float32 parameters; lower it (`limits.maxMessageBytes`,
 * `flare server|client --max-message-mib`) when your models are small, as a memory bound per peer.
 */
export const RUNTIME_MAX_MESSAGE_BYTES = 2 * 1024 ** 3;

/**
 * Identity from the mTLS certificate the peer presented: chain to this project's root CA, validity,
 * revocation (the kit's CRL), and the participant type (a site may not connect as the server and vice
 * versa). Needs `connection_security: mtls` end to end; over clear or tls there is no client certificate
 * and every connection is refused (use an authenticator that logs in at the application level instead).
 */
export const certificateIdentity: ParticipantAuthenticator = async (connection, kit) => {
  const pem = connection.tls?.peerCertificatePem;
  if (pem === undefined) throw new PkiError('E_CERT_UNTRUSTED', 'the peer presented no certificate (mTLS is required)');
  const crl = kit.crlPem;
  const onServer = connection.side === 'server';
  const v = verifyCertificate(pem, {
    rootCaPem: kit.rootCaPem,
    ...(crl === undefined ? {} : { crl }),
    ...(onServer ? {} : { expectedName: kit.server.name, expectedType: 'server' as const }),
  });
  if (v.type === 'relay') throw new PkiError('E_CERT_UNTRUSTED', `relay '${v.name}' cannot join as a participant`);
  if (onServer && v.type === 'server') throw new PkiError('E_CERT_UNTRUSTED', `'${v.name}' presented a server certificate to the server`);
  return { name: v.name, org: v.org, type: v.type, ...(v.role === undefined ? {} : { role: v.role }), serial: v.serial };
};

/**
 * The login of @flare/auth as the runtime's authenticator: a signed handshake with fresh X25519 keys, session
 * keys from HKDF over the transcript (bound to the TLS exporter when TLS is end to end), then every message
 * MAC'd with a sequence number, timestamp and session expiry (replay, tamper and stale messages are refused
 * and close the connection). The identity is the session's authenticated peer. One instance per process:
 * the server side keeps the session store (revocation) and the login nonce cache.
 *
 * @example
 * ```ts
 * const server = await listenForParticipants({ kit, authenticate: sessionAuthenticator(kit) });
 * ```
 */
export function sessionAuthenticator(
  kit: Kit,
  options: { readonly server?: Omit<ServerAuthOptions, 'kit'>; readonly client?: Omit<ClientAuthOptions, 'kit'>; readonly audit?: AuditHook } = {},
): ParticipantAuthenticator {
  let server: ReturnType<typeof createServerAuth> | undefined;
  let client: ReturnType<typeof createClientAuth> | undefined;
  const relays = relayTreeOf(kit);
  return async (connection) => {
    let session;
    if (connection.side === 'server') {
      // Aggregating relays (provisioned below this server or relay) log in as contributors; nobody else of type relay.
      const allowTypes = relays.size === 0 ? undefined : kit.participant.type === 'relay' ? (['client', 'relay'] as const) : (['client', 'admin', 'relay'] as const);
      const authorize = options.server?.authorizeLogin;
      server ??= auditedAuth(
        createServerAuth({
          ...(allowTypes === undefined ? {} : { allowTypes: [...allowTypes] }),
          ...options.server,
          kit,
          // Before the welcome: a relay that is not an aggregating one below here never gets a session.
          authorizeLogin: async (peer, cred, info) => {
            if (peer.type === 'relay' && !relays.has(peer.name)) throw notContributor(peer.name, kit);
            await authorize?.(peer, cred, info);
          },
        }),
        options.audit,
      );
      session = await server.accept(connection);
    } else {
      // A site behind relays signs their path into its login (its kit's fqsn): see docs/relays.md.
      // Below an aggregating relay the session ends at that relay (its kit names it as the server identity).
      const aggregated = aggregatingRelayOf(kit) !== undefined;
      const via = aggregated ? [] : relayPathOf(kit);
      client ??= auditedAuth(createClientAuth({ ...(via.length > 0 ? { via } : {}), ...(aggregated ? { serverType: 'relay' as const } : {}), ...options.client, kit }), options.audit);
      session = await client.login(connection);
    }
    const peer = session.peer;
    // (On the client side a relay peer is the aggregating relay the kit names: @flare/auth checked name and type.)
    if (peer.type === 'relay' && connection.side === 'server' && !relays.has(peer.name)) throw notContributor(peer.name, kit);
    // Stable across renewals (@flare/auth), so attestation nonces of one connection share one root.
    const exportKeyingMaterial = (label: string, length: number): Uint8Array => session.exportKeyingMaterial(label, length);
    return {
      name: peer.name, org: peer.org, type: peer.type, ...(peer.role === undefined ? {} : { role: peer.role }),
      ...(peer.via === undefined ? {} : { via: peer.via }), ...(session.peerSerial === undefined ? {} : { serial: session.peerSerial }),
      ...(session.relaySerial === undefined ? {} : { relaySerial: session.relaySerial }), exportKeyingMaterial,
    };
  };
}

function notContributor(relay: string, kit: Kit): PkiError {
  return new PkiError('E_CERT_UNTRUSTED', `relay '${relay}' cannot join as a participant (only a relay provisioned with mode: aggregate below '${kit.participant.name}' contributes)`);
}

/**
 * What @flare/auth refuses after login becomes an audit event: a message altered, replayed or reordered inside
 * a session (`session_message_refused`, with E_AUTH_MAC, E_AUTH_REPLAY, E_AUTH_OUT_OF_ORDER, ...; `by` says
 * whether this side or the peer detected it), and a login that replaced an older live session of the same
 * participant (`session_replaced`, E_AUTH_SESSION_REPLACED).
 */
function auditedAuth<A extends AuthEventSource>(auth: A, audit: AuditHook | undefined): A {
  if (audit === undefined) return auth;
  auth.on('refused', (e) => {
    audit({ action: 'session_message_refused', user: e.peer.name, msg: `${e.code}: ${e.message}`.slice(0, 2000), data: { code: e.code, by: e.by, session: e.sessionId } });
  });
  auth.on('replaced', (e) => {
    audit({ action: 'session_replaced', user: e.peer.name, msg: `a newer login of '${e.peer.name}' replaced its session ${e.sessionId}`, data: { code: 'E_AUTH_SESSION_REPLACED', session: e.sessionId, by: e.replacedBy } });
  });
  return auth;
}

/** Adapts an authenticated transport connection to the runtime's {@link PeerChannel}. */
export function connectionChannel(connection: Connection<AuthenticatedPeer>): PeerChannel {
  let listener: ((m: { header: unknown; payload: Uint8Array }) => void) | undefined;
  const { exportKeyingMaterial, ...peer } = connection.auth;
  return {
    peer,
    ...(exportKeyingMaterial === undefined ? {} : { exportKeyingMaterial }),
    send: (header, payload) => connection.send(header, payload),
    onMessage: (handler) => {
      if (listener !== undefined) connection.off('message', listener);
      // The transport hands over a plain Uint8Array the receiver owns, and models decode zero-copy from it (or
      // copy misaligned tensors): no second copy of every received model is needed here.
      listener = (m) => handler(m.header, m.payload);
      connection.on('message', listener);
    },
    onClose: (handler) => {
      void connection.closed.then((info) => handler(info.error));
    },
    close: (reason) => void connection.close(reason),
  };
}

/** Options of {@link listenForParticipants}. */
export interface ListenOptions {
  readonly kit: Kit;
  /** Address(es) to bind (default `127.0.0.1`: loopback only unless you say otherwise). */
  readonly host?: string | readonly string[];
  /** Override the kit's fed_learn_port (0: any free port). */
  readonly port?: number;
  readonly authenticate?: ParticipantAuthenticator;
  /**
   * The newest CRL the server holds (PEM), asked at every login (default: the kit's crl.pem). Give it a
   * `CrlStore`'s current CRL so a revocation learned after start refuses logins at once. Ignored with `authenticate`.
   */
  readonly crl?: () => string | undefined;
  /** Where refusals inside sessions and replaced sessions are audited (ignored with `authenticate`). */
  readonly audit?: AuditHook;
  /** Transport limits; `maxMessageBytes` defaults to {@link RUNTIME_MAX_MESSAGE_BYTES}. */
  readonly limits?: ServerLimits;
  readonly logger?: Logger;
}

/**
 * The server's endpoint(s) from its kit: listens on fed_learn_port (and admin_port when it differs) with the
 * kit's connection security, authenticates every connection, and hands the engine channels whose `peer` is
 * the proven identity.
 */
export async function listenForParticipants(o: ListenOptions): Promise<ChannelServer & { readonly port: number; readonly adminPort: number }> {
  if (o.kit.participant.type !== 'server') throw new FlareRuntimeError('E_RUNTIME_WORKSPACE', `a ${o.kit.participant.type} kit cannot run the server`);
  const auth = o.authenticate ?? sessionAuthenticator(o.kit, { ...(o.crl === undefined ? {} : { server: { crl: o.crl } }), ...(o.audit === undefined ? {} : { audit: o.audit }) });
  let handler: ((ch: PeerChannel) => void) | undefined;
  const base = serverOptionsFromKit(o.kit);
  const make = async (port: number): Promise<ServerEndpoint<PeerIdentity>> => {
    const ep = await listen<AuthenticatedPeer>({
      ...base,
      port,
      host: o.host ?? '127.0.0.1',
      limits: { maxMessageBytes: RUNTIME_MAX_MESSAGE_BYTES, ...o.limits },
      authenticate: (c) => auth(c, o.kit),
      ...(o.logger === undefined ? {} : { logger: o.logger }),
    }).catch((e: unknown) => {
      // Say why in words: another process (an earlier server?) already listens there.
      const cause = e instanceof Error ? (e.cause as { code?: unknown } | undefined) : undefined;
      if (e instanceof FlareError && cause?.code === 'EADDRINUSE') {
        throw new TransportError('E_TRANSPORT_CONFIG', `${e.message}: address already in use (another process listens on port ${port}; stop it, or give this server another port)`, { cause: e });
      }
      throw e;
    });
    ep.on('connection', (c: Connection<AuthenticatedPeer>) => handler?.(connectionChannel(c)));
    ep.on('refused', (r) => o.logger?.warn('connection refused', { remote: r.remote.address, code: r.error.code, reason: r.error.message }));
    return ep;
  };
  const main = await make(o.port ?? o.kit.server.port);
  const endpoints = [main];
  if (o.port === undefined && o.kit.server.adminPort !== o.kit.server.port) endpoints.push(await make(o.kit.server.adminPort));
  return {
    port: main.port,
    adminPort: endpoints[1]?.port ?? main.port,
    onChannel: (h) => {
      handler = h;
    },
    close: async () => {
      await Promise.all(endpoints.map((e) => e.close()));
    },
  };
}

/** Options of {@link connectToServer}. */
export interface ConnectOptions {
  readonly kit: Kit;
  /** Override the kit's server addresses (e.g. a port chosen at run time). */
  readonly targets?: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  /** Where refusals inside the session are audited (ignored with `authenticate`). */
  readonly audit?: AuditHook;
  readonly authenticate?: ParticipantAuthenticator;
  readonly connectTimeoutMs?: number;
  /** Transport limits; `maxMessageBytes` defaults to {@link RUNTIME_MAX_MESSAGE_BYTES}. */
  readonly limits?: TransportLimits;
  readonly logger?: Logger;
}

/** Dials the server named by a site's or admin's kit and returns the authenticated channel. */
export async function connectToServer(o: ConnectOptions): Promise<PeerChannel> {
  const auth = o.authenticate ?? sessionAuthenticator(o.kit, o.audit === undefined ? {} : { audit: o.audit });
  const base = clientOptionsFromKit(o.kit);
  const conn = await dial<AuthenticatedPeer>({
    ...base,
    limits: { maxMessageBytes: RUNTIME_MAX_MESSAGE_BYTES, ...o.limits },
    ...(o.targets === undefined ? {} : { targets: o.targets }),
    authenticate: (c) => auth(c, o.kit),
    ...(o.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: o.connectTimeoutMs }),
    ...(o.logger === undefined ? {} : { logger: o.logger }),
  });
  return connectionChannel(conn);
}

/** Options of {@link linkToServer}. */
export interface LinkOptions extends ConnectOptions {
  /** Reconnect backoff ceilings (exponential, full jitter): first (default 500 ms) and largest (default 30 s). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Stop trying after this long without a connection (default Infinity: never). */
  readonly giveUpAfterMs?: number;
}

/**
 * Failures that retrying cannot fix: this participant's own (its kit, its configuration), and a refusal the
 * server made provably (@flare/transport's `isFinalRefusal`: sealed by the session, or from the pinned TLS
 * server), such as a revoked certificate. A close code or a refusal that anyone on the path could have sent is
 * retried (issue #14 item 9).
 */
function isFinal(e: FlareError): boolean {
  return isFinalRefusal(e) || e.code === 'E_TRANSPORT_CONFIG' || e.code.startsWith('E_KIT_');
}

/**
 * A site's (or any client's) {@link ServerLink} on @flare/transport's reconnecting client: dials the kit's
 * server addresses, authenticates (default: @flare/auth's login), and when the connection drops dials again
 * with exponential backoff and full jitter, for as long as `giveUpAfterMs` allows (default forever).
 */
export function linkToServer(o: LinkOptions): ServerLink {
  const auth = o.authenticate ?? sessionAuthenticator(o.kit, o.audit === undefined ? {} : { audit: o.audit });
  const giveUpAfterMs = o.giveUpAfterMs ?? RUNTIME_DEFAULTS.giveUpAfterMs;
  let since = Date.now();
  let onChannel: ((ch: PeerChannel) => void) | undefined;
  let onGiveUp: ((e: FlareError) => void) | undefined;
  let onRetry: ((i: { attempt: number; delayMs: number; error: FlareError }) => void) | undefined;
  const client = createClient<AuthenticatedPeer>({
    ...clientOptionsFromKit(o.kit),
    limits: { maxMessageBytes: RUNTIME_MAX_MESSAGE_BYTES, ...o.limits },
    ...(o.targets === undefined ? {} : { targets: o.targets }),
    authenticate: (c) => auth(c, o.kit),
    ...(o.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: o.connectTimeoutMs }),
    ...(o.logger === undefined ? {} : { logger: o.logger }),
    backoff: { initialMs: o.backoff?.initialMs ?? RUNTIME_DEFAULTS.reconnectInitialMs, maxMs: o.backoff?.maxMs ?? RUNTIME_DEFAULTS.reconnectMaxMs },
    maxAttempts: Infinity,
    retryable: (e) => !isFinal(e) && Date.now() - since < giveUpAfterMs,
  });
  client.on('open', (conn) => {
    const ch = connectionChannel(conn);
    ch.onClose(() => {
      since = Date.now();
    });
    onChannel?.(ch);
  });
  client.on('retry', (i) => onRetry?.(i));
  client.on('giveup', (e) => {
    const gaveUp = isFinal(e)
      ? e
      : new FlareRuntimeError('E_RUNTIME_SERVER_UNREACHABLE', `no connection to the server for ${Math.round((Date.now() - since) / 1000)} s; the last attempt failed with ${e.code}: ${e.message}`, { cause: e });
    onGiveUp?.(gaveUp);
  });
  return {
    onChannel: (h) => {
      onChannel = h;
      if (client.connection !== undefined) h(connectionChannel(client.connection));
    },
    onGiveUp: (h) => {
      onGiveUp = h;
    },
    onRetry: (h) => {
      onRetry = h;
    },
    stop: () => client.stop(),
  };
}
