import { randomBytes } from 'node:crypto';
import { AuthError, silentLogger, type FlareError, type Identity, type Logger } from '@flare/core';
import type { AuthChannel, AuthGuard, AuthHeader } from './channel.js';
import type { AuthEventSink } from './events.js';
import { payloadDigest as digestFor, type PayloadDigest } from './payload-digest.js';
import { deriveEpochKeys, exportKeyingMaterial, type EpochKeys } from './key-schedule.js';
import { macEquals, messageMac } from './mac.js';
import { b64u, CONTROL, fromB64u, parseMessage, renewalHash, RENEW, RENEWED, TRAILER, type Trailer } from './protocol.js';
import { ephemeral, sharedSecret, type Ephemeral } from './x25519.js';

/**
 * Who is on the other end, as the login authenticated it (from the certificate, never from a message field):
 * @flare/core's one {@link Identity} shape, plus the relays a relayed login came through.
 */
export type Peer = Identity & {
  /** The relays the peer's login came through, nearest the server first (its signed hello; checked against the hop's TLS certificate). */
  readonly via?: readonly string[];
};

/**
 * An authenticated session on one connection. It seals every message it sends and opens every message it
 * receives (installed as the connection's guard by the login): MAC, session binding, sequence, timestamp and
 * expiry are checked before a message is delivered. `seal` and `open` are that guard (the login installs it;
 * applications do not call them).
 */
export interface Session extends AuthGuard {
  /** Random session id (base64url, 16 bytes). */
  readonly id: string;
  readonly side: 'client' | 'server';
  readonly peer: Peer;
  /**
   * The serial of the certificate the peer logged in with (lowercase hex, as @flare/pki's CRL lists it), from
   * the verified certificate: a newer CRL that lists it should end this session (the runtime does).
   */
  readonly peerSerial?: string;
  /**
   * For a login that came through relays: the serial of the verified TLS certificate of the relay that handed
   * it to this side (the first relay of the peer's signed path). A newer CRL that lists it should end this
   * session too: everything a revoked relay carries is cut (the runtime does).
   */
  readonly relaySerial?: string;
  /** SHA-256 of the signed login messages (both certificates, nonces, ephemeral keys). */
  readonly transcriptHash: Uint8Array;
  /** When the current keys stop being accepted (renewal moves it). */
  readonly expiresAt: Date;
  /** Key epoch: 0 after login, +1 per renewal. */
  readonly epoch: number;
  /** Whether the login bound the session to the TLS connection (exporter channel binding). */
  readonly channelBound: boolean;
  readonly revoked: boolean;
  /**
   * Keying material for another protocol bound to this session, e.g. an attestation nonce: HKDF-derived from
   * the login's exporter secret, distinct per label and length, equal on both sides, stable across renewals.
   *
   * @example
   * ```ts
   * const nonce = session.exportKeyingMaterial('flare-ts/cc-attest nonce', 64);
   * ```
   */
  exportKeyingMaterial(label: string, length: number): Uint8Array;
  /** Renews the session keys (client side; fresh X25519) without dropping messages in flight. */
  renew(): Promise<void>;
  /** Ends the session: nothing more is sealed or opened, and the connection closes with E_AUTH_SESSION_REVOKED. */
  revoke(): void;
}

/** @internal Construction parameters of a session. */
export interface SessionInit {
  readonly id: string;
  readonly side: 'client' | 'server';
  readonly peer: Peer;
  /** The verified certificate's serial (see {@link Session.peerSerial}). */
  readonly peerSerial?: string;
  /** The serial of the relay hop's verified TLS certificate (see {@link Session.relaySerial}). */
  readonly relaySerial?: string;
  readonly transcriptHash: Uint8Array;
  readonly keys: EpochKeys;
  readonly expiresAt: number;
  readonly channelBinding: Uint8Array | undefined;
  readonly channel: AuthChannel;
  readonly maxSkewMs: number;
  readonly now: () => number;
  /** Server: lifetime granted at each renewal. */
  readonly ttlMs?: number;
  /** Client: renew automatically at this fraction of the lifetime (undefined: never). */
  readonly renewAt?: number | undefined;
  /** Where refusals of messages in the established session are reported. */
  readonly events?: AuthEventSink;
  readonly logger?: Logger;
}

