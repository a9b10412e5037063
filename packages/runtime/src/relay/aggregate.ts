import { join } from 'node:path';
import { FlareRuntimeError, META, decodeModel, encodeModel, silentLogger, type AuditHook, type FLModel, type Identity, type Learner, type LearnerContext, type Logger } from '@flare/core';
import type { Crl, CrlStore, Kit } from '@flare/pki';
import type { ServerLimits, Target } from '@flare/transport';
import { z } from 'zod';
import { auditor, type LooseAuditEvent } from '../audit.js';
import { resolveRuntimeLimits, type RuntimeLimits } from '../defaults.js';
import type { PeerChannel, ServerLink } from '../protocol/channel.js';
import type { JobDefinition } from '../protocol/job-definition.js';
import { Message, adminIdentity, outgoing } from '../protocol/messages.js';
import { linkToServer } from '../protocol/network.js';
import { DEFAULT_AGGREGATION_POLICY, policyAggregator, type AggregationPolicy } from '../server/aggregation-policy.js';
import { RELAY_SITES_META, contributorMaxSteps, type RelayTree } from '../server/relay-contributions.js';
import { ClientEngine } from '../site/engine.js';
import type { FilterRegistry, LearnerFactory, SitePolicy } from '../site/policy.js';
import { JobAggregation } from '../workflows/aggregation.js';
import { siteMetrics } from '../workflows/metrics.js';
import { SCATTER_AND_GATHER, asValidation, codeOf, scatterAndGatherSite } from '../workflows/scatter-gather.js';
import type { SiteTaskHandler, SiteWorkflow } from '../workflows/workflow.js';
import { ENCRYPT_LAST } from '../site/admission.js';
import { relayModeOf, relayTreeOf } from './path.js';
import { SiteHub, stepsOf } from './site-hub.js';

/** Options of {@link startAggregatingRelay}. */
export interface AggregatingRelayOptions {
  /** The relay's startup kit, provisioned with `mode: aggregate` (its identity both ways, its relay_tree). */
  readonly kit: Kit;
  /** Port its sites connect to (their project.yml `connect_to` port; 0: any free port). */
  readonly port: number;
  /** Address(es) to bind (default `127.0.0.1`). */
  readonly host?: string | readonly string[];
  /** Override the kit's upstream addresses (the server, or the aggregating relay above). */
  readonly upstream?: readonly Target[];
  /** The relay's own folder: its job records (`jobs/`) and its upstream side's workspace (`upstream/`). */
  readonly workspace: string;
  /**
   * The relay's own policy (`sitePolicyFromFiles` on its kit's local/): who may run jobs through it, its
   * privacy scope (whose result filters it applies to its aggregate), the component allow-list (the job's
   * learner name must be allowed), and the job signature trust.
   */
  readonly policy: SitePolicy;
  /** Filters its privacy scope names (DP, exclude-vars, ...). */
  readonly filters: FilterRegistry;
  /** Its own aggregation policy (local/aggregation.json): the default aggregator, `require`, `max_steps` per site. */
  readonly aggregation?: AggregationPolicy;
  /** Timers and limits of both sides (see RUNTIME_DEFAULTS). */
  readonly limits?: RuntimeLimits;
  readonly transport?: ServerLimits;
  /** Reconnect backoff towards upstream (as a site's). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /**
   * The relay's memory of the newest CRL (@flare/pki's `CrlStore`): a newer one from upstream (welcome or `crl`
   * message) is kept, cuts the revoked sites' sessions here and is re-pushed to the relay's sites; its sites'
   * logins are checked against it. Without it the relay uses its kit's CRL and ignores what upstream sends.
   */
  readonly crls?: CrlStore;
  readonly audit?: AuditHook;
  readonly logger?: Logger;
}

/** A running relay in aggregation mode. */
export interface AggregatingRelay {
  readonly name: string;
  /** The port its sites connect to. */
  readonly port: number;
  /** The sites registered with it now. */
  sites(): string[];
  /** Its upstream side (a participant of the server's federation, as a site is). */
  readonly upstream: ClientEngine;
  /** Stops both sides (its sites reconnect later; upstream sees it leave). */
  close(): Promise<void>;
}

/** The share of the round timeout the relay gathers in, so its aggregate reaches the server before the round closes. */
const GATHER_SHARE = 0.8;

