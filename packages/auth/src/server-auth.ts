import { randomBytes } from 'node:crypto';
import { AuthError, FlareError, PkiError, silentLogger, type JsonValue, type Logger } from '@flare/core';
import { verifyCertificate } from '@flare/pki';
import type { AuthChannel, AuthHeader } from './channel.js';
import type { AuthKit } from './kit.js';
import { deriveEpochKeys } from './key-schedule.js';
import { NonceCache } from './nonce-cache.js';
import { b64u, CONTROL, HELLO, helloSigningInput, parseMessage, transcriptHash, welcomeSigningInput } from './protocol.js';
import { checkRelayHop } from './relay-path.js';
import { AuthSession, type Peer, type Session } from './session.js';
import { SessionStore } from './session-store.js';
import { checkKeyPair, derFingerprint, signWithKit, verifyWithKey } from './signature.js';
import { EXPORTER_LABEL } from './channel-binding.js';
import { AuthEmitter, type AuthEventSource } from './events.js';
import { ephemeral, sharedSecret } from './x25519.js';

/** Site credentials a client sent with its login (e.g. `{ oidc: '<JWT>' }`), covered by the login signature. */
export type LoginCredentials = { readonly [key: string]: JsonValue };

/**
 * A site's extra check at login, after the certificate and signature verified: throw a FlareError (e.g. a
 * PolicyError from an OIDC authenticator) to refuse; its code is sent to the client.
 */
export type AuthorizeLogin = (peer: Peer, credentials: LoginCredentials | undefined, context: { readonly sessionId: string }) => void | Promise<void>;

/** Options of {@link createServerAuth}. */
export interface ServerAuthOptions {
  /** The server's kit: its certificate and key sign the welcome; its root CA and CRL check clients. */
  readonly kit: AuthKit;
  /** The current CRL (PEM), read at every login so a new CRL applies without restart (default: the kit's). */
  readonly crl?: () => string | undefined;
  /** Participant types that may log in (default client and admin). */
  readonly allowTypes?: ReadonlyArray<Peer['type']>;
  /** Session lifetime (default 1 h); clients renew before it ends. */
  readonly sessionTtlMs?: number;
  /** Largest accepted clock difference for logins and messages (default 120 s). */
  readonly maxSkewMs?: number;
  /**
   * TLS channel binding: 'auto' (default) binds when the client asks and this hop is TLS; 'require' refuses a
   * client that does not bind over TLS; 'off' never binds (a TLS-terminating proxy in front of this server).
   */
  readonly channelBinding?: 'auto' | 'require' | 'off';
  readonly authorizeLogin?: AuthorizeLogin;
  /**
   * Live sessions one participant may hold (default: 1 for sites, relays and servers, 4 for admins, whose
   * tools may run side by side). A newer login replaces the oldest session beyond it, which closes with
   * E_AUTH_SESSION_REPLACED (a `replaced` event): one stolen or duplicated kit cannot pile up sessions, and a
   * site that reconnects before the server noticed its old connection died is not refused. A number applies
   * to every type.
   */
  readonly maxSessionsPerParticipant?: number | { readonly [T in Peer['type']]?: number };
  /** Where refusals and replacements are logged (default: nowhere; they are also events). */
  readonly logger?: Logger;
  /** Clock (default Date.now); inject in tests. */
  readonly now?: () => number;
}

/** Sessions per participant when not configured (see {@link ServerAuthOptions.maxSessionsPerParticipant}). */
export const DEFAULT_SESSIONS_PER_PARTICIPANT: { readonly [T in Peer['type']]: number } = { client: 1, relay: 1, server: 1, admin: 4 };

/** The server side of the login: accepts connections into sessions. Events: `refused`, `replaced`. */
export interface ServerAuth extends AuthEventSource {
  /**
   * Runs the login on a new connection (pass it as the transport's `authenticate` hook) and returns the
   * session, which is then installed as the connection's guard.
   *
   * @throws PkiError for the client certificate (E_CERT_UNTRUSTED, E_CERT_EXPIRED, E_CERT_NOT_YET_VALID,
   *   E_CERT_REVOKED, E_CERT_NAME_MISMATCH, E_CERT_WRONG_TYPE); AuthError E_AUTH_HANDSHAKE, E_AUTH_NOT_LOGGED_IN,
   *   E_AUTH_STALE, E_AUTH_SIGNATURE, E_AUTH_REPLAY, E_AUTH_TLS_IDENTITY, E_AUTH_RELAY_PATH, E_AUTH_CHANNEL_BINDING,
   *   E_AUTH_SESSION_REVOKED, E_AUTH_REFUSED, or the code of the authorizeLogin hook.
   */
  accept(channel: AuthChannel): Promise<Session>;
  /** Live sessions; revoke a session or a participant here. */
  readonly sessions: SessionStore;
}

