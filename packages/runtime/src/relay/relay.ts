import { EventEmitter } from 'node:events';
import { AuthError, FlareError, FlareRuntimeError, PkiError, silentLogger, type AuditHook, type Logger } from '@flare/core';
import { checkRelayedLogin, type RelayedLogin } from '@flare/auth';
import type { Crl, CrlStore, Kit } from '@flare/pki';
import { auditor } from '../audit.js';
import { reasonOf } from '../errors.js';
import { clientOptionsFromKit, dial, listen, type Connection, type Header, type ServerEndpoint, type ServerLimits, type Target } from '@flare/transport';
import { RUNTIME_MAX_MESSAGE_BYTES } from '../protocol/network.js';
import { MAX_CRL_FILE_BYTES } from '../server/crl-watch.js';
import { resolveRelayLimits, TokenBucket, type RelayLimits, type ResolvedRelayLimits } from './limits.js';
import { PassThroughGuard } from './pass-through.js';
import { relayPathOf } from './path.js';

/** Options of {@link startRelay}. */
export interface RelayOptions {
  /** The relay's startup kit (type relay): its certificate for mtls on both sides, its upstream address. */
  readonly kit: Kit;
  /** Port sites connect to (the port of their project.yml `connect_to`; 0: any free port). */
  readonly port: number;
  /** Address(es) to bind (default `127.0.0.1`; `0.0.0.0` or the relay's listening_host to serve other hosts). */
  readonly host?: string | readonly string[];
  /** Override the kit's upstream addresses (the server, or the relay above). */
  readonly upstream?: readonly Target[];
  /** Per-site limits (sites at once, upstream message and byte rates). */
  readonly limits?: RelayLimits;
  /** Transport limits of both sides; `maxMessageBytes` defaults to {@link RUNTIME_MAX_MESSAGE_BYTES}. */
  readonly transport?: ServerLimits;
  /** Upstream connect deadline per site login (default 10 s). */
  readonly connectTimeoutMs?: number;
  /**
   * This relay's memory of the newest CRL (@flare/pki's `CrlStore`, persisted in its workspace; default: the
   * kit's CRL only). Logins are checked against its current CRL; a CRL the server hands a carried site (its
   * `welcome`, or a `crl` message) is offered to it, kept only when root-signed and newer (`crl_updated`;
   * an older one `crl_refused` E_CRL_ROLLBACK), and every carried session it newly revokes (the site's own
   * certificate, or the relay's below it) is cut at once (`session_revoked`).
   */
  readonly crls?: Pick<CrlStore, 'accept' | 'current'>;
  /** Where the relay audits the CRLs it takes or refuses and the sessions it cuts. */
  readonly audit?: AuditHook;
  readonly logger?: Logger;
}

/** One site (or relay below) whose session this relay carries. */
export interface RelayedSite {
  readonly name: string;
  /** The signed relay path of its login, nearest the server first. */
  readonly via: readonly string[];
  /** When its session through this relay began (ms since the epoch). */
  readonly since: number;
  /** Messages and payload bytes moved towards the server and towards the site. */
  readonly up: { readonly messages: number; readonly bytes: number };
  readonly down: { readonly messages: number; readonly bytes: number };
}

/** Why a relayed session ended, and who ended it. */
export interface RelayedSiteClosed {
  readonly site: RelayedSite;
  /** The error the side that closed first gave, if any (e.g. E_AUTH_MAC from the server, E_RUNTIME_RELAY_LIMIT here). */
  readonly error?: FlareError;
  /** 'site': the site's side closed first; 'upstream': the server's side (or the relay above) did. */
  readonly by: 'site' | 'upstream';
}

/** Events of a {@link Relay}. */
export interface RelayEvents {
  /** A site logged in through this relay. */
  site: [RelayedSite];
  /** A site's session through this relay ended. */
  closed: [RelayedSiteClosed];
  /** A site's login through this relay failed (its own fault, the server's refusal, or no upstream). */
  refused: [{ readonly error: FlareError; readonly address: string }];
}

/** A running relay in forwarding mode. */
export interface Relay {
  /** The relay's participant name. */
  readonly name: string;
  /** The relays above it, nearest the server first. */
  readonly path: readonly string[];
  /** The port sites connect to. */
  readonly port: number;
  /** The sites whose sessions it carries now. */
  sites(): RelayedSite[];
  /**
   * Takes a CRL (PEM) as if the server had pushed it: kept only when root-signed and newer than this relay's,
   * then every carried session it revokes is cut. What the relay does with each CRL it sees pass down; resolves
   * when it was taken or refused (refusals are audited, never thrown).
   */
  takeCrl(pem: string): Promise<void>;
  on<E extends keyof RelayEvents>(event: E, listener: (...args: RelayEvents[E]) => void): this;
  off<E extends keyof RelayEvents>(event: E, listener: (...args: RelayEvents[E]) => void): this;
  /** Stops listening and closes every relayed session (sites reconnect, through another relay or later). */
  close(): Promise<void>;
}