/**
 * Starts a relay in hierarchical aggregation mode (issue #18): towards its sites it is the server of their
 * round (they log in to it with @flare/auth; provisioning names it as their server identity); towards the
 * server it is one contributor with its own identity and policy. It admits each job under its own policy,
 * forwards the job bundle exactly as the admin signed it (each site checks the signature itself), runs every
 * round for its sites with the job's aggregator under its own aggregation policy (manifest check, norm bound,
 * step caps), applies its privacy scope's result filters to the aggregate and sends one update up whose steps
 * are the sum of its sites' capped steps and whose meta names the sites it aggregated. The server caps that
 * weight at the sum of those sites' caps (`checkRelayContribution`). It sees its sites' updates: use HE or
 * secure aggregation directly with the server where it must not (docs/relays.md).
 *
 * @throws FlareRuntimeError E_RUNTIME_CONFIG for a kit that is not an aggregating relay's; TransportError for the port.
 */
export async function startAggregatingRelay(o: AggregatingRelayOptions): Promise<AggregatingRelay> {
  const { kit } = o;
  if (kit.participant.type !== 'relay' || relayModeOf(kit) !== 'aggregate') {
    throw new FlareRuntimeError('E_RUNTIME_CONFIG', `the kit of '${kit.participant.name}' is not an aggregating relay's (provision a relay with mode: aggregate in project.yml)`);
  }
  if (kit.connectionSecurity !== 'mtls') throw new FlareRuntimeError('E_RUNTIME_CONFIG', `relay '${kit.participant.name}' needs connection_security mtls (its kit says ${kit.connectionSecurity})`);
  const name = kit.participant.name;
  const logger = o.logger ?? silentLogger;
  const audit = auditor(o.audit);
  const limits = resolveRuntimeLimits(o.limits);
  const relays = relayTreeOf(kit);
  const crls = o.crls;
  const crl = crls === undefined ? undefined : (): string | undefined => crls.current?.pem ?? kit.crlPem;
  const hub = await SiteHub.start({ kit, port: o.port, ...(o.host === undefined ? {} : { host: o.host }), workspace: join(o.workspace, 'jobs'), limits, ...(o.transport === undefined ? {} : { transport: o.transport }), audit, logger, ...(crl === undefined ? {} : { crl }) });
  const offered = new Map<string, { readonly bundle: Uint8Array; readonly submitter: Identity }>();
  // The server's status shows the tree: the relay reports its sites once registered upstream, and on every change.
  let registeredUpstream: PeerChannel | undefined;
  const reportSites = (): void => {
    void registeredUpstream?.send(outgoing({ t: 'relay_sites', sites: hub.reachable() })).catch(() => undefined);
  };
  // Every report carries the whole list: one per site that registers was N² names to send and check at N
  // sites logging in. Changes within REPORT_EVERY_MS go up in one report.
  const reportSoon = coalesce(reportSites, REPORT_EVERY_MS);
  hub.onChange = reportSoon;
  // Jobs whose upstream side ended because the connection to the server was lost: their sites keep them (no
  // restart there) until the server offers the job again after the relay reconnects, or until the window ends.
  const parked = new Map<string, NodeJS.Timeout>();
  const unpark = (job: string): boolean => {
    clearTimeout(parked.get(job));
    return parked.delete(job);
  };
  /** The relay's side of a job ended: its sites end it too, unless the connection to the server was lost. */
  const release = (job: string): void => {
    unpark(job);
    if (registeredUpstream !== undefined) return hub.end(job, 'ABORTED');
    const windowMs = limits.heartbeatTimeoutMs;
    audit({ action: 'relay_job_parked', job, msg: `the connection to the server was lost: job ${job} stays deployed at the relay's sites for ${windowMs} ms, until the server offers it again`, data: { sites: hub.sites(job), window_ms: windowMs } });
    const timer = setTimeout(() => {
      parked.delete(job);
      audit({ action: 'relay_job_released', job, msg: `the server did not offer job ${job} again within ${windowMs} ms: its sites end it` });
      hub.end(job, 'ABORTED');
    }, windowMs);
    timer.unref();
    parked.set(job, timer);
  };
  const link = tapLink(
    linkToServer({ kit, ...(o.upstream === undefined ? {} : { targets: o.upstream }), ...(o.audit === undefined ? {} : { audit: o.audit }), ...(o.transport === undefined ? {} : { limits: o.transport }), ...(o.backoff === undefined ? {} : { backoff: o.backoff }), logger }),
    (msg, payload, ch) => {
      if (msg.t === 'welcome') {
        registeredUpstream = ch;
        reportSites();
      } else if (msg.t === 'deploy') offered.set(msg.job, { bundle: payload, submitter: adminIdentity(msg.submitter) });
      else if (msg.t === 'abort') hub.abort(msg, payload);
      else if (msg.t === 'job_end') {
        offered.delete(msg.job);
        unpark(msg.job);
        hub.end(msg.job, msg.status);
      }
    },
    // Before the upstream engine ends its jobs for the lost connection (RelayRounds.close sees it is lost).
    (ch) => {
      if (registeredUpstream === ch) registeredUpstream = undefined;
    },
  );
  const rounds: LearnerFactory<unknown> = {
    name: 'relay-aggregation',
    args: z.unknown(),
    async create(_args, env) {
      const definition = env.definition;
      if (definition === undefined) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `relay '${name}' got no job definition for job ${env.job}`);
      // Refused at the deploy, before any site below is asked: the server records the relay's refusal with its code.
      const refusal = whyRelayCannotRun(definition);
      if (refusal !== undefined) throw new FlareRuntimeError('E_RUNTIME_RELAY_MODE', `aggregating relay '${name}' cannot run job ${env.job}: ${refusal} (run it directly or through forwarding relays)`);
      const job = offered.get(env.job);
      if (job === undefined) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `relay '${name}' has no bundle for job ${env.job}`);
      // Offered again after a lost connection: the sites below still run it (deployed once; the hub reuses the job).
      if (unpark(env.job)) audit({ action: 'relay_job_resumed', job: env.job, msg: `the server offered job ${env.job} again: its sites go on with it`, data: { sites: hub.sites(env.job) } });
      const sites = await hub.deploy(env.job, definition, job.bundle, job.submitter);
      audit({ action: 'relay_job_deployed', job: env.job, msg: `relay ${name} runs job ${env.job} with ${sites.length} sites (${someOf(sites)})`, data: { sites: [...sites] } });
      return new RelayRounds({ hub, job: env.job, definition, aggregation: o.aggregation ?? DEFAULT_AGGREGATION_POLICY, relays, audit, logger, release });
    },
  };
  const upstream = await ClientEngine.start({
    site: { name, org: kit.participant.org },
    link,
    policy: o.policy,
    learners: new EveryName(rounds),
    filters: o.filters,
    workflows: [relaySiteWorkflow],
    workspace: join(o.workspace, 'upstream'),
    // A newer CRL from upstream: kept, enforced on this relay's sites, and passed down to them.
    ...(crls === undefined ? {} : { crls, onCrl: (c: Crl) => void hub.applyCrl(c) }),
    ...(o.audit === undefined ? {} : { audit: o.audit }),
    ...(o.limits === undefined ? {} : { limits: o.limits }),
    logger,
  });
  logger.info('aggregating relay started', { relay: name, port: hub.port });
  return {
    name,
    port: hub.port,
    sites: () => hub.registry.names().sort(),
    upstream,
    async close() {
      reportSoon.cancel();
      for (const t of parked.values()) clearTimeout(t);
      parked.clear();
      await upstream.close();
      await hub.close();
    },
  };
}