/**
 * Creates the server side of the login handshake from a server kit.
 *
 * @example
 * ```ts
 * const auth = createServerAuth({ kit });
 * const server = await listen<Session>({ ...serverOptionsFromKit(kit), authenticate: (c) => auth.accept(c) });
 * server.on('connection', (c) => console.log(c.auth.peer.name));
 * ```
 */
export function createServerAuth(options: ServerAuthOptions): ServerAuth {
  const { kit } = options;
  checkKeyPair(kit.certPem, kit.privateKey);
  const now = options.now ?? Date.now;
  const maxSkewMs = options.maxSkewMs ?? 120_000;
  const ttlMs = options.sessionTtlMs ?? 3_600_000;
  const allowTypes = options.allowTypes ?? ['client', 'admin'];
  const cbMode = options.channelBinding ?? 'auto';
  const nonces = new NonceCache(2 * maxSkewMs);
  const sessions = new SessionStore();
  const logger = options.logger ?? silentLogger;
  const events = new AuthEmitter(logger);
  const limit = sessionLimits(options.maxSessionsPerParticipant);

  async function accept(channel: AuthChannel): Promise<Session> {
    const first = await channel.receive();
    if (first.trailer !== undefined) throw new AuthError('E_AUTH_NOT_LOGGED_IN', 'an authenticated message arrived on a connection that has not logged in');
    if (first.header[CONTROL] !== 'hello') throw new AuthError('E_AUTH_NOT_LOGGED_IN', 'the first message on a connection must be the login');
    if (first.payload.length !== 0) throw new AuthError('E_AUTH_HANDSHAKE', 'the login carries an unexpected payload');
    const hello = parseMessage(HELLO, first.header, 'login');
    const t = now();
    if (Math.abs(t - hello.ts) > maxSkewMs) throw new AuthError('E_AUTH_STALE', `the login timestamp is ${Math.round((t - hello.ts) / 1000)} s away from the server clock`);
    const crl = options.crl ? options.crl() : kit.crlPem;
    // Chain to the root, validity, revocation, and CN = the claimed name (pki's checks, in that order).
    const cert = verifyCertificate(hello.cert, { rootCaPem: kit.rootCaPem, at: new Date(t), expectedName: hello.name, ...(crl !== undefined ? { crl } : {}) });
    if (!allowTypes.includes(cert.type)) throw new PkiError('E_CERT_WRONG_TYPE', `a ${cert.type} certificate cannot log in to this server`);
    if (!verifyWithKey(cert.publicKey, helloSigningInput(first.header), Buffer.from(hello.sig, 'base64url'))) {
      throw new AuthError('E_AUTH_SIGNATURE', `the login of '${cert.name}' is not signed by its certificate's key`);
    }
    if (!nonces.add(hello.nonce, t)) throw new AuthError('E_AUTH_REPLAY', `a login of '${cert.name}' was replayed`);
    // Proven by a signature over a fresh nonce: no longer an anonymous connection.
    channel.identified?.(cert.name);
    let relaySerial: string | undefined;
    if (hello.via !== undefined) {
      // Relayed: this hop's TLS peer must be the relay nearest the server on the path the client signed.
      relaySerial = checkRelayHop(channel, hello.via[0]!, cert.name, { rootCaPem: kit.rootCaPem, at: new Date(t), ...(crl !== undefined ? { crl } : {}) });
      if (hello.cb) throw new AuthError('E_AUTH_CHANNEL_BINDING', `'${cert.name}' came through relay '${hello.via[0]}' but binds to TLS, which ends at the relay`);
    } else if (channel.tls?.peerCertificatePem !== undefined && derFingerprint(channel.tls.peerCertificatePem) !== cert.fingerprint) {
      // cert.fingerprint is the SHA-256 of exactly the certificate verifyCertificate checked.
      throw new AuthError('E_AUTH_TLS_IDENTITY', `'${cert.name}' logged in with a certificate other than its TLS certificate`);
    }
    sessions.assertAllowed(cert.name);
    const bind = hello.cb && cbMode !== 'off';
    if (hello.cb && channel.tls === undefined) throw new AuthError('E_AUTH_CHANNEL_BINDING', 'the client binds to TLS but this server hop is not TLS (a TLS-terminating proxy?)');
    if (hello.cb && cbMode === 'off') throw new AuthError('E_AUTH_CHANNEL_BINDING', 'the client binds to TLS but this server has channel binding off');
    if (!hello.cb && cbMode === 'require' && channel.tls !== undefined) throw new AuthError('E_AUTH_CHANNEL_BINDING', 'this server requires TLS channel binding');
    const peer: Peer = { name: cert.name, org: cert.org, type: cert.type, ...(cert.role !== undefined ? { role: cert.role } : {}), ...(hello.via !== undefined ? { via: hello.via } : {}) };
    const sid = b64u(randomBytes(16));
    if (options.authorizeLogin !== undefined) {
      try {
        await options.authorizeLogin(peer, hello.cred, { sessionId: sid });
      } catch (e) {
        if (e instanceof FlareError) throw e;
        throw new AuthError('E_AUTH_REFUSED', `the site refused the login of '${peer.name}'`, { cause: e });
      }
    }

    const eph = ephemeral();
    const expiresAt = t + ttlMs;
    const unsigned: AuthHeader = {
      [CONTROL]: 'welcome', v: 2, name: kit.participant.name, cert: kit.certPem, nonce: b64u(randomBytes(32)), eph: eph.publicB64u,
      sid, exp: expiresAt, ts: t, cb: bind, sig: '',
    };
    const welcome: AuthHeader = { ...unsigned, sig: b64u(signWithKit(kit.privateKey, welcomeSigningInput(first.header, unsigned))) };
    const th = transcriptHash(first.header, welcome);
    const binding = bind ? channel.tls!.exportKeyingMaterial(32, EXPORTER_LABEL) : undefined;
    const keys = deriveEpochKeys(sharedSecret(eph.privateKey, hello.eph), th, binding);
    const session = new AuthSession({ id: sid, side: 'server', peer, peerSerial: cert.serial, ...(relaySerial === undefined ? {} : { relaySerial }), transcriptHash: th, keys, expiresAt, channelBinding: binding, channel, maxSkewMs, now, ttlMs, events, logger });
    await channel.send(welcome);

    // Key confirmation: the client's first sealed message must open under the keys both sides derived.
    const finished = await channel.receive();
    if (finished.header[CONTROL] !== 'finished' || Object.keys(finished.header).length !== 1 || finished.payload.length !== 0) {
      throw new AuthError('E_AUTH_HANDSHAKE', 'expected the login confirmation');
    }
    try {
      session.open(finished.header, 0, session.payloadDigest(0, false).digest(), finished.trailer);
    } catch (e) {
      if (bind && e instanceof AuthError && e.code === 'E_AUTH_MAC') {
        throw new AuthError('E_AUTH_CHANNEL_BINDING', 'the client derived different keys over this TLS connection: TLS is not end-to-end', { cause: e });
      }
      throw e;
    }
    channel.setGuard(session);
    session.established();
    // The newest login wins: older sessions of this participant beyond its limit close (oldest first).
    const live = sessions.sessionsOf(peer.name);
    for (const old of live.slice(0, Math.max(0, live.length + 1 - limit(peer.type)))) {
      if (!(old instanceof AuthSession)) continue;
      logger.warn('a newer login replaced a session', { peer: peer.name, session: old.id, by: sid });
      sessions.delete(old.id);
      old.end(new AuthError('E_AUTH_SESSION_REPLACED', `a newer login of '${peer.name}' replaced this session`));
      events.emit('replaced', { peer, sessionId: old.id, replacedBy: sid });
    }
    sessions.add(session, channel.closed);
    await channel.send({ [CONTROL]: 'ready' });
    return session;
  }

  const auth: ServerAuth = {
    accept,
    sessions,
    on(event, listener) {
      events.on(event, listener as (...args: unknown[]) => void);
      return auth;
    },
    off(event, listener) {
      events.off(event, listener as (...args: unknown[]) => void);
      return auth;
    },
  };
  return auth;
}

function sessionLimits(option: ServerAuthOptions['maxSessionsPerParticipant']): (type: Peer['type']) => number {
  const table = typeof option === 'number' ? { client: option, relay: option, server: option, admin: option } : { ...DEFAULT_SESSIONS_PER_PARTICIPANT, ...option };
  for (const [type, n] of Object.entries(table)) {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`"maxSessionsPerParticipant.${type}" expected a positive integer, got ${n}`);
  }
  return (type) => table[type];
}
