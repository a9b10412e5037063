import { PkiError, identityText, type Logger } from '@flare/core';
import type { Crl } from '@flare/pki';
import type { LooseAuditEvent } from '../audit.js';
import { isSite, type PeerChannel } from '../protocol/channel.js';
import { outgoing } from '../protocol/messages.js';

/** What {@link LiveSessions.applyCrl} did. */
export interface CrlApplied {
  /** The participants whose live session was cut (name and certificate serial). */
  readonly cut: ReadonlyArray<{ readonly name: string; readonly serial: string }>;
  /** How many connected sites and relays were sent the CRL. */
  readonly pushed: number;
}

/**
 * The live authenticated channels of a server (or of an aggregating relay towards its sites), kept so that a
 * revocation takes effect at once: a newer CRL cuts every session whose certificate it lists (sites, relays,
 * admins), and reaches every connected site and relay in a `crl` message. Without this a revoked certificate
 * kept working until its holder reconnected.
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
   * Tracks `ch` until it closes. False (and the channel is cut) when the newest CRL applied already revokes it:
   * its login was checked against the CRL before this one.
   */
  add(ch: PeerChannel): boolean {
    if (this.#crl !== undefined && this.#revokes(this.#crl, ch)) {
      this.#cut(ch, this.#crl);
      return false;
    }
    this.#live.add(ch);
    ch.onClose(() => this.#live.delete(ch));
    return true;
  }

  /**
   * Applies a newer CRL (the caller accepted it: root-signed, a higher CRL number): cuts every live session
   * whose certificate serial it revokes, closing the connection with E_CERT_REVOKED and auditing
   * `session_revoked` with the participant and serial, then sends the CRL (PEM) to every other connected site
   * and relay, which keep it only if it is newer than theirs.
   */
  applyCrl(crl: Crl): CrlApplied {
    this.#crl = crl;
    const cut: Array<{ name: string; serial: string }> = [];
    let pushed = 0;
    const pem = new TextEncoder().encode(crl.pem);
    for (const ch of [...this.#live]) {
      if (this.#revokes(crl, ch)) {
        this.#live.delete(ch);
        this.#cut(ch, crl);
        cut.push({ name: ch.peer.name, serial: ch.peer.serial! });
      } else if (isSite(ch.peer)) {
        pushed++;
        void ch.send(outgoing({ t: 'crl' }), pem).catch(() => undefined);
      }
    }
    return { cut, pushed };
  }

  #revokes(crl: Crl, ch: PeerChannel): boolean {
    return ch.peer.serial !== undefined && crl.revoked.has(ch.peer.serial);
  }

  #cut(ch: PeerChannel, crl: Crl): void {
    const serial = ch.peer.serial!;
    const number = crl.crlNumber?.toString() ?? '?';
    const msg = `the certificate of ${identityText(ch.peer)} (serial ${serial}) is revoked by CRL number ${number}: its live session is closed`;
    this.#audit({ action: 'session_revoked', user: ch.peer.name, msg, data: { code: 'E_CERT_REVOKED', serial, type: ch.peer.type, crl_number: number } });
    this.#logger.warn('cut the session of a revoked certificate', { peer: ch.peer.name, serial, crlNumber: number });
    ch.close(new PkiError('E_CERT_REVOKED', msg));
  }
}
