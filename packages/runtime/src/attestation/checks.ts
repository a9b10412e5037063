import type { Logger } from '@flare/core';
import type { LooseAuditEvent } from '../audit.js';
import type { PeerChannel } from '../protocol/channel.js';
import type { AttestationGate, AttestationOutcome } from './gate.js';

/**
 * When a participant checks its peers' evidence, and what it records: at login, before a job is deployed or
 * accepted, and every `gate.intervalMs` while the peer stays connected. Every outcome is an audit event
 * (`attestation_verified`, `attestation_refused` with the code, the failed check and the purpose).
 */
export class AttestationChecks {
  readonly gate: AttestationGate;
  readonly #audit: (e: LooseAuditEvent) => string | undefined;
  readonly #log: Logger;
  readonly #timers = new Map<string, NodeJS.Timeout>();

  constructor(gate: AttestationGate, audit: (e: LooseAuditEvent) => string | undefined, logger: Logger) {
    this.gate = gate;
    this.#audit = audit;
    this.#log = logger;
  }

  /** True when this participant's policy requires evidence from its peers. */
  get active(): boolean {
    return this.gate.verifiesPeers;
  }

  /** Checks the peer on `ch` (`what`: `login`, `deploy:<job>`, `periodic`) and audits the outcome; `when` is a phrase for messages. */
  async check(ch: PeerChannel, what: string, when: string): Promise<AttestationOutcome> {
    const v = await this.gate.check(ch, what);
    const peer = ch.peer.name;
    if (v.ok) {
      this.#audit({ action: 'attestation_verified', user: peer, msg: v.detail, data: { peer, purpose: v.purpose, types: [...v.types] } });
    } else {
      const code = v.code ?? 'E_ATTEST_POLICY';
      this.#audit({ action: 'attestation_refused', user: peer, msg: `${peer} refused ${when}: ${code}: ${v.detail}`, data: { peer, purpose: v.purpose, code, check: v.check ?? null } });
      this.#log.warn('peer refused: attestation failed', { peer, when, code, check: v.check, reason: v.detail });
    }
    return v;
  }

  /** Re-checks the peer on `ch` every interval while `alive()`; `onFail` gets the first failed outcome. */
  schedule(key: string, ch: PeerChannel, alive: () => boolean, onFail: (v: AttestationOutcome) => Promise<void> | void): void {
    this.cancel(key);
    const every = this.gate.intervalMs;
    if (every <= 0) return;
    let running = false;
    const timer = setInterval(() => {
      if (running || !alive()) return;
      running = true;
      void this.check(ch, 'periodic', 'at a periodic check')
        .then(async (v) => {
          if (!v.ok) {
            this.cancel(key);
            await onFail(v);
          }
        })
        .catch((e: unknown) => this.#log.error('periodic attestation check failed', { peer: ch.peer.name, error: e instanceof Error ? e.message : String(e) }))
        .finally(() => {
          running = false;
        });
    }, every);
    timer.unref();
    this.#timers.set(key, timer);
  }

  cancel(key: string): void {
    clearInterval(this.#timers.get(key));
    this.#timers.delete(key);
  }

  cancelAll(): void {
    for (const t of this.#timers.values()) clearInterval(t);
    this.#timers.clear();
  }
}