// The refusals open() makes inside an established session, which a peer may report in its goodbye.
const MESSAGE_REFUSALS: ReadonlySet<string> = new Set([
  'E_AUTH_MAC', 'E_AUTH_REPLAY', 'E_AUTH_OUT_OF_ORDER', 'E_AUTH_SESSION_BINDING', 'E_AUTH_STALE', 'E_AUTH_SESSION_EXPIRED', 'E_AUTH_HANDSHAKE', 'E_AUTH_RENEWAL',
]);

interface Epoch {
  readonly keys: EpochKeys;
  readonly expiresAt: number;
  readonly transcript: Uint8Array;
}

/** @internal The session implementation and the channel guard. */
export class AuthSession implements Session, AuthGuard {
  readonly id: string;
  readonly side: 'client' | 'server';
  readonly peer: Peer;
  readonly peerSerial?: string;
  readonly relaySerial?: string;
  readonly transcriptHash: Uint8Array;
  readonly #exporter: Uint8Array;
  readonly #payloadKeys: { readonly c2s: Uint8Array; readonly s2c: Uint8Array };
  readonly #epochs = new Map<number, Epoch>();
  #sendEpoch = 0;
  /** Epochs the receiver still accepts: the current one, and during a renewal the next. */
  #recvEpochs: number[] = [0];
  #sendSeq = 0;
  #recvSeq = 0;
  #revoked = false;
  /** True once the login completed: refusals after that are reported as events. */
  #established = false;
  #renewing: { eph: Ephemeral; header: AuthHeader; resolve: () => void; reject: (e: FlareError) => void; promise: Promise<void> } | undefined;
  /** Server: the epoch to switch to once the `renewed` message has been sealed. */
  #switchAfterSeal: number | undefined;
  #ready: { resolve: () => void; promise: Promise<void> };
  #renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly init: SessionInit) {
    this.id = init.id;
    this.side = init.side;
    this.peer = init.peer;
    if (init.peerSerial !== undefined) this.peerSerial = init.peerSerial;
    if (init.relaySerial !== undefined) this.relaySerial = init.relaySerial;
    this.transcriptHash = init.transcriptHash;
    this.#exporter = init.keys.exporter;
    this.#payloadKeys = { c2s: init.keys.payloadC2s, s2c: init.keys.payloadS2c };
    this.#epochs.set(0, { keys: init.keys, expiresAt: init.expiresAt, transcript: init.transcriptHash });
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#ready = { resolve, promise };
    this.#scheduleRenewal();
    void init.channel.closed.then((info) => {
      this.#stopTimers();
      // The peer refused one of our messages and said so in a goodbye this session verified.
      const error = info.error;
      if (this.#established && info.by === 'remote' && info.authenticated === true && error !== undefined && MESSAGE_REFUSALS.has(error.code)) {
        this.#report(error, 'peer');
      }
    });
  }

  /** @internal The login completed (server: the confirmation opened; client: `ready` arrived). */
  established(): void {
    this.#established = true;
  }

  #report(error: FlareError, by: 'local' | 'peer'): void {
    const { peer, id } = this;
    (this.init.logger ?? silentLogger).warn(by === 'local' ? 'refused a message from the peer' : 'the peer refused a message from this side', {
      peer: peer.name, session: id, code: error.code, reason: error.message,
    });
    this.init.events?.emit('refused', { peer, sessionId: id, code: error.code, message: error.message, by });
  }

  get expiresAt(): Date {
    return new Date(this.#epochs.get(this.#sendEpoch)!.expiresAt);
  }

  get epoch(): number {
    return this.#sendEpoch;
  }

  get channelBound(): boolean {
    return this.init.channelBinding !== undefined;
  }

  get revoked(): boolean {
    return this.#revoked;
  }

  /** @internal Resolves when the server's `ready` arrived (client side). */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  exportKeyingMaterial(label: string, length: number): Uint8Array {
    return exportKeyingMaterial(this.#exporter, label, length);
  }

  revoke(): void {
    this.end(new AuthError('E_AUTH_SESSION_REVOKED', 'the session was revoked'));
  }

  /**
   * @internal Ends the session with `error`'s code: the channel closes first (a transport seals the refusal in
   * a goodbye with this session's keys, so the peer knows it is authentic), then nothing more is sealed.
   */
  end(error: AuthError): void {
    if (this.#revoked) return;
    this.#stopTimers();
    void this.init.channel.close(error);
    this.#revoked = true;
  }

  payloadDigest(length: number, sending: boolean): PayloadDigest {
    const clientToServer = (this.side === 'client') === sending;
    return digestFor(clientToServer ? this.#payloadKeys.c2s : this.#payloadKeys.s2c, length);
  }

  seal(header: AuthHeader, payloadLength: number, payloadDigest: Uint8Array): AuthHeader {
    if (this.#revoked) throw new AuthError('E_AUTH_SESSION_REVOKED', 'the session was revoked');
    const now = this.init.now();
    const epoch = this.#epochs.get(this.#sendEpoch)!;
    if (now > epoch.expiresAt) throw new AuthError('E_AUTH_SESSION_EXPIRED', `the session expired at ${new Date(epoch.expiresAt).toISOString()}`);
    const key = this.side === 'client' ? epoch.keys.c2s : epoch.keys.s2c;
    const trailer: Trailer = { sid: this.id, seq: this.#sendSeq, ts: now, e: this.#sendEpoch, mac: '' };
    const mac = messageMac(key, { sid: this.id, seq: trailer.seq, ts: now, epoch: trailer.e, header, payloadLength, payloadDigest });
    this.#sendSeq++;
    // The server switches its sending keys right after the message that announces them (renewed), in send order.
    if (this.#switchAfterSeal !== undefined && header[CONTROL] === 'renewed') {
      this.#sendEpoch = this.#switchAfterSeal;
      this.#switchAfterSeal = undefined;
    }
    return { ...trailer, mac: b64u(mac) };
  }

  open(header: AuthHeader, payloadLength: number, payloadDigest: Uint8Array, trailerRaw: AuthHeader | undefined): boolean {
    try {
      return this.#open(header, payloadLength, payloadDigest, trailerRaw);
    } catch (error) {
      // Before the login completed, a refusal is the login's failure (reported by the login); after it, tampering.
      if (this.#established && error instanceof AuthError) this.#report(error, 'local');
      throw error;
    }
  }

  #open(header: AuthHeader, payloadLength: number, payloadDigest: Uint8Array, trailerRaw: AuthHeader | undefined): boolean {
    const parsed = TRAILER.safeParse(trailerRaw);
    if (!parsed.success) {
      throw new AuthError('E_AUTH_MAC', trailerRaw === undefined ? 'a message arrived without authentication' : 'a message carries a malformed authentication trailer');
    }
    const t = parsed.data;
    // Checks run in this order so that nothing about the session is revealed before the MAC verified.
    if (t.sid !== this.id) throw new AuthError('E_AUTH_SESSION_BINDING', 'a message names a session that is not the one established on this connection');
    if (this.#revoked) throw new AuthError('E_AUTH_SESSION_REVOKED', 'the session was revoked');
    const epoch = this.#recvEpochs.includes(t.e) ? this.#epochs.get(t.e) : undefined;
    if (epoch === undefined) throw new AuthError('E_AUTH_MAC', `a message uses key epoch ${t.e}, which this session does not accept`);
    const key = this.side === 'client' ? epoch.keys.s2c : epoch.keys.c2s;
    const expected = messageMac(key, { sid: t.sid, seq: t.seq, ts: t.ts, epoch: t.e, header, payloadLength, payloadDigest });
    if (!macEquals(expected, fromB64u(t.mac))) throw new AuthError('E_AUTH_MAC', 'a message does not match its authentication code (altered header or payload)');
    if (t.seq < this.#recvSeq) throw new AuthError('E_AUTH_REPLAY', `message ${t.seq} was already received (next expected ${this.#recvSeq})`);
    if (t.seq > this.#recvSeq) throw new AuthError('E_AUTH_OUT_OF_ORDER', `message ${t.seq} arrived where ${this.#recvSeq} was expected`);
    const now = this.init.now();
    if (Math.abs(now - t.ts) > this.init.maxSkewMs) {
      throw new AuthError('E_AUTH_STALE', `a message timestamp is ${Math.round((now - t.ts) / 1000)} s away from this clock (limit ${this.init.maxSkewMs / 1000} s)`);
    }
    // The receiver's clock is authoritative for expiry; renewal at 80% of the lifetime keeps traffic clear of it.
    if (t.ts > epoch.expiresAt || now > epoch.expiresAt) {
      throw new AuthError('E_AUTH_SESSION_EXPIRED', `the session expired at ${new Date(epoch.expiresAt).toISOString()}`);
    }
    this.#recvSeq++;
    // The first message under a newer epoch retires the older one (the peer has switched).
    if (t.e > this.#recvEpochs[0]!) {
      this.#recvEpochs = this.#recvEpochs.filter((e) => e >= t.e);
      for (const e of [...this.#epochs.keys()]) if (e < t.e && e !== this.#sendEpoch) this.#epochs.delete(e);
    }
    const control = header[CONTROL];
    if (control === undefined) return true;
    this.#control(control, header);
    return false;
  }

  renew(): Promise<void> {
    if (this.side !== 'client') return Promise.reject(new TypeError('only the client side renews a session'));
    if (this.#renewing !== undefined) return this.#renewing.promise;
    const eph = ephemeral();
    const header: AuthHeader = { [CONTROL]: 'renew', eph: eph.publicB64u, nonce: b64u(randomBytes(32)) };
    let resolve!: () => void;
    let reject!: (e: FlareError) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    this.#renewing = { eph, header, resolve, reject, promise };
    this.init.channel.send(header).catch((e: FlareError) => this.#renewFailed(e));
    void this.init.channel.closed.then(({ error }) => this.#renewFailed(error ?? new AuthError('E_AUTH_RENEWAL', 'the connection closed during renewal')));
    return promise;
  }

  #renewFailed(error: FlareError): void {
    const r = this.#renewing;
    if (r === undefined) return;
    this.#renewing = undefined;
    r.reject(error);
  }

  #control(control: unknown, header: AuthHeader): void {
    if (control === 'ready' && this.side === 'client' && !this.#established) {
      this.#established = true;
      return this.#ready.resolve();
    }
    // The login's key confirmation, opened once by the server before the session is installed.
    if (control === 'finished' && this.side === 'server' && this.#recvSeq === 1) return;
    if (control === 'renew' && this.side === 'server') return this.#onRenew(header);
    if (control === 'renewed' && this.side === 'client') return this.#onRenewed(header);
    throw new AuthError('E_AUTH_HANDSHAKE', `unexpected control message ${JSON.stringify(String(control)).slice(0, 40)}`);
  }

  #onRenew(header: AuthHeader): void {
    const renew = parseMessage(RENEW, header, 'renewal request');
    if (this.#switchAfterSeal !== undefined || this.#recvEpochs.length > 1) throw new AuthError('E_AUTH_RENEWAL', 'a renewal was requested while another is in progress');
    const eph = ephemeral();
    const now = this.init.now();
    const renewed: AuthHeader = { [CONTROL]: 'renewed', eph: eph.publicB64u, nonce: b64u(randomBytes(32)), exp: now + (this.init.ttlMs ?? 3_600_000) };
    const next = this.#nextEpoch(sharedSecret(eph.privateKey, renew.eph), renew, renewed, renewed['exp'] as number);
    this.#recvEpochs = [this.#sendEpoch, next];
    this.#switchAfterSeal = next;
    this.init.channel.send(renewed).catch(() => undefined);
  }

  #onRenewed(header: AuthHeader): void {
    const r = this.#renewing;
    if (r === undefined) throw new AuthError('E_AUTH_RENEWAL', 'the server sent renewed keys that were not requested');
    const renewed = parseMessage(RENEWED, header, 'renewal answer');
    const next = this.#nextEpoch(sharedSecret(r.eph.privateKey, renewed.eph), r.header, renewed, renewed.exp);
    this.#sendEpoch = next;
    this.#recvEpochs = [next];
    for (const e of [...this.#epochs.keys()]) if (e < next) this.#epochs.delete(e);
    this.#renewing = undefined;
    this.#scheduleRenewal();
    r.resolve();
  }

  #nextEpoch(shared: Uint8Array, renew: AuthHeader, renewed: AuthHeader, expiresAt: number): number {
    const current = this.#epochs.get(this.#sendEpoch)!;
    const transcript = renewalHash(current.transcript, renew, renewed);
    const next = this.#sendEpoch + 1;
    this.#epochs.set(next, { keys: deriveEpochKeys(shared, transcript, this.init.channelBinding), expiresAt, transcript });
    return next;
  }

  #scheduleRenewal(): void {
    if (this.side !== 'client' || this.init.renewAt === undefined) return;
    clearTimeout(this.#renewTimer);
    const { expiresAt } = this.#epochs.get(this.#sendEpoch)!;
    const delay = Math.max(0, (expiresAt - this.init.now()) * this.init.renewAt);
    // Renew before expiry; a failed renewal closes the connection and the client logs in again.
    this.#renewTimer = setTimeout(() => {
      this.renew().catch((cause: unknown) => {
        void this.init.channel.close(new AuthError('E_AUTH_RENEWAL', 'the session could not be renewed', { cause }));
      });
    }, Math.min(delay, 2 ** 31 - 1));
    this.#renewTimer.unref();
  }

  #stopTimers(): void {
    clearTimeout(this.#renewTimer);
  }
}