/** A message as the relay moves it: header, payload, and the trailer the sender's session sealed it with. */
export interface RelayedMessage {
  readonly header: Header;
  readonly payload: Uint8Array;
  readonly trailer: Header | undefined;
}

/** @internal Test hooks: what a hostile relay would do to each message it forwards (the default forwards it). */
export interface RelayHooks {
  readonly forward?: (direction: 'up' | 'down', message: RelayedMessage, site: string) => readonly RelayedMessage[];
}

interface Pair {
  readonly login: RelayedLogin;
  readonly up: Connection<undefined>;
  readonly upGuard: PassThroughGuard;
  readonly downGuard: PassThroughGuard;
}

interface SiteState {
  readonly name: string;
  readonly via: readonly string[];
  /** The serial of the TLS certificate its login arrived with (the site's, or the relay's below). */
  readonly hopSerial: string;
  /** The connection to the site (or relay below): cut here when a newer CRL revokes `hopSerial`. */
  readonly conn: Connection<Pair>;
  readonly since: number;
  readonly up: { messages: number; bytes: number };
  readonly down: { messages: number; bytes: number };
}

/**
 * Starts a relay in forwarding mode (issue #18): sites behind it keep their end-to-end @flare/auth session with
 * the server, and the relay moves each message of that session, with the trailer the session sealed it with,
 * between the site's connection and an upstream connection it opens for that site with its own certificate
 * (mtls on both sides). It holds no session key: it cannot read a sealed message's MAC'd content undetected,
 * forge, drop, reorder or replay one (the far end's session refuses it: E_AUTH_MAC, E_AUTH_OUT_OF_ORDER,
 * E_AUTH_REPLAY), nor place a site elsewhere in the tree (the site signs its relay path; every hop and the
 * server check it: E_AUTH_RELAY_PATH). One upstream connection per site, see docs/relays.md for why.
 *
 * @throws FlareRuntimeError E_RUNTIME_CONFIG for a kit that is not a relay's; TransportError for the port.
 */
