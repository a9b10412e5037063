import { SecAggError, type FLModel, type Tensor } from '@flare/core';
import { z } from 'zod';

/** The name meta.json uses for masking secure aggregation (SecAgg+ of @flare/secagg). */
export const SECURE_AGGREGATION = 'secure_aggregation';

/** The name of the job result the secure-aggregation workflow keeps (`AdminClient.result(job, SECURE_AGGREGATION_RESULT)`). */
export const SECURE_AGGREGATION_RESULT = 'secure_aggregation';

/** The task kinds of one round, in protocol order; each carries the server's message and answers the site's. */
export const SECAGG_TASKS = {
  /** The global model and the round configuration; the site trains and answers its signed round keys. */
  setup: 'secagg.setup',
  /** The neighbours' keys and certificates; the site answers its encrypted shares. */
  keys: 'secagg.keys',
  /** The shares relayed to the site; it answers its masked input. */
  shares: 'secagg.shares',
  /** The survivor set; the site answers its signature over it (the consistency check). */
  survivors: 'secagg.survivors',
  /** The neighbours' signatures; the site answers the shares it reveals. */
  unmask: 'secagg.unmask',
} as const;

/** The phases a site answers, as the test hook of `secureAggregationSite` names them. */
export type SecAggSitePhase = 'setup' | 'keys' | 'masked-input' | 'consistency' | 'unmask';

/** `workflow_args` of the secure-aggregation workflow. */
export const SecAggArgs = z.strictObject({
  /** L2 clip bound of each site's update (the diff from the global model), in the model's units. */
  clip: z.number().positive().max(1e9),
  /** Ring Z_{2^bits} of the masked inputs (default 20: 2.5 bytes per value). */
  bits: z.int().min(8).max(32).default(20),
  /**
   * Shares that rebuild a site's secret (t); default: planned from the fractions below. It must exceed half of
   * the neighbourhood + 1, and the round fails (E_SECAGG_TOO_FEW) when fewer sites remain.
   */
  threshold: z.int().min(2).max(10_000).optional(),
  /** The largest fraction of sites that may drop out during a round (default 0.4). */
  dropout_fraction: z.number().min(0).lt(1).default(0.4),
  /** The largest fraction of sites that may collude with the server (default 0). */
  corrupt_fraction: z.number().min(0).lt(1).default(0),
  /**
   * Distributed DP (the distributed discrete Gaussian of Kairouz, Liu, Steinke 2021): the noise is calibrated so
   * that the job's rounds spend at most `epsilon` at `delta` at each site, counting on `min_honest` honest sites
   * in any sum (default: what the plan guarantees). Each site charges its own privacy ledger per round and
   * refuses a round its budget cannot pay for.
   */
  dp: z
    .strictObject({
      epsilon: z.number().positive().max(1e6),
      delta: z.number().positive().lt(1).default(1e-5),
      min_honest: z.int().min(1).max(10_000).optional(),
    })
    .optional(),
  /** Seconds each of the round's five exchanges may take (default: round_timeout_s). */
  phase_timeout_s: z.number().positive().max(7 * 24 * 3600).optional(),
});
/** Parsed `workflow_args`. */
export type SecAggArgs = z.output<typeof SecAggArgs>;

/** The float tensors of a model that secure aggregation sums, in a fixed order (by name). */
export interface SecAggLayout {
  readonly names: readonly string[];
  readonly sizes: readonly number[];
  /** Values in all of them. */
  readonly dimension: number;
}

const isFloat = (t: Tensor): boolean => t.dtype === 'float32' || t.dtype === 'float64';

/** The layout of the global model: its float tensors by name. */
export function layoutOf(global: FLModel): SecAggLayout {
  const names = [...global.params.keys()].filter((n) => isFloat(global.params.get(n)!)).sort();
  const sizes = names.map((n) => global.params.get(n)!.data.length);
  return { names, sizes, dimension: sizes.reduce((a, b) => a + b, 0) };
}

/**
 * A site's update as one vector in the layout: the diff from `global` (a `full` update minus the global model),
 * zero for a tensor the update withholds (an exclude-vars filter).
 *
 * @throws SecAggError E_SECAGG_DIMENSION when a tensor's size differs from the global model's.
 */
export function flattenUpdate(update: FLModel, global: FLModel, layout: SecAggLayout): Float64Array {
  const out = new Float64Array(layout.dimension);
  let at = 0;
  for (const [i, name] of layout.names.entries()) {
    const size = layout.sizes[i]!;
    const t = update.params.get(name);
    if (t !== undefined) {
      if (t.data.length !== size) throw new SecAggError('E_SECAGG_DIMENSION', `tensor ${name} of the update has ${t.data.length} values; the global model's has ${size}`);
      const base = update.kind === 'full' ? global.params.get(name)!.data : undefined;
      for (let j = 0; j < size; j++) out[at + j] = Number(t.data[j]) - (base === undefined ? 0 : Number(base[j]));
    }
    at += size;
  }
  return out;
}
