import { FlareRuntimeError, SecAggError, decodeModel, type AuditHook, type FLModel } from '@flare/core';
import { checkSecAggCompatibility, encodeUpdate, exactDiscreteGaussian, SecAggClient } from '@flare/secagg';
import { z } from 'zod';
import { parseWorkflowArgs } from './args.js';
import { asValidation, scatterAndGatherSite } from './scatter-gather.js';
import { chargeSecAggRound, type SecAggBudget } from './secagg-dp.js';
import { certificateVerifier, kitSigner, type SecAggIdentity } from './secagg-identity.js';
import { flattenUpdate, layoutOf, SECAGG_TASKS, SecAggArgs, SECURE_AGGREGATION, type SecAggSitePhase } from './secure-aggregation.js';
import type { SiteTaskContext, SiteTaskHandler, SiteWorkflow } from './workflow.js';

/** Options of {@link secureAggregationSite}. */
export interface SecureAggregationSiteOptions {
  /** This site's kit key, certificate and project root (and CRL). */
  readonly identity: SecAggIdentity;
  /**
   * The site's own budget for distributed DP (its privacy ledger and cap): each round of a DP job is charged
   * before the masked input leaves. A site without one refuses DP jobs at deploy (E_SECAGG_CONFIG).
   */
  readonly budget?: SecAggBudget;
  /**
   * TEST HOOK, never set in production: called with each phase just before the site answers it. The CLI sets
   * it from `FLARE_TEST_SECAGG_EXIT_AT` to make a site process exit at a named phase, so a test kills a site at
   * an exact point of the protocol instead of racing a timer; a throw here refuses the phase (the site drops).
   */
  readonly beforeAnswer?: (phase: SecAggSitePhase) => void;
  /**
   * TEST HOOK, never set in production: called with this site's plaintext update of each round (before
   * clipping), so a test can check the unmasked sum against the plaintext sum. It defeats secure aggregation.
   */
  readonly onUpdate?: (round: number, update: Float64Array) => void;
}

/** What the site keeps for its current round, in the job's memory. */
interface RoundState {
  readonly round: number;
  readonly client: SecAggClient;
  readonly update: Float64Array;
  /** Neighbours' certificates as the server relayed them; the verifier checks each against the project root. */
  readonly certificates: Map<string, string>;
}

const STATE = 'secagg';
const SetupData = z.strictObject({ setup: z.string().min(1).max(4 * 1024 * 1024) });
const PEM = z.string().min(1).max(16 * 1024);
const KeysData = z.strictObject({ certificates: z.record(z.string().min(1).max(256), PEM) });

function dataOf<T>(schema: z.ZodType<T>, t: SiteTaskContext): T {
  const r = schema.safeParse(t.data);
  if (!r.success) throw new SecAggError('E_SECAGG_MALFORMED', `task ${t.kind} of job ${t.job} round ${t.round}: its data is not what the secure-aggregation workflow sends (${r.error.issues[0]?.message ?? 'invalid'})`);
  return r.data;
}

function stateOf(t: SiteTaskContext): RoundState {
  const s = t.memory.get(STATE) as RoundState | undefined;
  if (s === undefined || s.round !== t.round) {
    throw new SecAggError('E_SECAGG_PHASE', `${t.site} has no secure-aggregation round ${t.round} of job ${t.job} in progress (task ${t.kind})`);
  }
  return s;
}

/** Runs one protocol step; any refusal stops this site's round (its secrets are forgotten). */
function step(t: SiteTaskContext, run: (s: RoundState) => Uint8Array): { payload: Uint8Array } {
  const s = stateOf(t);
  try {
    return { payload: run(s) };
  } catch (e) {
    s.client.abort();
    t.memory.delete(STATE);
    throw e;
  }
}

/**
 * The site side of the secure-aggregation workflow (SecAgg+ of @flare/secagg): in `secagg.setup` the site
 * validates and trains on the global model (through its data and result filters, like scatter-and-gather), keeps
 * its update (the diff from the global model), checks the round's configuration and answers round keys signed
 * with its kit key and its certificate; then it answers each relayed message with its state machine's reply. The
 * server relays what it cannot read: shares are sealed between two sites with keys from X25519 agreement, and
 * every site checks each neighbour's certificate (project root, CN = the site's name, type client, not revoked)
 * before trusting its signed keys. The update leaves the site only masked.
 *
 * At deploy it refuses (E_SECAGG_INCOMPATIBLE) a job whose result filters encrypt updates (HE): both cannot apply.
 */