export async function startRelay(options: RelayOptions, hooks: RelayHooks = {}): Promise<Relay> {
  const { kit } = options;
  if (kit.participant.type !== 'relay') throw new FlareRuntimeError('E_RUNTIME_CONFIG', `a ${kit.participant.type} kit cannot run a relay (provision a participant of type relay)`);
  if (kit.connectionSecurity !== 'mtls') {
    throw new FlareRuntimeError('E_RUNTIME_CONFIG', `relay '${kit.participant.name}' needs connection_security mtls (its kit says ${kit.connectionSecurity}): it checks who sends each login by its TLS certificate`);
  }
  const name = kit.participant.name;
  const path = relayPathOf(kit);
  const limits: ResolvedRelayLimits = resolveRelayLimits(options.limits);
  const logger = options.logger ?? silentLogger;
  const transport = { maxMessageBytes: RUNTIME_MAX_MESSAGE_BYTES, ...options.transport };
  const upstream = { ...clientOptionsFromKit(kit), ...(options.upstream === undefined ? {} : { targets: options.upstream }) };
  const events = new EventEmitter();
  const live = new Map<Connection<Pair>, SiteState>();
  let logins = 0;
  const audit = auditor(options.audit);
  const crls = options.crls;
  /** The CRL logins are checked against: the newest this relay took, else its kit's. */
  const crlPem = (): string | undefined => crls?.current?.pem ?? kit.crlPem;

  /** Cuts a carried session whose hop certificate `crl` revokes (the site's own, or the relay's below). */
  const cutIfRevoked = (state: SiteState, crl: Crl): boolean => {
    if (!crl.revoked.has(state.hopSerial)) return false;
    const below = state.via[path.length + 1];
    const number = crl.crlNumber?.toString() ?? '?';
    const whose = below === undefined ? `the certificate of '${state.name}'` : `relay '${below}', which '${state.name}' came through,`;
    const msg = `${whose} (serial ${state.hopSerial}) is revoked by CRL number ${number}: relay '${name}' closed the session it carried`;
    // The site below a revoked relay is not revoked itself: it gets a code it retries after.
    const error = below === undefined ? new PkiError('E_CERT_REVOKED', msg) : new FlareRuntimeError('E_RUNTIME_RELAY_REVOKED', msg);
    audit({ action: 'session_revoked', user: state.name, msg, data: { code: error.code, serial: state.hopSerial, crl_number: number, via: [...state.via], ...(below === undefined ? {} : { relay: below }) } });
    logger.warn('cut a carried session: its certificate is revoked', { relay: name, site: state.name, serial: state.hopSerial, crlNumber: number, ...(below === undefined ? {} : { below }) });
    void state.conn.close(error);
    return true;
  };

  let crlQueue: Promise<void> = Promise.resolve();
  const takeCrl = (pem: string): Promise<void> =>
    (crlQueue = crlQueue.then(async () => {
      if (crls === undefined) return;
      try {
        const { crl, changed } = await crls.accept(pem);
        if (!changed) return;
        const n = crl.crlNumber?.toString() ?? '?';
        audit({ action: 'crl_updated', msg: `relay '${name}' took CRL number ${n} from upstream (${crl.revoked.size} revoked)`, data: { crl_number: n, revoked: crl.revoked.size } });
        logger.info('newer CRL from upstream', { relay: name, crlNumber: n });
        for (const state of [...live.values()]) cutIfRevoked(state, crl);
      } catch (e) {
        const { code, message } = reasonOf(e);
        audit({ action: 'crl_refused', msg: `${code}: ${message}`.slice(0, 2000), data: { code } });
        logger.warn('refused a CRL from upstream; the current one stays', { relay: name, code, reason: message });
      }
    }));
  /** A CRL the server hands a carried site (welcome or `crl`: PEM text) is this relay's too. */
  const watchDown = (m: RelayedMessage): void => {
    const t = m.header['t'];
    if ((t !== 'welcome' && t !== 'crl') || m.payload.byteLength === 0 || crls === undefined) return;
    // Bounded before it is decoded: the payload is the server's word until the root's signature is checked.
    if (m.payload.byteLength > MAX_CRL_FILE_BYTES) {
      const message = `a ${t} message carried ${m.payload.byteLength} bytes as a CRL, more than the ${MAX_CRL_FILE_BYTES} a CRL may have`;
      audit({ action: 'crl_refused', msg: `E_CRL_INVALID: ${message}`, data: { code: 'E_CRL_INVALID' } });
      logger.warn('refused a CRL from upstream; the current one stays', { relay: name, code: 'E_CRL_INVALID', reason: message });
      return;
    }
    let pem: string;
    try {
      pem = new TextDecoder('utf-8', { fatal: true }).decode(m.payload);
    } catch {
      pem = ''; // not text: refused as unreadable (E_CRL_INVALID) by the store
    }
    void takeCrl(pem);
  };

  async function relayLogin(down: Connection<Pair>): Promise<Pair> {
    const hello = await down.receive();
    if (hello.trailer !== undefined) throw new AuthError('E_AUTH_NOT_LOGGED_IN', 'an authenticated message arrived on a connection that has not logged in');
    if (hello.payload.length !== 0) throw new AuthError('E_AUTH_HANDSHAKE', 'the login carries an unexpected payload');
    const crl = crlPem();
    const login = checkRelayedLogin(hello.header, down, { relay: name, path, rootCaPem: kit.rootCaPem, ...(crl === undefined ? {} : { crl }) });
    down.identified(login.name);
    if (live.size + logins >= limits.maxSites) throw new FlareRuntimeError('E_RUNTIME_RELAY_LIMIT', `relay '${name}' carries ${limits.maxSites} sites already; '${login.name}' may retry later`);
    const upGuard = new PassThroughGuard();
    const downGuard = new PassThroughGuard();
    logins++;
    try {
      // The login crosses the relay message by message: hello up, welcome down, finished up (the site's first
      // sealed message), ready down. Guards go on each side before its first sealed message, so every trailer
      // after the login is kept and forwarded in order.
      const up = await dial<undefined>({
        ...upstream,
        limits: transport,
        ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
        logger,
        authenticate: async (up) => {
          await up.send(hello.header);
          const welcome = await up.receive();
          await down.send(welcome.header, welcome.payload);
          const finished = await down.receive();
          up.setGuard(upGuard);
          upGuard.willSend(finished.trailer);
          await up.send(finished.header, finished.payload);
          down.setGuard(downGuard);
          const ready = await up.receive();
          downGuard.willSend(upGuard.takeReceived());
          await down.send(ready.header, ready.payload);
          return undefined;
        },
      });
      return { login, up, upGuard, downGuard };
    } finally {
      logins--;
    }
  }

  const server: ServerEndpoint<Pair> = await listen<Pair>({
    security: 'mtls',
    tls: { certPem: kit.certPem, privateKey: kit.privateKey, caPem: kit.rootCaPem },
    port: options.port,
    host: options.host ?? '127.0.0.1',
    limits: transport,
    authenticate: relayLogin,
    logger,
  });
  server.on('refused', (r) => {
    logger.warn('relayed login refused', { remote: r.remote.address, code: r.error.code, reason: r.error.message });
    events.emit('refused', { error: r.error, address: r.remote.address });
  });
  server.on('connection', (down: Connection<Pair>) => {
    const { login, up, upGuard, downGuard } = down.auth;
    const state: SiteState = { name: login.name, via: login.via, hopSerial: login.hopSerial, conn: down, since: Date.now(), up: { messages: 0, bytes: 0 }, down: { messages: 0, bytes: 0 } };
    live.set(down, state);
    // A CRL taken while this login was on its way up was not checked against it (the upstream side follows the cut).
    const newest = crls?.current;
    if (newest !== undefined) cutIfRevoked(state, newest);
    logger.info('site connected through relay', { relay: name, site: login.name, via: login.via.join('.') });
    events.emit('site', snapshot(state));
    const messages = new TokenBucket(limits.maxMessagesPerSecond, limits.burstSeconds);
    const bytes = new TokenBucket(limits.maxBytesPerSecond, limits.burstSeconds);
    const overLimit = (n: number): FlareError | undefined =>
      messages.take(1) && bytes.take(n) ? undefined : new FlareRuntimeError('E_RUNTIME_RELAY_LIMIT', `'${login.name}' sent more than relay '${name}' allows per second (${limits.maxMessagesPerSecond} messages, ${limits.maxBytesPerSecond} bytes)`);
    const forward = hooks.forward === undefined ? undefined : (m: RelayedMessage, d: 'up' | 'down'): readonly RelayedMessage[] => hooks.forward!(d, m, login.name);
    void pump(down, downGuard, up, upGuard, state.up, overLimit, forward && ((m) => forward(m, 'up')));
    void pump(up, upGuard, down, downGuard, state.down, () => undefined, forward && ((m) => forward(m, 'down')), watchDown);
    let first: RelayedSiteClosed['by'] | undefined;
    // Whichever side closes first closes the other with its reason; a refusal the far end sealed is passed on
    // sealed (the relay forwards the goodbye's trailer), so the near end knows it is authentic.
    const follow = (from: Connection<unknown>, fromGuard: PassThroughGuard, to: Connection<unknown>, toGuard: PassThroughGuard, by: RelayedSiteClosed['by']): void => {
      void from.closed.then(async (info) => {
        first ??= by;
        const goodbye = fromGuard.goodbye;
        if (goodbye !== undefined && info.error?.code === goodbye.code) toGuard.forwardGoodbye(goodbye.trailer);
        await to.close(info.error);
        if (first === by) {
          live.delete(down);
          logger.info('relayed session ended', { relay: name, site: login.name, by, ...(info.error === undefined ? {} : { code: info.error.code }) });
          events.emit('closed', { site: snapshot(state), by, ...(info.error === undefined ? {} : { error: info.error }) });
        }
      });
    };
    follow(down, downGuard, up, upGuard, 'site');
    follow(up, upGuard, down, downGuard, 'upstream');
  });

  const relay: Relay = {
    name,
    path,
    port: server.port,
    sites: () => [...live.values()].map(snapshot),
    takeCrl,
    on(event, listener) {
      events.on(event, listener as (...args: unknown[]) => void);
      return relay;
    },
    off(event, listener) {
      events.off(event, listener as (...args: unknown[]) => void);
      return relay;
    },
    async close() {
      await server.close();
      await Promise.all([...live.keys()].map((c) => c.close()));
    },
  };
  return relay;
}

