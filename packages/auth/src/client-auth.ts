import { randomBytes } from 'node:crypto';
import { AuthError, silentLogger, type Logger } from '@flare/core';
import { verifyCertificate } from '@flare/pki';
import type { AuthChannel, AuthHeader } from './channel.js';
import { EXPORTER_LABEL } from './channel-binding.js';
import { AuthEmitter, type AuthEventSource } from './events.js';
import type { AuthKit } from './kit.js';
import { deriveEpochKeys } from './key-schedule.js';
import { b64u, CONTROL, helloSigningInput, parseMessage, transcriptHash, WELCOME, welcomeSigningInput } from './protocol.js';
import type { LoginCredentials } from './server-auth.js';
import { AuthSession, type Peer, type Session } from './session.js';
import { checkKeyPair, signWithKit, verifyWithKey } from './signature.js';
import { ephemeral, sharedSecret } from './x25519.js';

/** Options of {@link createClientAuth}. */
export interface ClientAuthOptions {
  /** A client or admin kit: its certificate and key sign the login; the server's name is pinned from it. */
  readonly kit: AuthKit;
  /** Site credentials to send with each login (e.g. a fresh OIDC token), covered by the login signature. */
  readonly credentials?: () => LoginCredentials | undefined | Promise<LoginCredentials | undefined>;
  /**
   * TLS channel binding: 'auto' (default) binds when this hop is TLS and the kit has no custom_ca_cert (with a
   * TLS-terminating proxy, TLS is not end-to-end); 'off' never binds.
   */
  readonly channelBinding?: 'auto' | 'off';
  /**
   * The relays this client reaches the server through, nearest the server first (the kit's fqsn without its
   * own name, e.g. `['relay-1']`). Signed into the hello, so no relay can move the client elsewhere; each
   * relay and the server check their hop against it (E_AUTH_RELAY_PATH). TLS ends at the first relay, so
   * channel binding is off on a relayed login; the session's MACs are still end to end.
   */
  readonly via?: readonly string[];
  /**
   * The certificate type of whom this login authenticates (default `server`): `relay` for a site (or relay)
   * below a relay in aggregate mode, whose kit names that relay as its server identity.
   */
  readonly serverType?: 'server' | 'relay';
  /** Renew at this fraction of the session lifetime (default 0.8); false turns automatic renewal off. */
  readonly renewAt?: number | false;
  /** Largest accepted clock difference (default 120 s). */
  readonly maxSkewMs?: number;
  /** Where refused messages are logged (default: nowhere; they are also `refused` events). */
  readonly logger?: Logger;
  readonly now?: () => number;
}

/** The client side of the login. Events: `refused` (a message of an established session refused, by either side). */
export interface ClientAuth extends AuthEventSource {
  /**
   * Logs in on a new connection (pass it as the transport's `authenticate` hook) and returns the session.
   *
   * @throws PkiError for the server certificate (E_CERT_UNTRUSTED, E_CERT_EXPIRED, E_CERT_NOT_YET_VALID,
   *   E_CERT_REVOKED, E_CERT_NAME_MISMATCH, E_CERT_WRONG_TYPE); AuthError E_AUTH_HANDSHAKE, E_AUTH_SIGNATURE,
   *   E_AUTH_STALE, E_AUTH_CHANNEL_BINDING; or the code the server refused the login with.
   */
  login(channel: AuthChannel): Promise<Session>;
}

/**
 * Creates the client side of the login handshake from a client or admin kit. The server must present a
 * server certificate from the project root whose name is the kit's server name.
 *
 * @example
 * ```ts
 * const auth = createClientAuth({ kit });
 * const conn = await dial<Session>({ ...clientOptionsFromKit(kit), authenticate: (c) => auth.login(c) });
 * console.log(conn.auth.peer.name, conn.auth.id);
 * ```
 */
export function createClientAuth(options: ClientAuthOptions): ClientAuth {
  const { kit } = options;
  checkKeyPair(kit.certPem, kit.privateKey);
  const now = options.now ?? Date.now;
  const maxSkewMs = options.maxSkewMs ?? 120_000;
  const renewAt = options.renewAt === false ? undefined : (options.renewAt ?? 0.8);
  if (renewAt !== undefined && !(renewAt > 0 && renewAt < 1)) throw new RangeError(`"renewAt" expected a fraction in (0, 1), got ${renewAt}`);
  const logger = options.logger ?? silentLogger;
  const events = new AuthEmitter(logger);

  async function login(channel: AuthChannel): Promise<Session> {
    const via = options.via !== undefined && options.via.length > 0 ? [...options.via] : undefined;
    const bind = via === undefined && (options.channelBinding ?? 'auto') === 'auto' && channel.tls !== undefined && kit.customCaPem === undefined;
    const eph = ephemeral();
    const cred = await options.credentials?.();
    const unsigned: AuthHeader = {
      [CONTROL]: 'hello', v: 2, name: kit.participant.name, cert: kit.certPem, nonce: b64u(randomBytes(32)), eph: eph.publicB64u,
      ts: now(), cb: bind, ...(cred !== undefined ? { cred } : {}), ...(via !== undefined ? { via } : {}), sig: '',
    };
    const hello: AuthHeader = { ...unsigned, sig: b64u(signWithKit(kit.privateKey, helloSigningInput(unsigned))) };
    await channel.send(hello);

    const answer = await channel.receive();
    if (answer.trailer !== undefined || answer.payload.length !== 0) throw new AuthError('E_AUTH_HANDSHAKE', 'the server answered the login with something else');
    const welcome = parseMessage(WELCOME, answer.header, 'login answer');
    const t = now();
    // The server is who the kit says: a server certificate from this root, named as the kit's server.
    const cert = verifyCertificate(welcome.cert, {
      rootCaPem: kit.rootCaPem, at: new Date(t), expectedType: options.serverType ?? 'server', expectedName: kit.server.name,
      ...(kit.crlPem !== undefined ? { crl: kit.crlPem } : {}),
    });
    if (!verifyWithKey(cert.publicKey, welcomeSigningInput(hello, answer.header), Buffer.from(welcome.sig, 'base64url'))) {
      throw new AuthError('E_AUTH_SIGNATURE', `the login answer is not signed by the key of '${cert.name}'`);
    }
    if (Math.abs(t - welcome.ts) > maxSkewMs) throw new AuthError('E_AUTH_STALE', `the server clock is ${Math.round((welcome.ts - t) / 1000)} s away from this clock`);
    if (welcome.cb !== bind) throw new AuthError('E_AUTH_CHANNEL_BINDING', 'the server did not agree to the TLS channel binding this client asked for');
    const peer: Peer = { name: cert.name, org: cert.org, type: cert.type, ...(cert.role !== undefined ? { role: cert.role } : {}) };
    const th = transcriptHash(hello, answer.header);
    const binding = bind ? channel.tls!.exportKeyingMaterial(32, EXPORTER_LABEL) : undefined;
    const keys = deriveEpochKeys(sharedSecret(eph.privateKey, welcome.eph), th, binding);
    const session = new AuthSession({
      id: welcome.sid, side: 'client', peer, peerSerial: cert.serial, transcriptHash: th, keys, expiresAt: welcome.exp, channelBinding: binding, channel, maxSkewMs, now, renewAt, events, logger,
    });
    channel.setGuard(session);
    await channel.send({ [CONTROL]: 'finished' });
    await Promise.race([
      session.ready,
      channel.closed.then(({ error }): never => {
        throw error ?? new AuthError('E_AUTH_HANDSHAKE', 'the server closed the connection during login');
      }),
    ]);
    return session;
  }

  const auth: ClientAuth = {
    login,
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
