import { FlareRuntimeError, META, SecAggError, decodeFrame, model, tensor, type FLModel, type JsonValue, type Tensor } from '@flare/core';
import { checkRoundConfig, checkSecAggCompatibility, decodeSum, planSecAggRound, SecAggServer, type RoundConfig, type SecAggResult, type SecAggVerifier } from '@flare/secagg';
import { z } from 'zod';
import type { RoundRecord } from '../server/job-store.js';
import { parseWorkflowArgs } from './args.js';
import { siteMetrics } from './metrics.js';
import { codeOf, scatter } from './scatter-gather.js';
import { dpPlanner, planDpRound } from './secagg-dp.js';
import { certificateVerifier } from './secagg-identity.js';
import { layoutOf, SECAGG_TASKS, SecAggArgs, SECURE_AGGREGATION, SECURE_AGGREGATION_RESULT, type SecAggLayout } from './secure-aggregation.js';
import type { TaskResult, Workflow, WorkflowCheck, WorkflowContext } from './workflow.js';

/** Options of {@link secureAggregation}. */
export interface SecureAggregationOptions {
  /**
   * The project root (the server kit's `rootCaPem`), and its CRL: with it the server checks each site's signed
   * round keys on arrival and refuses a bad one at once (E_SECAGG_SIGNATURE) instead of letting honest sites stop
   * later. The sites check them regardless.
   */
  readonly rootCaPem?: string;
  /** The CRL, or a function giving the newest one the server holds (read at each check). */
  readonly crlPem?: string | (() => string | undefined);
}

/** One round's outcome as the job result records it. */
interface RoundOutcome {
  readonly round: number;
  readonly sites: readonly string[];
  readonly summed: readonly string[];
  readonly dropped: SecAggResult['dropped'];
  /** Why each dropped site dropped: its own code, or the server's refusal of its message. */
  readonly codes: Readonly<Record<string, string>>;
  readonly degree: number;
  readonly threshold: number;
  readonly bits: number;
}

const SetupAnswer = z.strictObject({ certificate: z.string().min(1).max(16 * 1024) });
const KeysHeader = z.looseObject({ neighbours: z.array(z.looseObject({ site: z.string().max(256) })).max(10_000) });

/** The round's configuration: planned from the fractions, with the job's threshold when it names one. */
export function secAggRoundConfig(job: string, round: number, sites: readonly string[], layout: SecAggLayout, args: SecAggArgs, rounds = 1): RoundConfig {
  const base = { job, round, sites, corruptFraction: args.corrupt_fraction, dropoutFraction: args.dropout_fraction, bits: args.bits };
  const config =
    args.dp === undefined
      ? planSecAggRound({ ...base, encoding: { dimension: layout.dimension, clip: args.clip } }).config
      : planDpRound(dpPlanner({ ...base, dimension: layout.dimension, clip: args.clip }, args.dp.min_honest), rounds, args.dp);
  if (args.threshold === undefined) return config;
  return checkRoundConfig({ ...config, threshold: args.threshold, minSurvivors: Math.max(args.threshold, Math.min(config.minSurvivors, sites.length)) });
}

/** The mean of the survivors' clipped updates as a `diff` model shaped like the global model's float tensors. */
function meanDiff(sum: Float64Array, count: number, global: FLModel, layout: SecAggLayout): FLModel {
  const params = new Map<string, Tensor>();
  let at = 0;
  for (const [i, name] of layout.names.entries()) {
    const g = global.params.get(name)!;
    const size = layout.sizes[i]!;
    const data = g.dtype === 'float64' ? new Float64Array(size) : new Float32Array(size);
    for (let j = 0; j < size; j++) data[j] = sum[at + j]! / count;
    params.set(name, tensor(data, g.shape, g.dtype));
    at += size;
  }
  return model(params, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1 });
}

/** Refuses at submit what cannot run on masked inputs (see docs/threat-model/secagg.md). */
function check(job: WorkflowCheck): void {
  const spec = job.definition.aggregator;
  const name = spec?.name ?? 'fedavg';
  const args = (spec as { args?: Record<string, unknown> } | undefined)?.args;
  const filters = [...job.definition.task_result_filters, ...job.definition.task_data_filters].map((f) => f.name);
  checkSecAggCompatibility({
    aggregator: name === 'norm-bound' ? 'fedavg' : name,
    serverNormBound: name === 'norm-bound' || (args !== undefined && args['normBound'] !== undefined),
    homomorphicEncryption: filters.some((f) => f.startsWith('he-')),
  });
}

/**
 * Masking secure aggregation (SecAgg+, @flare/secagg) as a workflow: each round the server plans the round
 * (neighbourhood, threshold, ring encoding) for the sites present, then relays the protocol's five exchanges
 * (`secagg.setup` with the global model: the sites train and answer signed round keys; `secagg.keys`;
 * `secagg.shares`; `secagg.survivors`; `secagg.unmask`), and unmasks the sum of the survivors' clipped updates.
 * It never sees one site's update: shares are sealed site to site, inputs are masked. A site that fails, refuses
 * or goes away in any exchange is dropped (the protocol removes its masks with the survivors' shares); the round
 * fails with the protocol's code (E_SECAGG_TOO_FEW, E_SECAGG_BELOW_THRESHOLD) when too few remain. The mean of the
 * summed updates goes through the job's aggregation (FedAvg, or a FedOpt server optimizer) as one update.
 *
 * Refused at submit (E_SECAGG_INCOMPATIBLE): robust aggregators, a server-side norm bound, HE filters.
 */