/** How long changes to a relay's sites gather before it reports them to the server, ms. */
const REPORT_EVERY_MS = 2_000;

/**
 * `fn` at most once per `ms`: the first call schedules it, calls until it runs join that run. The timer does not
 * keep the process alive; `cancel()` drops a pending run.
 */
export function coalesce(fn: () => void, ms: number): (() => void) & { cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const soon = (): void => {
    if (timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      fn();
    }, ms);
    timer.unref();
  };
  const cancel = (): void => {
    clearTimeout(timer);
    timer = undefined;
  };
  return Object.assign(soon, { cancel });
}

/** How many sites an audit message names (the event's `data.sites` lists them all). */
const NAMED_IN_MSG = 20;

/**
 * The first sites of a list for an audit message, and how many more: an audit message holds at most 8,192
 * characters, and a relay's thousand sites once made its `relay_job_deployed` event fail, and the job with it.
 */
export function someOf(sites: readonly string[]): string {
  const more = sites.length - NAMED_IN_MSG;
  return `${sites.slice(0, NAMED_IN_MSG).join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}

/** The FedOpt names of @flare/aggregator: a server optimizer step, which must run once, at the server. */
const SERVER_OPTIMIZERS: ReadonlySet<string> = new Set(['fedavgm', 'fedadagrad', 'fedadam', 'fedyogi']);

/**
 * Why an aggregating relay cannot run a job for its sites, or undefined when it can: a workflow other than
 * scatter-and-gather; a server optimizer (FedOpt), which at the relay would take an optimizer step on a partial
 * aggregate and again at the server; a job whose result filters encrypt updates (HE), which the relay holds no
 * scheme to sum. Checked at the relay's deploy, so such a job is refused there with E_RUNTIME_RELAY_MODE instead
 * of failing at its first round.
 */
export function whyRelayCannotRun(definition: JobDefinition): string | undefined {
  if (definition.workflow !== SCATTER_AND_GATHER) return `it runs scatter_and_gather only; the job uses ${definition.workflow}`;
  const spec = definition.aggregator;
  const inner = spec?.name === 'norm-bound' ? spec.aggregator : spec;
  const optimizer = inner === undefined ? undefined : SERVER_OPTIMIZERS.has(inner.name) ? inner.name : 'serverOptimizer' in inner ? inner.serverOptimizer?.name : undefined;
  if (optimizer !== undefined) return `the job's aggregator has a server optimizer (${optimizer}), which must run once, at the server`;
  if (definition.task_result_filters.some((f) => f.name === ENCRYPT_LAST)) return `the job encrypts updates (${ENCRYPT_LAST}), which the relay cannot aggregate`;
  return undefined;
}