export function secureAggregationSite(options: SecureAggregationSiteOptions): SiteWorkflow {
  const { identity } = options;
  const signer = kitSigner(identity.privateKey);
  const hook = (phase: SecAggSitePhase): void => options.beforeAnswer?.(phase);
  /** Each admitted job's arguments, from the admin-signed definition (never from the server's tasks). */
  const jobs = new Map<string, SecAggArgs>();

  const setup: SiteTaskHandler = async (t) => {
    const { setup: setupB64 } = dataOf(SetupData, t);
    const args = jobs.get(t.job);
    if (args === undefined) throw new SecAggError('E_SECAGG_CONFIG', `${t.site} did not admit job ${t.job} as a secure-aggregation job`);
    const global = await t.filterIn(decodeModel(t.payload));
    const lctx = { site: t.site, job: t.job, round: t.round, signal: t.signal };
    const v = await t.learner.validate(global, lctx);
    const trained = await t.learner.train(global, lctx);
    const out: FLModel = await t.filterOut({ ...trained, metrics: { ...trained.metrics, ...asValidation(v) } });
    const update = flattenUpdate(out, global, layoutOf(global));
    options.onUpdate?.(t.round, update);
    const certificates = new Map<string, string>([]);
    const client = new SecAggClient({
      site: t.site,
      job: t.job,
      round: t.round,
      signer,
      // The newest CRL the site holds when it has one (a revocation pushed after provisioning), else its kit's.
      verifier: certificateVerifier(identity.rootCaPem, certificates, () => identity.crl?.() ?? identity.crlPem),
      accept: (config) => {
        if (config.encoding === null || config.encoding.dimension !== update.length) {
          throw new SecAggError('E_SECAGG_CONFIG', `the round sums ${config.encoding?.dimension ?? 'raw ring'} values; ${t.site}'s update has ${update.length}`);
        }
        if (config.encoding.clip !== args.clip) throw new SecAggError('E_SECAGG_CONFIG', `the round clips at ${config.encoding.clip}; job ${t.job} says ${args.clip}`);
        // The job asks for distributed DP: a configuration without noise, or counting on fewer honest sites than
        // the job states, is the server's doing and is refused.
        const noise = config.encoding.noise;
        if (args.dp !== undefined && (noise === null || (args.dp.min_honest !== undefined && noise.honestSites < args.dp.min_honest))) {
          throw new SecAggError('E_SECAGG_CONFIG', `job ${t.job} asks for distributed DP${args.dp.min_honest === undefined ? '' : ` counting on ${args.dp.min_honest} honest sites`}; the round's configuration ${noise === null ? 'adds no noise' : `counts on ${noise.honestSites}`}`);
        }
      },
    });
    t.memory.set(STATE, { round: t.round, client, update, certificates } satisfies RoundState);
    hook('setup');
    const answer = step(t, (s) => s.client.start(Buffer.from(setupB64, 'base64url')));
    t.audit({ action: 'secagg_keys_advertised', job: t.job, msg: `round ${t.round}: round keys signed with the kit key`, data: { round: t.round } });
    return { ...answer, data: { certificate: identity.certPem }, metrics: out.metrics ?? {} };
  };

  const keys: SiteTaskHandler = (t) => {
    const { certificates } = dataOf(KeysData, t);
    const s = stateOf(t);
    for (const [site, pem] of Object.entries(certificates)) s.certificates.set(site, pem);
    hook('keys');
    return Promise.resolve(step(t, (r) => r.client.receiveKeys(t.payload)));
  };

  const shares: SiteTaskHandler = async (t) => {
    hook('masked-input');
    const s = stateOf(t);
    const config = s.client.config!;
    let metrics: Record<string, number> = {};
    if (config.encoding?.noise != null) {
      // Distributed DP: charged to this site's own ledger before anything noised leaves (write-ahead).
      if (options.budget === undefined) throw new SecAggError('E_SECAGG_CONFIG', `${t.site} keeps no privacy ledger: it cannot account for distributed DP`);
      try {
        const spent = await chargeSecAggRound(options.budget, { site: t.site, job: t.job, audit: t.audit as AuditHook }, config);
        metrics = { epsilon: spent.epsilon, delta: spent.delta };
      } catch (e) {
        s.client.abort();
        t.memory.delete(STATE);
        throw e;
      }
    }
    const answer = step(t, (r) => r.client.receiveShares(t.payload, encodeUpdate(r.update, config, config.encoding?.noise == null ? {} : { sampler: exactDiscreteGaussian() })));
    t.audit({ action: 'secagg_input_masked', job: t.job, msg: `round ${t.round}: the update left masked${metrics['epsilon'] === undefined ? '' : ` (distributed DP; epsilon spent ${metrics['epsilon'].toPrecision(4)})`}`, data: { round: t.round, ...metrics } });
    return { ...answer, metrics };
  };

  const survivors: SiteTaskHandler = (t) => {
    hook('consistency');
    return Promise.resolve(step(t, (s) => s.client.receiveSurvivors(t.payload)));
  };

  const unmask: SiteTaskHandler = (t) => {
    hook('unmask');
    const answer = step(t, (s) => s.client.receiveUnmask(t.payload));
    // The round is over for this site: nothing of it is kept.
    t.memory.delete(STATE);
    return Promise.resolve(answer);
  };

  const validate = scatterAndGatherSite.tasks.get('validate');
  if (validate === undefined) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', 'scatter-and-gather has no validate task');
  return {
    name: SECURE_AGGREGATION,
    initialModelTasks: [SECAGG_TASKS.setup],
    tasks: new Map<string, SiteTaskHandler>([
      [SECAGG_TASKS.setup, setup],
      [SECAGG_TASKS.keys, keys],
      [SECAGG_TASKS.shares, shares],
      [SECAGG_TASKS.survivors, survivors],
      [SECAGG_TASKS.unmask, unmask],
      ['validate', validate],
    ]),
    admit(job) {
      const args = parseWorkflowArgs(SecAggArgs, job.definition);
      if (args.dp !== undefined && options.budget === undefined) {
        throw new SecAggError('E_SECAGG_CONFIG', `job ${job.job} asks for distributed DP and ${job.site} keeps no privacy ledger to account for it`);
      }
      jobs.set(job.job, args);
      checkSecAggCompatibility({ aggregator: 'fedavg', homomorphicEncryption: job.filters.result.some((f) => f.startsWith('he-')) });
    },
  };
}
