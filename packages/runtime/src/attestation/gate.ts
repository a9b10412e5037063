import { randomUUID } from 'node:crypto';
import { AttestError, FlareError, FlareRuntimeError, isFlareErrorCode, parseStrictJson, type AuditHook, type FlareErrorCode } from '@flare/core';
import type * as CcAttestModule from '@flare/cc-attest';
import type { AttestationEvidence, AttestationPolicy, Attester, CollateralFetcher, TdxCollateral, TrustAnchors } from '@flare/cc-attest';
import { loadOptionalPeer } from '../optional.js';
import type { PeerChannel } from '../protocol/channel.js';
import { outgoing, type Message } from '../protocol/messages.js';
import { PendingRequests } from '../protocol/pending.js';

type CcAttest = typeof CcAttestModule;
/** @flare/cc-attest, imported the first time evidence is produced or verified (an optional peer). */
const ccAttest = (): Promise<CcAttest> => loadOptionalPeer<CcAttest>('@flare/cc-attest', 'attestation (an attestation policy or attesters)');

/**
 * Confidential-computing attestation for a server or a site (@flare/cc-attest), gating its peers: at login
 * (both directions), before each job deploy, and periodically. Evidence is bound to the authenticated session
 * (its nonce comes from the session's exported keying material, the peer's authenticated name and a purpose
 * unique in the session), so it cannot be replayed by another peer or in another session.
 */
export interface AttestationOptions {
  /**
   * This participant's policy for its peers (`loadAttestationPolicy(kitDir)`): the evidence types it
   * `require`s and the rules they must meet. Without one, or with an empty `require`, it asks for none.
   */
  readonly policy?: AttestationPolicy;
  /** What produces evidence about this participant when a peer asks (configfs-tsm, GPU command, test). */
  readonly attesters?: ReadonlyArray<Attester & { readonly type?: string }>;
  /** Trust anchors for verifying peers: the pinned vendor roots by default (a test authority for `flare poc`). */
  readonly trust?: TrustAnchors;
  /** TDX collateral this participant keeps (PCS TCB info, QE identity, issuer chain, CRLs). */
  readonly tdxCollateral?: TdxCollateral;
  /** Fetches vendor collateral and revocation data when given (cached); offline otherwise. */
  readonly fetcher?: CollateralFetcher;
  /** Re-check every peer this often (default 600 000 ms, FLARE's interval); 0 turns periodic checks off. */
  readonly intervalMs?: number;
  /** How long a peer has to answer an evidence request (default 30 000 ms). */
  readonly timeoutMs?: number;
  /** The verification clock (default: now). */
  readonly now?: () => Date;
}

/** The conclusion of one attestation check of a peer: what to audit, and what to refuse with. */
export interface AttestationOutcome {
  readonly ok: boolean;
  /** The purpose the evidence was bound to (e.g. `login#1`, `deploy:<job>#2`, `periodic#3`). */
  readonly purpose: string;
  /** The evidence types asked for. */
  readonly types: readonly string[];
  /** The code of the first failed check (E_ATTEST_*, or E_RUNTIME_ATTESTATION_UNBOUND). */
  readonly code?: FlareErrorCode;
  /** The id of the first failed check (e.g. `policy.snp.debug`), or what failed around it (`runtime.reply`). */
  readonly check?: string;
  /** A human sentence: what was verified, or why the peer is refused. */
  readonly detail: string;
}

/** An evidence reply as it arrived (verified after). */
interface EvidenceReply {
  readonly ok: boolean;
  readonly error?: { code: string; message: string };
  readonly payload: Uint8Array;
}

/** Largest evidence reply accepted (GPU evidence with RIMs is the largest: a few hundred KB per device). */
const MAX_EVIDENCE_BYTES = 16 * 1024 * 1024;
const MAX_EVIDENCE_ITEMS = 64;
/** Evidence requests of one peer that may wait for an answer (login, a deploy and a periodic check overlap at most). */
const MAX_WAITING_REQUESTS = 4;

