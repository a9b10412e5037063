import { FlareRuntimeError, PkiError, identityText, type Logger } from '@flare/core';
import type { Crl } from '@flare/pki';
import type { LooseAuditEvent } from '../audit.js';
import { isSite, type PeerChannel } from '../protocol/channel.js';
import { outgoing } from '../protocol/messages.js';

/** What {@link LiveSessions.applyCrl} did. */
export interface CrlApplied {
  /**
   * The participants whose live session was cut (name and the revoked certificate serial: its own, or, with
   * `relay`, that of the relay its session came through).
   */
  readonly cut: ReadonlyArray<{ readonly name: string; readonly serial: string; readonly relay?: string }>;
  /** How many connected sites and relays were sent the CRL. */
  readonly pushed: number;
}

/** Why a CRL ends a session: the peer's own certificate, or the relay's its login came through. */
interface Revoked {
  readonly serial: string;
  /** The relay whose certificate is revoked, when it is not the peer's own. */
  readonly relay?: string;
}

/**
 * The live authenticated channels of a server (or of an aggregating relay towards its sites), kept so that a
 * revocation takes effect at once: a newer CRL cuts every session whose certificate it lists (sites, relays,
 * admins) and every session that came through a forwarding relay whose certificate it lists (the relay's
 * serial rides with the session: `PeerIdentity.relaySerial`), and reaches every connected site and relay in a
 * `crl` message. Without this a revoked certificate kept working until its holder (or the sites behind it)
 * reconnected. A relay further down a chain is not seen here (TLS ends at the first relay): the relay above it
 * cuts what it carries (see `startRelay`'s `crls`).
 */
export class LiveSessions {
  readonly #live = new Set<PeerChannel>();
  readonly #audit: (e: LooseAuditEvent) => string | undefined;
  readonly #logger: Logger;
  /** The newest CRL applied: a login verified just before it arrived is cut when its channel is added. */
  #crl: Crl | undefined;

  constructor(o: { readonly audit: (e: LooseAuditEvent) => string | undefined; readonly logger: Logger }) {
    this.#audit = o.audit;
    this.#logger = o.logger;
  }

  /**
   * Tracks `ch` until it closes. False (and the channel is cut) when the newest CRL applied already revokes it
   * or the relay it came through: its login was checked against the CRL before this one.
   */
  add(ch: PeerChannel): boolean {
    const why = this.#crl === undefined ? undefined : revokedBy(this.#crl, ch);
    if (why !== undefined) {
      this.#cut(ch, this.#crl!, why);
      return false;
    }
    this.#live.add(ch);
    ch.onClose(() => this.#live.delete(ch));
    return true;
  }

  /**
   * Applies a newer CRL (the caller accepted it: root-signed, a higher CRL number): cuts every live session
   * whose certificate serial it revokes (closing the connection with E_CERT_REVOKED), or whose relay's
   * (E_RUNTIME_RELAY_REVOKED: the site retries, and its logins through that relay are refused), auditing
   * `session_revoked` with the participant, the serial and the relay when it was the relay's; then sends the
   * CRL (PEM) to every other connected site and relay, which keep it only if it is newer than theirs.
   */
  applyCrl(crl: Crl): CrlApplied {
    this.#crl = crl;
    const cut: Array<{ name: string; serial: string; relay?: string }> = [];
    for (const ch of [...this.#live]) {
      const why = revokedBy(crl, ch);
      if (why === undefined) continue;
      this.#live.delete(ch);
      this.#cut(ch, crl, why);
      cut.push({ name: ch.peer.name, serial: why.serial, ...(why.relay === undefined ? {} : { relay: why.relay }) });
    }
    let pushed = 0;
    const pem = new TextEncoder().encode(crl.pem);
    for (const ch of this.#live) {
      if (!isSite(ch.peer)) continue;
      pushed++;
      void ch.send(outgoing({ t: 'crl' }), pem).catch(() => undefined);
    }
    return { cut, pushed };
  }

  #cut(ch: PeerChannel, crl: Crl, why: Revoked): void {
    const number = crl.crlNumber?.toString() ?? '?';
    const msg =
      why.relay === undefined
        ? `the certificate of ${identityText(ch.peer)} (serial ${why.serial}) is revoked by CRL number ${number}: its live session is closed`
        : `relay '${why.relay}' (serial ${why.serial}), which ${identityText(ch.peer)} came through, is revoked by CRL number ${number}: the session it carried is closed`;
    // A site behind a revoked relay is not revoked itself: its code is one it retries after (not a final PkiError).
    const error = why.relay === undefined ? new PkiError('E_CERT_REVOKED', msg) : new FlareRuntimeError('E_RUNTIME_RELAY_REVOKED', msg);
    const data = { code: error.code, serial: why.serial, type: ch.peer.type, crl_number: number, ...(why.relay === undefined ? {} : { relay: why.relay, via: [...(ch.peer.via ?? [])] }) };
    this.#audit({ action: 'session_revoked', user: ch.peer.name, msg, data });
    this.#logger.warn('cut the session of a revoked certificate', { peer: ch.peer.name, serial: why.serial, crlNumber: number, ...(why.relay === undefined ? {} : { relay: why.relay }) });
    ch.close(error);
  }
}

/** Whether `crl` revokes the peer's own certificate or the relay's its login came through (its own first). */
function revokedBy(crl: Crl, ch: PeerChannel): Revoked | undefined {
  const { serial, relaySerial, via } = ch.peer;
  if (serial !== undefined && crl.revoked.has(serial)) return { serial };
  if (relaySerial !== undefined && crl.revoked.has(relaySerial)) return { serial: relaySerial, relay: via?.[0] ?? '?' };
  return undefined;
}