/**
 * Whatever learner a job names, an aggregating relay's "learner" is its sites' round: they train with the
 * job's own learner. The relay's components.json must still allow the name (its policy admits the job).
 */
class EveryName extends Map<string, LearnerFactory<unknown>> {
  readonly #factory: LearnerFactory<unknown>;
  constructor(factory: LearnerFactory<unknown>) {
    super();
    this.#factory = factory;
  }
  override get(): LearnerFactory<unknown> {
    return this.#factory;
  }
  override has(): boolean {
    return true;
  }
}

/**
 * Lets the relay see the messages its upstream side receives (job bundles, signed aborts, job ends) after the
 * engine handled each, and a lost connection before the engine does.
 */
function tapLink(link: ServerLink, see: (msg: Message, payload: Uint8Array, ch: PeerChannel) => void, lost: (ch: PeerChannel) => void): ServerLink {
  const tap = (ch: PeerChannel): PeerChannel => ({
    ...ch,
    onClose: (handler) =>
      ch.onClose((reason) => {
        lost(ch);
        handler(reason);
      }),
    onMessage: (handler) =>
      ch.onMessage((header, payload) => {
        // The engine handles the message first (a welcome registers it, so a report sent after it is in order).
        handler(header, payload);
        const m = Message.safeParse(header);
        if (m.success) see(m.data, payload, ch);
      }),
  });
  return { ...link, onChannel: (h) => link.onChannel((ch) => h(tap(ch))) };
}

/** The relay's side of scatter-and-gather: a train task runs its sites' round; validate asks its sites. */
const relayTrain: SiteTaskHandler = async (t) => {
  const global = await t.filterIn(decodeModel(t.payload));
  const update = await t.learner.train(global, { site: t.site, job: t.job, round: t.round, task: 'train', signal: t.signal });
  // The relay's privacy scope filters its aggregate, as a site's filters its update.
  const out = await t.filterOut(update);
  return { payload: encodeModel(out), metrics: out.metrics ?? {} };
};

const relaySiteWorkflow: SiteWorkflow = {
  name: SCATTER_AND_GATHER,
  tasks: new Map([
    ['train', relayTrain],
    ['validate', scatterAndGatherSite.tasks.get('validate')!],
  ]),
};

interface RoundsOptions {
  readonly hub: SiteHub;
  readonly job: string;
  readonly definition: JobDefinition;
  readonly aggregation: AggregationPolicy;
  readonly relays: RelayTree;
  readonly audit: (e: LooseAuditEvent) => string | undefined;
  readonly logger: Logger;
  /** The job ended at the relay's upstream side: its sites end it, or keep it while the server is unreachable. */
  readonly release: (job: string) => void;
}

/** One job's rounds at an aggregating relay, as the learner its upstream side runs. */
class RelayRounds implements Learner {
  readonly #o: RoundsOptions;
  #aggregation: JobAggregation | undefined;

  constructor(o: RoundsOptions) {
    this.#o = o;
  }

