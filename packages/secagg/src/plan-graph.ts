import { SecAggError } from '@flare/core';

/** What the server may do, for {@link planSecAggGraph}. */
export type ServerModel = 'active' | 'semi-honest';

/** The assumptions a round's neighbourhood size and threshold are chosen for. */
export interface GraphPlanOptions {
  /** Sites in the round, >= 2. */
  readonly sites: number;
  /** Largest fraction of sites that may collude with the server, in [0, 1) (default 0.1): ⌈γ·n⌉ sites. */
  readonly corruptFraction?: number;
  /** Largest fraction of sites that may drop out during the round, in [0, 1) (default 0.1): ⌈δ·n⌉ sites. */
  readonly dropoutFraction?: number;
  /**
   * `semi-honest` (default, the setting of Bell et al.'s main construction and of Flower's SecAgg+): the server
   * follows the protocol and dropouts happen independently of the graph. `active`: the server may deviate,
   * e.g. declare live sites dropped or show sites different survivor sets.
   */
  readonly server?: ServerModel;
  /** The security guarantee may fail with probability at most 2^-securityBits (default 40). */
  readonly securityBits?: number;
  /** The round may fail to unmask with probability at most 2^-correctnessBits (default 20). */
  readonly correctnessBits?: number;
  /**
   * Require every sum the server can learn to cover at least this many honest sites. Default: for an active
   * server, half of the honest survivors (⌈(n - corrupt - dropped)/2⌉), which makes the neighbourhood grow with
   * n; for a semi-honest one the guarantee is all honest survivors and nothing more is required.
   */
  readonly minHonestInSum?: number;
}

/** The neighbourhood size and threshold chosen, with the guarantees they give. */
export interface GraphPlan {
  /** k: neighbours per site (even, or sites - 1 for the complete graph of the original SecAgg). */
  readonly degree: number;
  /** t: shares needed to rebuild a secret, out of the k + 1 held by the site and its neighbours. */
  readonly threshold: number;
  /** The most corrupt neighbours any honest site has, except with probability 2^-securityBits. */
  readonly maxCorruptNeighbours: number;
  /** The fewest honest sites whose updates are summed in anything the server can learn, under `server`. */
  readonly minHonestInSum: number;
  /**
   * The same against an active server whatever the model planned for: t - c (it may declare live sites
   * dropped, so it can aim at any set whose members hold t shares among themselves and the corrupt sites).
   */
  readonly activeMinHonestInSum: number;
  /** log2 of the bound on the probability that the security guarantee fails. */
  readonly securityLog2: number;
  /** log2 of the bound on the probability that a round with at most the stated dropouts cannot be unmasked. */
  readonly correctnessLog2: number;
  readonly corruptSites: number;
  readonly dropoutSites: number;
  readonly server: ServerModel;
}

/**
 * Chooses the smallest neighbourhood (degree k) and a threshold t for a SecAgg+ round, following the analysis
 * of Bell et al. (CCS 2020) for a Harary graph with random relabelling, with every bound computed exactly
 * (hypergeometric tails, union over sites) rather than asymptotically:
 *
 * - Correctness: every site keeps at least t responding share holders among its k + 1 when at most ⌊δn⌋ sites
 *   drop, except with probability 2^-correctnessBits. t is the largest value this allows.
 * - Both shares: no honest site has 2t - (k + 1) or more corrupt neighbours, so the server can never collect
 *   t shares of both secrets of one site, even showing different sites different survivor sets (structural
 *   rule 2t > k + 1, plus the corrupt margin).
 * - Sums the server learns (active): whatever sites it declares dropped, each site in a sum it unmasks needs t
 *   shares from sites inside that sum or corrupt ones, so every such sum covers at least t - c honest sites
 *   (c = the most corrupt neighbours, `minHonestInSum`).
 * - Sums the server learns (semi-honest): it learns the sum of all honest survivors when the graph on them is
 *   connected: in a Harary ring this holds unless k/2 consecutive positions are all corrupt or dropped.
 *
 * @throws SecAggError E_SECAGG_PARAMS when even the complete graph cannot meet the bounds (the message says which).
 * @example
 * ```ts
 * const { degree, threshold } = planSecAggGraph({ sites: 100, corruptFraction: 0.05, dropoutFraction: 0.05 });
 * ```
 */
