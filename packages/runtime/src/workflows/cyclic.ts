import { createHash } from 'node:crypto';
import { FlareRuntimeError, META, checkUpdateAgainst, decodeModel, flareErrorFromCode, isFlareErrorCode, manifestOf, type FLModel, type JsonValue } from '@flare/core';
import { z } from 'zod';
import type { RoundRecord } from '../server/job-store.js';
import { tensorDigest } from '../site/initial-model.js';
import { parseWorkflowArgs } from './args.js';
import { HopProof } from './cyclic-hop.js';
import { siteMetrics } from './metrics.js';
import { codeOf, scatter } from './scatter-gather.js';
import type { Workflow, WorkflowContext } from './workflow.js';

/** The name meta.json uses. */
export const CYCLIC = 'cyclic';

/** `workflow_args` of the cyclic workflow. */
export const CyclicArgs = z.strictObject({
  /**
   * The order the model visits the sites in each round: `fixed` (meta.json's `deploy` order, or by name for
   * `@ALL`) or `random` (a fresh permutation each round, drawn from the job id, round and attempt, so a resumed
   * job visits in the same order).
   */
  order: z.enum(['fixed', 'random']).default('fixed'),
  /** Seconds one site may take for its hop before it is skipped (default: round_timeout_s). */
  hop_timeout_s: z.number().positive().max(7 * 24 * 3600).optional(),
});

/**
 * What the server says with each `train` hop and with the final `validate` (the task's `data`): the hop's place
 * in the round, `from`, the site whose training produced the model sent (absent while no site has trained it),
 * and `proof`, that site's signature over the model (see signedCyclicSite). In round 0 a model no site has
 * trained is the initial model: the site checks it against the one the admin signed. Bounded: one name and one
 * proof, however many sites the round visits.
 */
export const CyclicHop = z.strictObject({
  hop: z.int().min(0),
  attempt: z.int().min(0),
  from: z.string().min(1).max(64).optional(),
  /** Checked by the receiving site (verifyHop), which refuses a malformed one with its own code. */
  proof: z.unknown().optional(),
});
/** A {@link CyclicHop} as parsed. */
export type CyclicHop = z.output<typeof CyclicHop>;

/** What a site that signs its hops returns with its train result (see signedCyclicSite). */
const HopResult = z.strictObject({ proof: HopProof });

/** The last signed hop, as saved with a round's checkpoint so the next round (resumed or not) passes it on. */
const Carried = z.looseObject({ last: HopProof.optional() });

/** Where a round is, saved after every hop so a killed server resumes at the next hop. */
const HopState = z.strictObject({
  order: z.array(z.string().max(64)).max(10_000),
  /** The next position in `order`. */
  next: z.int().min(0),
  attempt: z.int().min(0),
  /** Sites whose hop succeeded this round, in visiting order. */
  done: z.array(z.string().max(64)).max(100_000),
  /** Skipped sites and why (their own code). */
  skipped: z.record(z.string().max(64), z.string().max(64)),
  bytes: z.record(z.string().max(64), z.int().min(0)),
  /** Each site's validation of the model as it reached it (`val_*`). */
  validation: z.record(z.string().max(64), z.record(z.string().max(80), z.number())),
  /** Seconds spent in the round before this state was saved. */
  seconds: z.number().min(0),
  /** The proof of the hop that produced the model, when its site signed it (passed on with the next hop). */
  last: HopProof.optional(),
});
type HopState = z.output<typeof HopState>;

/** A hop's task data: its place, and who trained the model sent (with that site's proof when it signed it). */
function hopData(hop: number, attempt: number, from: HopProof | string | undefined): Record<string, JsonValue> {
  if (from === undefined) return { hop, attempt };
  if (typeof from === 'string') return { hop, attempt, from };
  return { hop, attempt, from: from.site, proof: from };
}

/**
 * The proof a site returned with its hop, when it signs its hops: it must be its own, for this job and hop, over
 * the model the server formed (so an honest server never passes on a proof the next site would refuse). A site
 * that signs nothing (no kit: the simulator) returns none; the next site then decides whether it takes that.
 * @throws FlareRuntimeError E_RUNTIME_HOP_BINDING or E_RUNTIME_HOP_MODEL.
 */
function signedBy(data: JsonValue | undefined, site: string, job: string, at: { round: number; attempt: number; hop: number }, next: FLModel): HopProof | undefined {
  const r = HopResult.safeParse(data);
  if (!r.success) return undefined;
  const p = r.data.proof;
  if (p.site !== site || p.job !== job || p.round !== at.round || p.attempt !== at.attempt || p.hop !== at.hop) {
    throw new FlareRuntimeError('E_RUNTIME_HOP_BINDING', `${site}'s hop signature is for ${p.site} job ${p.job.slice(0, 64)} round ${p.round} attempt ${p.attempt} hop ${p.hop}, not for this hop (round ${at.round} attempt ${at.attempt} hop ${at.hop})`);
  }
  if (tensorDigest(next) !== p.model) throw new FlareRuntimeError('E_RUNTIME_HOP_MODEL', `${site} signed another model than the one its result gives (round ${at.round} hop ${at.hop})`);
  return p;
}