/** The error to refuse or stop with for a failed outcome. */
export function attestationError(outcome: AttestationOutcome, who: string): FlareError {
  const message = `${who}: ${outcome.detail} (check ${outcome.check ?? 'unknown'}, purpose ${outcome.purpose})`;
  const code = outcome.code ?? 'E_ATTEST_POLICY';
  return code.startsWith('E_ATTEST_') ? new AttestError(code as ConstructorParameters<typeof AttestError>[0], message) : new FlareError(code, message);
}

/** Parses an evidence reply's payload: JSON array of @flare/cc-attest's wire form, bounded. */
function parseEvidence(cc: CcAttest, payload: Uint8Array): AttestationEvidence[] {
  if (payload.byteLength > MAX_EVIDENCE_BYTES) throw new AttestError('E_ATTEST_MALFORMED', `the evidence reply has ${payload.byteLength} bytes, more than ${MAX_EVIDENCE_BYTES}`);
  let value: unknown;
  try {
    value = parseStrictJson(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'), { maxDepth: 8 });
  } catch (cause) {
    throw new AttestError('E_ATTEST_MALFORMED', 'the evidence reply is not valid JSON', { cause });
  }
  if (!Array.isArray(value) || value.length > MAX_EVIDENCE_ITEMS) throw new AttestError('E_ATTEST_MALFORMED', `the evidence reply must be a list of at most ${MAX_EVIDENCE_ITEMS} items`);
  return value.map((v) => cc.parseAttestationEvidence(v));
}

const reasonOf = (e: unknown): { code: string; message: string } =>
  e instanceof FlareError ? { code: e.code, message: e.message.slice(0, 1000) } : { code: 'E_ATTEST_ATTESTER', message: e instanceof Error ? e.message.slice(0, 1000) : 'the attester failed' };

/**
 * The attestation exchange of one participant with its peers, over the runtime's authenticated channels:
 * answers peers' evidence requests with this participant's attesters, and asks peers for evidence and
 * verifies it under this participant's policy. Internal to the engines.
 */
export class AttestationGate {
  readonly #o: AttestationOptions;
  readonly #self: string;
  readonly #audit: AuditHook | undefined;
  readonly #pending = new PendingRequests<EvidenceReply | undefined, PeerChannel>();
  readonly #answering = new WeakMap<PeerChannel, { tail: Promise<void>; waiting: number }>();
  readonly #counters = new WeakMap<PeerChannel, number>();

  constructor(options: AttestationOptions | undefined, self: string, audit?: AuditHook) {
    const o = options ?? {};
    if (o.intervalMs !== undefined && (!Number.isFinite(o.intervalMs) || o.intervalMs < 0)) throw new RangeError(`"intervalMs" expected 0 or a positive number, got ${o.intervalMs}`);
    if (o.timeoutMs !== undefined && !(o.timeoutMs > 0)) throw new RangeError(`"timeoutMs" expected a positive number, got ${o.timeoutMs}`);
    this.#o = o;
    this.#self = self;
    this.#audit = audit;
  }

  /** True when this participant's policy requires evidence from its peers. */
  get verifiesPeers(): boolean {
    return this.#o.policy !== undefined && this.#o.policy.require.length > 0;
  }

  /** Period of the re-checks (0: none). */
  get intervalMs(): number {
    return this.verifiesPeers ? (this.#o.intervalMs ?? 600_000) : 0;
  }

  /** How long a check may take at most (the reply timeout, plus a margin for verification). */
  get checkTimeoutMs(): number {
    return (this.#o.timeoutMs ?? 30_000) + 5_000;
  }

  /** Handles `attest_request` (answers with evidence) and `attest_reply` (completes a check); false for other messages. */
  async handle(ch: PeerChannel, msg: Message, payload: Uint8Array): Promise<boolean> {
    if (msg.t === 'attest_reply') {
      // A reply nobody waits for (late, or for another channel) is dropped: it can only be stale.
      this.#pending.settle(msg.id, ch, { ok: msg.ok, ...(msg.error === undefined ? {} : { error: msg.error }), payload });
      return true;
    }
    if (msg.t !== 'attest_request') return false;
    const request = msg;
    const reply = async (error: { code: string; message: string } | undefined, body?: Uint8Array): Promise<void> => {
      await ch.send(outgoing({ t: 'attest_reply', id: request.id, ok: error === undefined, ...(error === undefined ? {} : { error }) }), body).catch(() => undefined);
    };
    // Requests of one peer are answered in turn (a deploy check may meet a periodic one); producing evidence
    // costs a hardware report and signatures, so a peer may have only a few waiting.
    const queue = this.#answering.get(ch) ?? { tail: Promise.resolve(), waiting: 0 };
    if (queue.waiting >= MAX_WAITING_REQUESTS) {
      await reply({ code: 'E_ATTEST_ATTESTER', message: `more than ${MAX_WAITING_REQUESTS} evidence requests of this peer are waiting` });
      return true;
    }
    queue.waiting += 1;
    this.#answering.set(ch, queue);
    const answer = async (): Promise<void> => {
      try {
        const attesters = this.#o.attesters ?? [];
        if (ch.exportKeyingMaterial === undefined) throw new FlareRuntimeError('E_RUNTIME_ATTESTATION_UNBOUND', 'this connection has no authenticated session to bind evidence to');
        if (request.types.length > 0 && attesters.length === 0) throw new AttestError('E_ATTEST_ATTESTER', `${this.#self} has no attester configured`);
        const cc = await ccAttest();
        const keyingMaterial = ch.exportKeyingMaterial(cc.ATTESTATION_EXPORTER_LABEL, cc.ATTESTATION_EXPORTER_LENGTH);
        const evidence = await cc.produceSessionEvidence(attesters, { keyingMaterial, purpose: request.purpose, self: this.#self, types: request.types });
        keyingMaterial.fill(0);
        await reply(undefined, new TextEncoder().encode(JSON.stringify(evidence.map((e) => cc.encodeAttestationEvidence(e)))));
        this.#audit?.({ action: 'attestation_evidence_sent', user: ch.peer.name, msg: `${request.types.join('+') || 'no'} evidence sent to ${ch.peer.name} for ${request.purpose}`, data: { purpose: request.purpose, types: [...request.types] } });
      } catch (e) {
        const r = reasonOf(e);
        this.#audit?.({ action: 'attestation_evidence_failed', user: ch.peer.name, msg: `could not produce evidence for ${ch.peer.name} (${request.purpose}): ${r.code}: ${r.message}`, data: { purpose: request.purpose, code: r.code } });
        await reply(r);
      } finally {
        queue.waiting -= 1;
      }
    };
    const done = queue.tail.then(answer);
    queue.tail = done;
    await done;
    return true;
  }

  /**
   * Asks the peer on `ch` for evidence bound to this session and a fresh purpose (`<what>#<n>`), and verifies
   * it under this participant's policy. Never throws for bad or missing evidence: the outcome says why.
   */
  async check(ch: PeerChannel, what: string): Promise<AttestationOutcome> {
    const policy = this.#o.policy;
    const n = (this.#counters.get(ch) ?? 0) + 1;
    this.#counters.set(ch, n);
    const purpose = `${what}#${n}`;
    const types = policy?.require ?? [];
    const fail = (code: FlareErrorCode, check: string, detail: string): AttestationOutcome => ({ ok: false, purpose, types, code, check, detail });
    if (policy === undefined || types.length === 0) return { ok: true, purpose, types, detail: 'the policy requires no evidence' };
    if (ch.exportKeyingMaterial === undefined) return fail('E_RUNTIME_ATTESTATION_UNBOUND', 'runtime.session', `the connection of ${ch.peer.name} has no authenticated session to bind evidence to`);
    let cc: CcAttest;
    try {
      cc = await ccAttest();
    } catch (e) {
      return fail('E_RUNTIME_OPTIONAL_PEER', 'runtime.load', e instanceof Error ? e.message : 'cannot load @flare/cc-attest');
    }
    const keyingMaterial = ch.exportKeyingMaterial(cc.ATTESTATION_EXPORTER_LABEL, cc.ATTESTATION_EXPORTER_LENGTH);
    const now = this.#o.now ?? (() => new Date());
    const issuedAt = now();
    const id = randomUUID();
    const timeoutMs = this.#o.timeoutMs ?? 30_000;
    try {
      // No evidence in time, a failed send or a closed channel all conclude "no evidence" (undefined).
      const waiting = this.#pending.open(id, ch, { timeoutMs }).catch(() => undefined);
      ch.send(outgoing({ t: 'attest_request', id, purpose, types: [...types] })).catch(() => this.#pending.reject(id, undefined));
      const reply = await waiting;
      if (reply === undefined) return fail('E_ATTEST_MISSING_EVIDENCE', 'runtime.reply', `${ch.peer.name} sent no evidence within ${Math.round(timeoutMs / 1000)} s`);
      if (!reply.ok) {
        const why = reply.error === undefined ? 'no reason given' : `${reply.error.code.slice(0, 64)}: ${reply.error.message.slice(0, 300)}`;
        return fail('E_ATTEST_MISSING_EVIDENCE', 'runtime.reply', `${ch.peer.name} could not produce ${types.join('+')} evidence (${why})`);
      }
      let evidence: AttestationEvidence[];
      try {
        evidence = parseEvidence(cc, reply.payload);
      } catch (e) {
        return fail(e instanceof FlareError && isFlareErrorCode(e.code) ? e.code : 'E_ATTEST_MALFORMED', 'runtime.evidence', e instanceof Error ? e.message.slice(0, 300) : 'malformed evidence');
      }
      const o = this.#o;
      const verdict = await cc.verifySessionEvidence({
        keyingMaterial,
        purpose,
        peer: ch.peer.name,
        evidence,
        policy,
        at: now(),
        issuedAt,
        ...(o.trust === undefined ? {} : { trust: o.trust }),
        ...(o.tdxCollateral === undefined ? {} : { tdxCollateral: o.tdxCollateral }),
        ...(o.fetcher === undefined ? {} : { fetcher: o.fetcher }),
      });
      if (verdict.ok) {
        const trust = [...new Set(verdict.results.map((r) => r.trust))].join(', ') || 'none';
        return { ok: true, purpose, types, detail: `${ch.peer.name}'s ${types.join('+')} evidence verified under this site's policy (trust: ${trust})` };
      }
      const f = verdict.failure;
      // "policy.<type>.verified" only says a verification failed: name the verifier's own failed check.
      const inner = /^policy\.(snp|tdx|gpu)\.verified$/.test(f?.id ?? '') ? verdict.results.find((r) => !r.ok)?.failure : undefined;
      const first = inner ?? f;
      return fail(first?.code ?? 'E_ATTEST_POLICY', first?.id ?? 'policy', first?.detail ?? 'the evidence does not meet the policy');
    } catch (e) {
      // verifySessionEvidence does not throw for bad evidence; anything here is unexpected: refuse, never admit.
      return fail('E_ATTEST_MALFORMED', 'runtime.verify', e instanceof Error ? e.message.slice(0, 300) : 'verification failed');
    } finally {
      keyingMaterial.fill(0);
    }
  }

  /** Ends the waiting checks of a channel that closed (the engines call it): they conclude "no evidence". */
  forget(ch: PeerChannel): void {
    this.#pending.rejectOwnedBy(ch, undefined);
  }
}