export function secureAggregation(options: SecureAggregationOptions = {}): Workflow {
  return {
    name: SECURE_AGGREGATION,
    args: SecAggArgs,
    check,
    async run(ctx: WorkflowContext): Promise<void> {
      const def = ctx.definition;
      const args = parseWorkflowArgs(SecAggArgs, def);
      const phaseMs = (args.phase_timeout_s ?? def.round_timeout_s) * 1000;
      let global = ctx.start.global;
      const layout = layoutOf(global);
      if (layout.dimension === 0) throw new SecAggError('E_SECAGG_DIMENSION', `job ${ctx.job}: the global model has no float tensor to aggregate`);
      const outcomes: RoundOutcome[] = [];
      for (let round = ctx.start.round; round < def.rounds; round++) {
        ctx.signal.throwIfAborted();
        const started = performance.now();
        const sites = [...ctx.sites()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        if (sites.length < def.min_clients) {
          throw new FlareRuntimeError('E_RUNTIME_MIN_CLIENTS', `secure aggregation round ${round}: ${sites.length} sites present, min_clients is ${def.min_clients}`);
        }
        const config = secAggRoundConfig(ctx.job, round, sites, layout, args, def.rounds);
        const noise = config.encoding?.noise ?? null;
        const roundRef = ctx.audit({ action: 'round_started', job: ctx.job, msg: `secure aggregation round ${round} with ${sites.length} sites (degree ${config.degree}, threshold ${config.threshold}, ${config.bits} bits${noise === null ? '' : `, distributed DP: noise ${noise.stddev.toPrecision(4)} ring units per site, ${noise.honestSites} honest sites counted`})`, data: { round, sites, degree: config.degree, threshold: config.threshold, bits: config.bits, ...(noise === null ? {} : { noise_stddev: noise.stddev, honest_sites: noise.honestSites }) } });
        ctx.logger.info('secure aggregation round started', { job: ctx.job, round, sites: sites.length, threshold: config.threshold });
        const certificates = new Map<string, string>();
        const verifier: SecAggVerifier | undefined = options.rootCaPem === undefined ? undefined : certificateVerifier(options.rootCaPem, certificates, options.crlPem);
        const server = new SecAggServer(config, verifier === undefined ? {} : { verifier });
        const bytes: Record<string, number> = {};
        const codes: Record<string, string> = {};
        const validation = new Map<string, Readonly<Record<string, number>>>();
        const own: Record<string, Record<string, number>> = {};

        /** One exchange: each site gets its message; its answer goes to the protocol, or the site drops. */
        const exchange = async (kind: string, messages: ReadonlyMap<string, Uint8Array>, extra: (site: string) => { data?: JsonValue; model?: FLModel }, accept: (site: string, r: TaskResult) => void): Promise<void> => {
          const to = [...messages.keys()].filter((s) => ctx.sites().includes(s));
          for (const s of messages.keys()) if (!to.includes(s)) codes[s] ??= 'E_RUNTIME_DISCONNECTED';
          await scatter(
            ctx,
            to,
            phaseMs,
            (site) => {
              const e = extra(site);
              const payload = messages.get(site)!;
              return ctx.send(site, { kind, round, ...(e.model === undefined ? { payload } : { model: e.model }), ...(e.data === undefined ? {} : { data: e.data }) });
            },
            (site, r) => {
              bytes[site] = (bytes[site] ?? 0) + r.bytes;
              try {
                accept(site, r);
              } catch (e) {
                codes[site] = codeOf(e);
                ctx.audit({ action: 'secagg_message_refused', job: ctx.job, ref: roundRef, user: site, msg: `round ${round}: ${kind} answer of ${site} refused: ${codeOf(e)}: ${e instanceof Error ? e.message.slice(0, 300) : ''}`, data: { round, site, kind, code: codeOf(e) } });
              }
            },
            (site, e, late) => {
              if (!late) codes[site] = codeOf(e);
              ctx.audit({ action: late ? 'late_result_ignored' : 'result_missing', job: ctx.job, ref: roundRef, user: site, msg: `round ${round}: ${site} sent no ${kind} answer: ${codeOf(e)}${e instanceof Error ? `: ${e.message.slice(0, 300)}` : ''}`, data: { round, site, kind, code: codeOf(e) } });
              ctx.logger.warn('secure aggregation: site dropped', { job: ctx.job, round, site, kind, code: codeOf(e) });
            },
          );
          ctx.signal.throwIfAborted();
        };

        // 1. Setup: the global model and the configuration (in the task's data, as base64url); keys come back.
        const setup = Buffer.from(server.setupMessage()).toString('base64url');
        await exchange(SECAGG_TASKS.setup, new Map(sites.map((s) => [s, new Uint8Array()])), () => ({ model: global, data: { setup } }), (site, r) => {
          const answer = SetupAnswer.safeParse(r.data);
          if (!answer.success) throw new SecAggError('E_SECAGG_MALFORMED', `${site}'s setup answer carries no certificate`);
          certificates.set(site, answer.data.certificate);
          server.acceptKeys(site, r.payload);
          validation.set(site, r.metrics);
          own[site] = Object.fromEntries(Object.entries(r.metrics).filter(([k]) => !k.startsWith('val_')));
        });
        // 2. Keys: each site gets its neighbours' advertisements and certificates; encrypted shares come back.
        const keys = server.closeKeys();
        const neighbours = (message: Uint8Array): Record<string, string> => {
          const { header } = decodeFrame(message, KeysHeader, { maxHeaderBytes: message.length, maxBytes: 0 });
          return Object.fromEntries(header.neighbours.map((n) => [n.site, certificates.get(n.site)!] as const).filter(([, pem]) => pem !== undefined));
        };
        await exchange(SECAGG_TASKS.keys, keys, (site) => ({ data: { certificates: neighbours(keys.get(site)!) } }), (site, r) => server.acceptShares(site, r.payload));
        // 3. Shares relayed (sealed: the server cannot read them); masked inputs come back and are summed.
        await exchange(SECAGG_TASKS.shares, server.closeShares(), () => ({}), (site, r) => {
          server.acceptMaskedInput(site, r.payload);
          // With distributed DP: the epsilon the site's own ledger has spent.
          own[site] = { ...own[site], ...r.metrics };
        });
        // 4. The survivor set; each survivor's signature over it comes back (the consistency check).
        await exchange(SECAGG_TASKS.survivors, server.closeMaskedInputs(), () => ({}), (site, r) => server.acceptConsistency(site, r.payload));
        // 5. Unmask: the survivors reveal shares; the server rebuilds and removes the masks.
        await exchange(SECAGG_TASKS.unmask, server.closeConsistency(), () => ({}), (site, r) => server.acceptUnmask(site, r.payload));
        const t0 = performance.now();
        const result = server.finish();
        const mean = meanDiff(decodeSum(result.sum, config), result.summed.length, global, layout);
        ctx.aggregation.begin(round, global);
        ctx.aggregation.accept(mean, { from: SECURE_AGGREGATION });
        global = ctx.aggregation.advance(global, ctx.aggregation.result(), { [META.CURRENT_ROUND]: round });
        const aggregateSeconds = (performance.now() - t0) / 1000;

        // Round r's setup answers validate the model after round r - 1.
        if (round > 0 && validation.size > 0) {
          const m = siteMetrics(validation);
          await ctx.roundMetrics(round - 1, m.summary, m.perSite);
        }
        const dropped = Object.values(result.dropped).reduce((n, d) => n + d.length, 0);
        const record: RoundRecord = {
          round,
          contributors: [...result.summed],
          seconds: (performance.now() - started) / 1000,
          bytes,
          metrics: {},
          // Only the summed sites' own numbers: a dropped site's may describe an update that is not in the sum.
          site_metrics: Object.fromEntries(Object.entries(own).filter(([s]) => result.summed.includes(s))),
          aggregate_seconds: aggregateSeconds,
        };
        await ctx.checkpoint(round, global, record);
        const outcome: RoundOutcome = {
          round,
          sites,
          summed: [...result.summed],
          dropped: result.dropped,
          codes: Object.fromEntries(Object.entries(codes).filter(([s]) => !result.summed.includes(s))),
          degree: config.degree,
          threshold: config.threshold,
          bits: config.bits,
        };
        outcomes.push(outcome);
        await ctx.saveResult(SECURE_AGGREGATION_RESULT, { rounds: outcomes } as unknown as JsonValue);
        ctx.audit({ action: 'round_completed', job: ctx.job, ref: roundRef, msg: `secure aggregation round ${round}: ${result.summed.length} masked updates summed, ${dropped} sites dropped; checkpointed`, data: { round, contributors: [...result.summed], dropped: result.dropped as unknown as JsonValue, codes: outcome.codes } });
        await ctx.events.emit('after-round', { job: ctx.job, round, contributors: [...result.summed] });
      }
      // Every site validates the final model, so the last round has its metrics.
      const validation = new Map<string, Readonly<Record<string, number>>>();
      await scatter(
        ctx,
        ctx.sites(),
        def.round_timeout_s * 1000,
        (site) => ctx.send(site, { kind: 'validate', round: def.rounds, model: global }),
        (site, r) => validation.set(site, r.metrics),
        (site, e) => ctx.logger.warn('final validation missing', { job: ctx.job, site, code: codeOf(e) }),
      );
      if (validation.size > 0) {
        const m = siteMetrics(validation);
        await ctx.roundMetrics(def.rounds - 1, m.summary, m.perSite);
      }
    },
  };
}