/** The visiting order of one attempt of one round. */
export function cyclicOrder(sites: readonly string[], how: 'fixed' | 'random', job: string, round: number, attempt: number): string[] {
  const order = [...sites];
  if (how === 'fixed') return order;
  // Fisher-Yates driven by SHA-256(job, round, attempt, counter): reproducible, so a resume keeps the order.
  let counter = 0;
  const draw = (n: number): number => {
    const h = createHash('sha256').update(`${job}\u0000${round}\u0000${attempt}\u0000${counter++}`).digest();
    return h.readUInt32BE(0) % n;
  };
  for (let i = order.length - 1; i > 0; i--) {
    const j = draw(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/**
 * FLARE's CyclicController: in each round the model visits the sites one after the other (`order`); each site
 * trains on what the previous one sent, so each hop passes through the sending site's result filters and the
 * receiving site's data filters. A site that is down, refuses or fails is skipped with a `hop_skipped` audit
 * event naming its code; the model goes on to the next site unchanged. After every hop the model and the
 * round's progress are saved durably (`saveProgress`), so a killed server resumes at the next hop. A round in
 * which fewer than `min_clients` sites trained goes round again (`retries` times) from where it is, then the job
 * fails with the sites' codes. After the last round every site validates the final model.
 */
export const cyclic: Workflow = {
  name: CYCLIC,
  args: CyclicArgs,
  async run(ctx: WorkflowContext): Promise<void> {
    const def = ctx.definition;
    const args = parseWorkflowArgs(CyclicArgs, def);
    const hopMs = (args.hop_timeout_s ?? def.round_timeout_s) * 1000;
    const named = (): string[] => (def.deploy.includes('@ALL') ? [...ctx.sites()] : [...new Set(def.deploy)]);
    let current = ctx.start.global;
    let resumed: HopState | undefined;
    // The proof of the hop that produced `current`: it goes with the model to the next site, across rounds too.
    let last: HopProof | undefined;
    if (ctx.start.state !== undefined) {
      const s = HopState.safeParse(ctx.start.state);
      if (s.success) resumed = s.data;
      last = Carried.safeParse(ctx.start.state).data?.last;
    }
    for (let round = ctx.start.round; round < def.rounds; round++) {
      let state: HopState = resumed ?? { order: cyclicOrder(named(), args.order, ctx.job, round, 0), next: 0, attempt: 0, done: [], skipped: {}, bytes: {}, validation: {}, seconds: 0, ...(last === undefined ? {} : { last }) };
      resumed = undefined;
      const roundRef = ctx.audit({ action: 'round_started', job: ctx.job, msg: `cyclic round ${round}: ${state.order.join(' -> ')}`, data: { round, order: state.order, next: state.next, attempt: state.attempt } });
      ctx.logger.info('cyclic round started', { job: ctx.job, round, order: state.order, next: state.next });
      let started = performance.now() - state.seconds * 1000;
      for (;;) {
        while (state.next < state.order.length) {
          ctx.signal.throwIfAborted();
          const site = state.order[state.next]!;
          const skip = (code: string, message: string): void => {
            state = { ...state, skipped: { ...state.skipped, [site]: code } };
            ctx.audit({ action: 'hop_skipped', job: ctx.job, ref: roundRef, user: site, msg: `round ${round}: ${site} skipped: ${code}: ${message.slice(0, 300)}`, data: { round, site, code } });
            ctx.logger.warn('cyclic hop skipped', { job: ctx.job, round, site, code });
          };
          if (!ctx.sites().includes(site)) {
            skip('E_RUNTIME_DISCONNECTED', `${site} is not connected or has not deployed the job`);
          } else {
            let result: { next: FLModel; proof: HopProof | undefined; bytes: number; metrics: Readonly<Record<string, number>> } | undefined;
            const sent = state.next;
            let failure: { code: string; message: string } | undefined;
            await scatter(
              ctx,
              [site],
              hopMs,
              (s) => {
                const hop = hopData(state.next, state.attempt, state.last ?? state.done.at(-1));
                const ref = ctx.audit({ action: 'task_sent', job: ctx.job, ref: roundRef, msg: `train round ${round} hop ${state.next} to ${s}`, data: { round, site: s, hop: state.next, attempt: state.attempt, ...(hop['from'] === undefined ? {} : { from: hop['from'] }) } });
                return ctx.send(s, { kind: 'train', round, model: current, data: hop, ref });
              },
              (s, r) => {
                try {
                  const update = decodeModel(r.payload);
                  // The next site trains on this: it must be the whole model's tensors, as the global model has them.
                  checkUpdateAgainst(manifestOf(current), update, { from: s });
                  const next = ctx.aggregation.advance(structuredClone(current), update, { [META.CURRENT_ROUND]: round });
                  result = { next, proof: signedBy(r.data, s, ctx.job, { round, attempt: state.attempt, hop: sent }, next), bytes: r.bytes, metrics: r.metrics };
                } catch (e) {
                  failure = { code: codeOf(e), message: e instanceof Error ? e.message : 'invalid update' };
                }
              },
              (_s, e, late) => {
                if (!late) failure = { code: codeOf(e), message: e instanceof Error ? e.message : String(e) };
              },
            );
            // A hop cut short by a shutdown or an abort is not a skip: the resumed job runs it again.
            ctx.signal.throwIfAborted();
            if (result === undefined) skip(failure?.code ?? 'E_RUNTIME_TIMEOUT', failure?.message ?? `no answer within ${hopMs} ms`);
            if (result !== undefined) {
              const { next, proof, bytes, metrics } = result;
              current = next;
              const validation = Object.fromEntries(Object.entries(metrics).filter(([k]) => k.startsWith('val_')));
              const { last: _previous, ...rest } = state;
              state = { ...rest, ...(proof === undefined ? {} : { last: proof }), done: [...state.done, site], bytes: { ...state.bytes, [site]: (state.bytes[site] ?? 0) + bytes }, validation: { ...state.validation, [site]: validation } };
              ctx.audit({ action: 'hop_completed', job: ctx.job, ref: roundRef, user: site, msg: `round ${round}: ${site} trained the model (hop ${state.next})`, data: { round, site, hop: state.next } });
            }
          }
          state = { ...state, next: state.next + 1, seconds: (performance.now() - started) / 1000 };
          // Durable after every hop: a killed server resumes at the next one with this model.
          if (state.next < state.order.length) await ctx.saveProgress(round, current, state as unknown as JsonValue);
        }
        // Distinct sites: a site that trained in two passes of a retried round counts once.
        const trained = new Set(state.done).size;
        if (trained >= Math.min(def.min_clients, state.order.length) && trained > 0) break;
        const attempt = state.attempt + 1;
        ctx.audit({ action: 'round_below_min_clients', job: ctx.job, ref: roundRef, msg: `cyclic round ${round}: ${trained} of min ${def.min_clients} sites trained (attempt ${attempt})`, data: { round, attempt, received: trained, failures: state.skipped } });
        if (attempt > def.retries) {
          const why = Object.entries(state.skipped).map(([s, c]) => `${s}: ${c}`).join(', ');
          const codes = new Set(Object.values(state.skipped));
          const [only] = codes;
          if (trained === 0 && codes.size === 1 && only !== undefined && isFlareErrorCode(only) && only !== 'E_RUNTIME_DISCONNECTED') {
            throw flareErrorFromCode(only, `cyclic round ${round}: every site failed with ${only} (${why}), after ${attempt} attempts`);
          }
          throw new FlareRuntimeError('E_RUNTIME_MIN_CLIENTS', `cyclic round ${round}: ${trained} sites trained, min_clients is ${def.min_clients}, after ${attempt} attempts${why === '' ? '' : ` (${why})`}`);
        }
        // Round again from where the model is: the hops that succeeded are not undone.
        state = { ...state, order: cyclicOrder(named(), args.order, ctx.job, round, attempt), next: 0, attempt, skipped: {} };
        started = performance.now() - state.seconds * 1000;
        await ctx.saveProgress(round, current, state as unknown as JsonValue);
      }
      const m = siteMetrics(new Map(Object.entries(state.validation)));
      const record: RoundRecord = {
        round,
        contributors: [...state.done],
        seconds: (performance.now() - started) / 1000,
        bytes: state.bytes,
        // The sites' validation of the model as it reached each of them in the round (the last round's is
        // replaced by every site's validation of the final model below).
        metrics: m.summary,
        site_metrics: {},
        ...(Object.keys(m.perSite).length === 0 ? {} : { site_validation: m.perSite }),
      };
      last = state.last;
      await ctx.checkpoint(round, current, record, { order: state.order, ...(last === undefined ? {} : { last }) });
      ctx.audit({ action: 'round_completed', job: ctx.job, ref: roundRef, msg: `cyclic round ${round}: ${state.done.join(' -> ')} trained; checkpointed`, data: { round, contributors: [...state.done], skipped: state.skipped } });
      await ctx.events.emit('after-round', { job: ctx.job, round, contributors: [...state.done] });
    }
    // Every site validates the final model, so the last round has its metrics.
    const validation = new Map<string, Readonly<Record<string, number>>>();
    await scatter(
      ctx,
      ctx.sites(),
      def.round_timeout_s * 1000,
      (site) => ctx.send(site, { kind: 'validate', round: def.rounds, model: current, data: hopData(0, 0, last) }),
      (site, r) => validation.set(site, r.metrics),
      (site, e) => ctx.logger.warn('final validation missing', { job: ctx.job, site, code: codeOf(e) }),
    );
    if (validation.size > 0) {
      const m = siteMetrics(validation);
      await ctx.roundMetrics(def.rounds - 1, m.summary, m.perSite);
    }
  },
};