/**
 * Moves messages from one side to the other, each with the trailer its sender's session sealed it with, one
 * at a time: the next is read only once the previous one is handed to the other side's socket (backpressure).
 */
async function pump(
  from: Connection<unknown>,
  fromGuard: PassThroughGuard,
  to: Connection<unknown>,
  toGuard: PassThroughGuard,
  count: { messages: number; bytes: number },
  overLimit: (bytes: number) => FlareError | undefined,
  forward: ((m: RelayedMessage) => readonly RelayedMessage[]) | undefined,
  watch?: (m: RelayedMessage) => void,
): Promise<void> {
  for (;;) {
    let m;
    try {
      m = await from.receive();
    } catch {
      return; // closed: `follow` passes the reason on
    }
    const limit = overLimit(m.payload.length);
    if (limit !== undefined) {
      await from.close(limit);
      return;
    }
    const message: RelayedMessage = { header: m.header, payload: m.payload, trailer: fromGuard.takeReceived() };
    watch?.(message);
    try {
      for (const out of forward === undefined ? [message] : forward(message)) {
        toGuard.willSend(out.trailer);
        await to.send(out.header, out.payload);
        count.messages++;
        count.bytes += out.payload.length;
      }
    } catch (e) {
      await from.close(e instanceof FlareError ? e : new FlareRuntimeError('E_RUNTIME_PROTOCOL', 'the relay could not forward a message', { cause: e }));
      return;
    }
  }
}

function snapshot(s: SiteState): RelayedSite {
  return { name: s.name, via: s.via, since: s.since, up: { ...s.up }, down: { ...s.down } };
}