export function planSecAggGraph(options: GraphPlanOptions): GraphPlan {
  const n = options.sites;
  const gamma = options.corruptFraction ?? 0.1;
  const delta = options.dropoutFraction ?? 0.1;
  const server = options.server ?? 'semi-honest';
  const securityBits = options.securityBits ?? 40;
  const correctnessBits = options.correctnessBits ?? 20;
  if (!(Number.isInteger(n) && n >= 2)) throw new RangeError(`"sites" expected an integer >= 2, got ${n}`);
  if (!(gamma >= 0 && gamma < 1)) throw new RangeError(`"corruptFraction" expected a number in [0, 1), got ${gamma}`);
  if (!(delta >= 0 && delta < 1)) throw new RangeError(`"dropoutFraction" expected a number in [0, 1), got ${delta}`);
  if (!(securityBits > 0 && securityBits <= 256)) throw new RangeError(`"securityBits" expected a number in (0, 256], got ${securityBits}`);
  if (!(correctnessBits > 0 && correctnessBits <= 256)) throw new RangeError(`"correctnessBits" expected a number in (0, 256], got ${correctnessBits}`);
  const corrupt = Math.ceil(gamma * n);
  const dropped = Math.ceil(delta * n);
  const minHonest = options.minHonestInSum ?? (server === 'active' ? Math.max(1, Math.ceil((n - corrupt - dropped) / 2)) : 1);
  if (!(Number.isInteger(minHonest) && minHonest >= 1)) throw new RangeError(`"minHonestInSum" expected an integer >= 1, got ${minHonest}`);
  const logF = logFactorials(n + 1);
  const secBudget = -securityBits * Math.LN2;
  const corrBudget = -correctnessBits * Math.LN2;
  let why = '';
  for (const k of candidateDegrees(n)) {
    const complete = k === n - 1;
    // Semi-honest splits the security budget between the neighbour bound and ring connectivity.
    const neighbourBudget = server === 'semi-honest' && !complete ? secBudget - Math.LN2 : secBudget;
    const c = quantile(n - 1, corrupt, k, Math.log(n), neighbourBudget, logF);
    const d = quantile(n, dropped, k + 1, Math.log(n), corrBudget, logF);
    const t = k + 1 - d.value;
    const bothShares = 2 * t > k + 1 + c.value;
    let honestInSum: number;
    let securityLog: number;
    if (server === 'active') {
      honestInSum = t - c.value;
      securityLog = c.logTail;
    } else {
      const ring = complete ? -Infinity : Math.log(n) + logWindow(n, corrupt + dropped, k / 2);
      if (ring > secBudget - Math.LN2) {
        why = `the ring of degree ${k} may split the honest survivors (probability 2^${(ring / Math.LN2).toFixed(1)})`;
        continue;
      }
      honestInSum = n - corrupt - dropped;
      securityLog = logAdd(c.logTail, ring);
    }
    if (t < 2 || !bothShares || t <= c.value || honestInSum < minHonest) {
      why = `degree ${k} gives threshold ${t} with up to ${c.value} corrupt neighbours (needs 2t > k + 1 + c, t > c and t - c >= ${minHonest})`;
      continue;
    }
    return {
      degree: k,
      threshold: t,
      maxCorruptNeighbours: c.value,
      minHonestInSum: honestInSum,
      activeMinHonestInSum: t - c.value,
      securityLog2: securityLog / Math.LN2,
      correctnessLog2: d.logTail / Math.LN2,
      corruptSites: corrupt,
      dropoutSites: dropped,
      server,
    };
  }
  throw new SecAggError(
    'E_SECAGG_PARAMS',
    `no neighbourhood size for ${n} sites meets the bounds with ${corrupt} corrupt and ${dropped} dropped sites (${server} server): ${why}`,
  );
}

/** Even degrees 2, 4, ... below n - 1, then n - 1 (the complete graph). */
function* candidateDegrees(n: number): Generator<number> {
  for (let k = 2; k < n - 1; k += 2) yield k;
  yield n - 1;
}

/**
 * The smallest v with (union factor)·P(X > v) <= e^budget for X ~ Hypergeometric(population, marked, draws),
 * and log of that bound. logUnion = log of the union-bound factor.
 */
function quantile(population: number, marked: number, draws: number, logUnion: number, budget: number, logF: Float64Array): { value: number; logTail: number } {
  const top = Math.min(marked, draws);
  // tail[v] = log P(X > v), accumulated from the top.
  let tail = -Infinity;
  let v = top;
  for (; v >= 0; v--) {
    const next = logAdd(tail, logHypergeom(population, marked, draws, v, logF));
    // next = log P(X >= v) = log P(X > v - 1)
    if (logUnion + next > budget) break;
    tail = next;
  }
  // P(X > v) = e^tail is within budget; v is the smallest such value.
  return { value: Math.max(v, 0), logTail: logUnion + tail };
}

function logHypergeom(population: number, marked: number, draws: number, x: number, logF: Float64Array): number {
  if (x < 0 || x > marked || x > draws || draws - x > population - marked) return -Infinity;
  return logChoose(marked, x, logF) + logChoose(population - marked, draws - x, logF) - logChoose(population, draws, logF);
}

function logChoose(a: number, b: number, logF: Float64Array): number {
  return logF[a]! - logF[b]! - logF[a - b]!;
}

/** log of P(a given window of w positions holds only bad sites), m bad sites among n placed uniformly. */
function logWindow(n: number, m: number, w: number): number {
  if (m < w) return -Infinity;
  let s = 0;
  for (let i = 0; i < w; i++) s += Math.log((m - i) / (n - i));
  return s;
}

function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

function logFactorials(n: number): Float64Array {
  const out = new Float64Array(n + 1);
  for (let i = 2; i <= n; i++) out[i] = out[i - 1]! + Math.log(i);
  return out;
}
