import { generateKeyPairSync } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FlareRuntimeError, silentLogger, type AggregationScheme, type AuditHook, type Logger } from '@flare/core';
import { createRootCa, issueCertificate } from '@flare/pki';
import { AdminClient } from '../admin/client.js';
import type { JobBundle } from '../protocol/bundle.js';
import type { PeerIdentity } from '../protocol/channel.js';
import { parseMetaJson, type JobDefinition } from '../protocol/job-definition.js';
import { jobTrustFromKit, type AdminSigningKit, type JobTrust } from '../protocol/job-trust.js';
import type { AggregationPolicy } from '../server/aggregation-policy.js';
import { ServerEngine } from '../server/engine.js';
import type { AggregatorFactory } from '../server/job-runner.js';
import type { JobRecord, RoundRecord } from '../server/job-store.js';
import { ClientEngine } from '../site/engine.js';
import type { FilterRegistry, LearnerFactory, SitePolicy } from '../site/policy.js';
import { memoryHub, memoryLink } from '../testing/channels.js';
import { SIMULATOR_ROLE, simulatedSitePolicy } from './site-policy.js';

/** One virtual site of a simulation. */
export interface SimulatedSite {
  /** Its name (`site-1`..`site-N`, or the names of the job's deploy list). */
  readonly name: string;
  /** Its index, from 0: which share of the data it trains on. */
  readonly index: number;
  /** How many sites the simulation runs. */
  readonly sites: number;
}

/** Options of {@link simulateJob}. */
export interface SimulationOptions {
  /** The job as `readJobFolder` reads it. */
  readonly job: JobBundle;
  /** How many virtual sites when the job deploys to `@ALL` (default 2); with a deploy list, its length (or left out). */
  readonly sites?: number;
  /** Folder for the server's job store and one folder per site. */
  readonly workspace: string;
  /** The learners a site can build, as a real site's registry (built-in learners, components.json learners). */
  readonly learners: (site: SimulatedSite) => ReadonlyMap<string, LearnerFactory<unknown>> | Promise<ReadonlyMap<string, LearnerFactory<unknown>>>;
  /** The filters a site can build by name (DP, exclude-vars, ...), as at a real site. */
  readonly filters?: FilterRegistry;
  /**
   * Each site's policy (default {@link simulatedSitePolicy}: it admits the job under one filterless scope); its
   * `jobTrust` is always the simulation's own (the throwaway root that signed the job).
   */
  readonly policy?: (site: SimulatedSite, definition: JobDefinition) => SitePolicy | Promise<SitePolicy>;
  /** The server's aggregation policy (default the server's: FedAvg with an adaptive norm bound). */
  readonly aggregation?: AggregationPolicy;
  /** Makes the job's aggregator instead of @flare/aggregator's (as ServerEngineOptions.aggregator). */
  readonly aggregator?: AggregatorFactory;
  /** Aggregation of encrypted updates the server offers (as ServerEngineOptions.schemes: HE's, for `--he`). */
  readonly schemes?: readonly AggregationScheme[];
  /** Called after each completed round with the server's record of it. */
  readonly onRound?: (record: RoundRecord) => void;
  /** The server's logger; `siteLogger` gives each site its own (default silent). */
  readonly logger?: Logger;
  readonly siteLogger?: (site: SimulatedSite) => Logger;
  /** An audit hook per participant (`server` or a site's name); default none. */
  readonly audit?: (participant: string) => AuditHook;
  /** Give up after this long (default: every round's timeout with its retries, plus 5 minutes). */
  readonly timeoutMs?: number;
  /** Aborts the job (it ends ABORTED). */
  readonly signal?: AbortSignal;
}

/** What a simulation ends with. */
export interface SimulationResult {
  /** The server's record of the job: status, the error with each site's code, every round's metrics. */
  readonly record: JobRecord;
  /** The final global model (safetensors) of a FINISHED job. */
  readonly model?: Uint8Array;
  /** The virtual sites, in order. */
  readonly sites: readonly SimulatedSite[];
}

const SERVER: PeerIdentity = { name: 'server', org: 'simulation', type: 'server' };
const ADMIN: PeerIdentity = { name: 'simulator', org: 'simulation', role: SIMULATOR_ROLE, type: 'admin' };
const PROJECT = 'simulation';

/**
 * A throwaway project for one simulation: a root CA that lives only in memory and the simulator admin's signing
 * kit under it, so jobs (and aborts) are signed and every site checks them exactly as in a deployment.
 */
async function ephemeralProject(): Promise<{ readonly signer: AdminSigningKit; readonly trust: JobTrust }> {
  const root = await createRootCa({ commonName: PROJECT, validDays: 1 });
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueCertificate({ issuer: root, subject: { name: ADMIN.name, org: ADMIN.org, type: 'admin', role: SIMULATOR_ROLE }, publicKey: pair.publicKey });
  return { signer: { project: PROJECT, certPem, privateKey: pair.privateKey }, trust: jobTrustFromKit({ project: PROJECT, rootCaPem: root.certPem }) };
}

