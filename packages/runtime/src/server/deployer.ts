import { randomUUID } from 'node:crypto';
import { FlareRuntimeError, type Logger } from '@flare/core';
import type { AttestationChecks } from '../attestation/checks.js';
import type { AttestationOutcome } from '../attestation/gate.js';
import type { LooseAuditEvent } from '../audit.js';
import { reasonOf, type Reason } from '../errors.js';
import type { EventBus } from '../event-bus.js';
import type { PeerChannel } from '../protocol/channel.js';
import { outgoing, wireIdentity, type MessageOf } from '../protocol/messages.js';
import { PendingRequests } from '../protocol/pending.js';
import type { ActiveJob } from './active-job.js';
import { Pacer } from './broadcast.js';
import { RecordBatcher } from './deployer-records.js';
import type { JobStore } from './job-store.js';
import type { SiteRegistry } from './registry.js';

/** What the deployer needs from the server. */
export interface DeployerOptions {
  readonly registry: SiteRegistry;
  readonly store: JobStore;
  readonly attestation: AttestationChecks;
  readonly audit: (e: LooseAuditEvent) => string | undefined;
  readonly logger: Logger;
  readonly events: EventBus;
  readonly timeoutMs: number;
  /** Ends a site whose fresh evidence failed before a deploy (bye with the code, close). */
  readonly refuseAttestation: (ch: PeerChannel, v: AttestationOutcome, when: string) => Promise<void>;
}

/** Codes of a site's refusal that waiting cures: the job is offered again when the site has room. */
const TEMPORARY = new Set(['E_POLICY_RESOURCES_BUSY', 'E_RUNTIME_TIMEOUT', 'E_RUNTIME_DISCONNECTED']);
/** How long a site that was busy is left alone before the job is offered to it again. */
const RETRY_BUSY_MS = 5_000;

/**
 * Offers jobs to sites: fresh attestation of the site first (when the server's policy requires it), then the
 * job bundle (meta.json as submitted, custom/ files) as the deploy message's payload; the site decides under
 * its own policy and answers. Every outcome is audited and recorded in the job's record with the site's own
 * code; a refusal that waiting cures (the site is busy) is not recorded as final.
 */
export class Deployer {
  readonly #o: DeployerOptions;
  readonly #replies = new PendingRequests<MessageOf<'deploy_reply'>, string>();
  // Every site's answer changes the job's record: gathered into one write at a time (N writes were N² at scale).
  readonly #records: RecordBatcher;
  readonly #pacer = new Pacer();

  constructor(o: DeployerOptions) {
    this.#o = o;
    this.#records = new RecordBatcher(o.store);
  }

  /** Takes a site's deploy reply; false when no deploy to that site waits for it. */
  reply(site: string, msg: MessageOf<'deploy_reply'>): boolean {
    return this.#replies.settle(msg.id, site, msg);
  }

  /** Fails the deploys waiting for a site that went away. */
  failSite(site: string, error: unknown): void {
    this.#replies.rejectOwnedBy(site, error);
  }

  /** Offers `job` to `site`; true when the site runs it now. Never throws. */
  async deploy(job: ActiveJob, site: string): Promise<boolean> {
    if (job.deployed.has(site)) return true;
    if (job.refused.has(site) || job.deploying.has(site) || (job.later.get(site) ?? 0) > Date.now()) return false;
    const entry = this.#o.registry.get(site);
    if (entry === undefined) return false;
    job.deploying.add(site);
    try {
      await this.#o.events.emit('before-deploy', { site, job: job.id, definition: job.definition, submitter: job.submitter });
      if (this.#o.attestation.active) {
        // Fresh evidence before every deploy: the platform may have changed since login.
        const when = `before deploying job ${job.id}`;
        const v = await this.#o.attestation.check(entry.channel, `deploy:${job.id}`, when);
        if (!v.ok) {
          await this.#refused(job, site, { code: v.code ?? 'E_ATTEST_POLICY', message: v.detail });
          await this.#o.refuseAttestation(entry.channel, v, when);
          return false;
        }
      }
      const payload = await job.bundle();
      // A deploy to thousands of sites goes out a batch per turn of the event loop (see Pacer).
      await this.#pacer.turn();
      job.abort.signal.throwIfAborted();
      const id = randomUUID();
      const ref = this.#o.audit({ action: 'deploy_sent', job: job.id, user: job.submitter.name, msg: `job deployed to ${site}`, data: { site } });
      const answer = this.#replies.open(id, site, {
        timeoutMs: this.#o.timeoutMs,
        onTimeout: () => new FlareRuntimeError('E_RUNTIME_TIMEOUT', `${site} did not answer the deploy request within ${this.#o.timeoutMs} ms`),
        signal: job.abort.signal,
      });
      entry.channel.send(outgoing({ t: 'deploy', id, job: job.id, submitter: wireIdentity(job.submitter), ...(ref === undefined ? {} : { ref }) }), payload).catch((e: unknown) => this.#replies.reject(id, e));
      const reply = await answer;
      if (reply.ok) {
        job.deployed.add(site);
        this.#o.audit({ action: 'deploy_accepted', job: job.id, ref: reply.ref, msg: `${site} accepted the job`, data: { site } });
        await this.#records.apply(job.id, (r) => {
          if (!r.sites.includes(site)) r.sites.push(site);
          delete r.refused[site];
        });
        return true;
      }
      await this.#refused(job, site, reply.error ?? { code: 'E_RUNTIME_DEPLOY_REFUSED', message: 'no reason given' }, reply.ref);
      return false;
    } catch (e) {
      if (!job.abort.signal.aborted) await this.#refused(job, site, reasonOf(e, 'E_RUNTIME_DEPLOY_REFUSED')).catch(() => undefined);
      return false;
    } finally {
      job.deploying.delete(site);
    }
  }

  async #refused(job: ActiveJob, site: string, reason: Reason, ref?: string): Promise<void> {
    const why = `${reason.code}: ${reason.message}`.slice(0, 2000);
    const temporary = TEMPORARY.has(reason.code);
    if (temporary) job.later.set(site, Date.now() + RETRY_BUSY_MS);
    else job.refused.set(site, reason);
    this.#o.audit({ action: 'deploy_refused', job: job.id, ref, msg: `${site} refused the job: ${why}`, data: { site, code: reason.code } });
    this.#o.logger.warn('site refused the job', { job: job.id, site, code: reason.code, reason: reason.message });
    await this.#records.apply(job.id, (r) => {
      r.refused[site] = why;
    });
  }
}