  get #timeoutMs(): number {
    return this.#o.definition.round_timeout_s * 1000 * GATHER_SHARE;
  }

  /**
   * Runs round `ctx.round` for the relay's sites: sends them `global`, aggregates their updates with the job's
   * aggregator under the relay's policy, and returns the aggregate weighted by their capped steps, naming them.
   *
   * @throws FlareRuntimeError E_RUNTIME_MIN_CLIENTS when no site below the relay sent an update.
   */
  async train(global: FLModel, ctx: LearnerContext): Promise<FLModel> {
    const { hub, job, definition, relays, audit } = this.#o;
    const signal = ctx.signal ?? new AbortController().signal;
    const env = { global, round: ctx.round, audit: (e: Parameters<AuditHook>[0]) => audit({ ...e, job }) ?? '' };
    this.#aggregation ??= new JobAggregation({ plain: policyAggregator(this.#o.aggregation, relays)(definition, env) });
    const aggregation = this.#aggregation;
    aggregation.begin(ctx.round, global);
    const cap = contributorMaxSteps(relays, this.#o.aggregation.max_steps);
    const sites: string[] = [];
    const validation = new Map<string, Readonly<Record<string, number>>>();
    let steps = 0;
    const failures: Record<string, string> = {};
    await hub.gather(
      job,
      { kind: 'train', round: ctx.round, model: global },
      this.#timeoutMs,
      signal,
      ({ site, result }) => {
        try {
          const update = decodeModel(result.payload);
          aggregation.accept(update, { from: site });
          // A relay below names its own sites; their steps were capped when it was accepted.
          const below = update.meta[RELAY_SITES_META];
          sites.push(...(relays.has(site) && Array.isArray(below) ? below.map(String) : [site]));
          steps += Math.min(stepsOf(update), cap(site) ?? Number.POSITIVE_INFINITY);
          validation.set(site, result.metrics);
          audit({ action: 'result_accepted', job, user: site, msg: `update of ${site} for round ${ctx.round} aggregated at the relay`, data: { round: ctx.round, site, steps: stepsOf(update) } });
        } catch (e) {
          failures[site] = codeOf(e);
          audit({ action: 'result_rejected', job, user: site, msg: `update of ${site} for round ${ctx.round} was refused at the relay: ${failures[site]}`, data: { round: ctx.round, site, code: failures[site] } });
        }
      },
      (site, code) => {
        failures[site] = code;
        audit({ action: 'result_missing', job, user: site, msg: `${site} sent no update for round ${ctx.round}: ${code}`, data: { round: ctx.round, site, code } });
      },
    );
    signal.throwIfAborted();
    if (sites.length === 0) {
      const why = Object.entries(failures).map(([s, c]) => `${s}: ${c}`).join(', ');
      throw new FlareRuntimeError('E_RUNTIME_MIN_CLIENTS', `no site below the relay sent an update for round ${ctx.round}${why === '' ? '' : ` (${why})`}`);
    }
    const aggregate = aggregation.result();
    sites.sort();
    audit({ action: 'relay_round_aggregated', job, msg: `round ${ctx.round}: ${sites.length} sites aggregated at the relay (${someOf(sites)}), ${steps} steps`, data: { round: ctx.round, sites: [...sites], steps } });
    const val = siteMetrics(validation).summary;
    return {
      params: aggregate.params,
      kind: aggregate.kind,
      meta: { ...aggregate.meta, [META.NUM_STEPS_CURRENT_ROUND]: steps, [RELAY_SITES_META]: sites },
      metrics: asValidation(val),
    };
  }

  /** Asks the relay's sites to validate `global`; their metrics, combined as the server combines sites'. */
  async validate(global: FLModel, ctx: LearnerContext): Promise<Record<string, number>> {
    const validation = new Map<string, Readonly<Record<string, number>>>();
    await this.#o.hub.gather(
      this.#o.job,
      { kind: 'validate', round: ctx.round, model: global },
      this.#timeoutMs,
      ctx.signal ?? new AbortController().signal,
      ({ site, result }) => validation.set(site, result.metrics),
      (site, code) => this.#o.logger.warn('validation missing at the relay', { job: this.#o.job, site, code }),
    );
    return { ...siteMetrics(validation).summary };
  }

  close(): Promise<void> {
    this.#aggregation?.dispose();
    // Ended here without the server's job_end (wall time, lost upstream): the sites release it, or keep it
    // while the relay reconnects (the server offers the job again; see `release`).
    this.#o.release(this.#o.job);
    return Promise.resolve();
  }
}