/**
 * The virtual sites of a job: its deploy list, or `site-1`..`site-N` for `@ALL`.
 *
 * @throws FlareRuntimeError E_RUNTIME_SIMULATION when `sites` disagrees with the deploy list.
 */
export function simulatedSites(definition: JobDefinition, sites?: number): SimulatedSite[] {
  if (sites !== undefined && (!Number.isInteger(sites) || sites < 1 || sites > 64)) throw new FlareRuntimeError('E_RUNTIME_SIMULATION', `the number of sites must be an integer 1..64, got ${sites}`);
  const names = definition.deploy.includes('@ALL') ? Array.from({ length: sites ?? 2 }, (_, i) => `site-${i + 1}`) : definition.deploy;
  if (sites !== undefined && sites !== names.length) {
    throw new FlareRuntimeError('E_RUNTIME_SIMULATION', `meta.json deploys to ${names.length} named sites (${names.join(', ')}), not ${sites}: deploy to ["@ALL"] or leave the number of sites out`);
  }
  return names.map((name, index) => ({ name, index, sites: names.length }));
}

/**
 * Runs a job folder with virtual sites in this process: the real server engine (job store, scheduler,
 * workflow, aggregation under the server's policy, checkpoints) and real site engines (each deciding under its
 * own policy, with its privacy scope's filters, the job's filters and its own learners) over in-memory
 * channels instead of mTLS, so there are no kits: the job is signed by a simulator admin of a throwaway project
 * whose root CA lives in memory for this run, and every site checks that signature as in a deployment. What
 * differs from a deployment is only the transport and who may submit: the simulator's admin.
 *
 * @throws FlareRuntimeError E_RUNTIME_SIMULATION for a site count the job disagrees with, or when the job
 *   did not end in time; E_RUNTIME_JOB_INVALID for an invalid meta.json. A job that fails is not thrown: its
 *   record says why (`record.error`, with each site's code).
 * @example
 * ```ts
 * const learners = new Map([['my-learner', myLearnerFactory]]);
 * const { record } = await simulateJob({ job: await readJobFolder('my-job'), sites: 3, workspace: '/tmp/sim', learners: () => learners });
 * ```
 */
export async function simulateJob(o: SimulationOptions): Promise<SimulationResult> {
  const { definition } = parseMetaJson(o.job.meta);
  const sites = simulatedSites(definition, o.sites);
  const filters: FilterRegistry = o.filters ?? new Map();
  const ws = resolve(o.workspace);
  await mkdir(join(ws, 'server'), { recursive: true, mode: 0o700 });
  const project = await ephemeralProject();
  const hub = memoryHub(SERVER);
  const server = await ServerEngine.start({
    name: SERVER.name,
    org: SERVER.org,
    workspace: join(ws, 'server'),
    listener: hub,
    authorize: () => true,
    ...(o.aggregation === undefined ? {} : { aggregation: o.aggregation }),
    ...(o.aggregator === undefined ? {} : { aggregator: o.aggregator }),
    ...(o.schemes === undefined ? {} : { schemes: [...o.schemes] }),
    ...(o.audit === undefined ? {} : { audit: o.audit('server') }),
    logger: o.logger ?? silentLogger,
    ...(o.onRound === undefined ? {} : { onRound: (_job: string, r: RoundRecord) => o.onRound?.(r) }),
  });
  const engines: ClientEngine[] = [];
  let admin: AdminClient | undefined;
  try {
    for (const s of sites) {
      const workspace = join(ws, s.name);
      await mkdir(workspace, { recursive: true, mode: 0o700 });
      const identity: PeerIdentity = { name: s.name, org: s.name, type: 'client' };
      engines.push(
        await ClientEngine.start({
          site: { name: s.name, org: s.name },
          link: memoryLink(() => hub.connect(identity)),
          // Whatever the site's policy, it checks job signatures against this simulation's own root.
          policy: { ...(await (o.policy ?? ((_s, d) => simulatedSitePolicy(d, filters)))(s, definition)), jobTrust: project.trust },
          learners: await o.learners(s),
          filters,
          workspace,
          ...(o.audit === undefined ? {} : { audit: o.audit(s.name) }),
          logger: o.siteLogger?.(s) ?? silentLogger,
        }),
      );
    }
    await Promise.all(engines.map((e) => e.registered(60_000)));
    admin = new AdminClient(await hub.connect(ADMIN), { timeoutMs: 120_000, signer: project.signer });
    const id = await admin.submit(o.job);
    const onAbort = (): void => void admin?.abort(id).catch(() => undefined);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const perRound = definition.round_timeout_s * 1000 * (definition.retries + 1);
    const record = await server.waitForJob(id, o.timeoutMs ?? definition.rounds * perRound + 300_000).catch((e: unknown) => {
      throw new FlareRuntimeError('E_RUNTIME_SIMULATION', `the simulated job did not end in time (${e instanceof Error ? e.message : String(e)})`, { cause: e });
    });
    o.signal?.removeEventListener('abort', onAbort);
    const model = record.status === 'FINISHED' ? await admin.download(id) : undefined;
    return { record, ...(model === undefined ? {} : { model }), sites };
  } finally {
    admin?.close();
    for (const e of engines) await e.close();
    await server.close();
  }
}
