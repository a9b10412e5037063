import { canonicalJson, SecAggError, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { digest, PROTOCOL } from './crypto.js';
import { buildGraph, type Graph } from './graph.js';

/** The most sites one round may name. */
export const MAX_SITES = 10_000;
/** The most ring elements one round may sum (2^27: a 512 MiB masked input at 32 bits). */
export const MAX_RING_LENGTH = 2 ** 27;

const SITE_NAME = /^[A-Za-z0-9._@-]+$/;
const finitePositive = z.number().positive().refine(Number.isFinite, { message: 'must be finite' });

/** How sites turn a float update into ring elements (see encodeUpdate); part of the round configuration. */
export const EncodingSchema = z.strictObject({
  /** Float values in each site's update. */
  dimension: z.int().min(1).max(MAX_RING_LENGTH),
  /** L2 clip bound c, in the update's units. */
  clip: finitePositive,
  /** γ: the value of one ring unit, in the update's units. */
  granularity: finitePositive,
  /** Random Hadamard rotation before rounding (Kairouz, Liu, Steinke 2021, Algorithm 1), padding to a power of 2. */
  rotation: z.enum(['hadamard', 'none']),
  /** β of the conditional randomized rounding: retry rounding while the L2 norm exceeds its bound; 0 disables. */
  beta: z.number().min(0).lt(1),
  /** Distributed discrete Gaussian noise, or null for plain secure aggregation. */
  noise: z
    .strictObject({
      /** Each site's discrete-Gaussian standard deviation, in ring units (>= 1/2, the bound's premise). */
      stddev: z.number().min(0.5).refine(Number.isFinite, { message: 'must be finite' }),
      /** The privacy statement counts the noise of this many honest sites in any sum the server learns. */
      honestSites: z.int().min(1).max(MAX_SITES),
    })
    .nullable(),
});

/** The encoding part of a round configuration. */
export type Encoding = z.infer<typeof EncodingSchema>;

/**
 * Everything a round is: who takes part, the graph and threshold, the ring, the encoding. Every site checks it
 * ({@link checkRoundConfig}) before it advertises keys, and every key, share and signature of the round is bound
 * to its digest, so a server that shows two sites different configurations makes the round fail.
 */
export const RoundConfigSchema = z.strictObject({
  protocol: z.literal(PROTOCOL),
  /** The job id. */
  job: z.string().min(1).max(256),
  /** The round number; a site refuses a configuration for a round other than the one it runs. */
  round: z.int().min(0).max(2 ** 31),
  /** Participants, sorted by UTF-16 code units, unique. A site's index in this list fixes its share point. */
  sites: z.array(z.string().min(1).max(256).regex(SITE_NAME)).min(2).max(MAX_SITES),
  /** k: neighbours per site (even and below sites - 1, or exactly sites - 1 for the complete graph). */
  degree: z.int().min(1).max(MAX_SITES),
  /** t: shares that rebuild a secret, out of the k + 1 a site and its neighbours hold; 2t > k + 1. */
  threshold: z.int().min(2).max(MAX_SITES),
  /** Sites below which the round stops at any phase (>= threshold). */
  minSurvivors: z.int().min(2).max(MAX_SITES),
  /** Ring Z_{2^bits}. */
  bits: z.int().min(1).max(32),
  /** Ring elements per masked input. */
  length: z.int().min(1).max(MAX_RING_LENGTH),
  encoding: EncodingSchema.nullable(),
});

/** A round configuration, as {@link RoundConfigSchema} parses it. */
export type RoundConfig = z.infer<typeof RoundConfigSchema>;

/** A validated configuration with what every participant derives from it. Internal. */
export interface Round {
  readonly config: RoundConfig;
  /** SHA-256 of the canonical configuration: the salt of every key and the prefix of every transcript. */
  readonly context: Uint8Array;
  readonly graph: Graph;
  /** site name -> index in config.sites. */
  readonly index: ReadonlyMap<string, number>;
}

/** Ring elements for `dimension` values under `rotation`: a power of two for the Hadamard transform. */
export function ringLength(dimension: number, rotation: Encoding['rotation']): number {
  return rotation === 'hadamard' ? 2 ** Math.ceil(Math.log2(dimension)) : dimension;
}

/**
 * Parses and checks a round configuration: the schema, then the rules between fields (sorted unique sites,
 * degree and threshold per the protocol, ring length matching the encoding).
 *
 * @throws SecAggError E_SECAGG_CONFIG naming the field and the rule.
 */
export function checkRoundConfig(value: unknown): RoundConfig {
  const parsed = RoundConfigSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.');
    throw new SecAggError('E_SECAGG_CONFIG', `round configuration field ${where}: ${issue?.message ?? 'invalid'}`, { cause: parsed.error });
  }
  const c = parsed.data;
  const n = c.sites.length;
  const bad = (field: string, rule: string): never => {
    throw new SecAggError('E_SECAGG_CONFIG', `round configuration field ${field}: ${rule}`);
  };
  for (let i = 1; i < n; i++) if (!(c.sites[i - 1]! < c.sites[i]!)) bad(`sites.${i}`, 'sites must be sorted and unique');
  if (c.degree > n - 1) bad('degree', `at most ${n - 1} neighbours for ${n} sites`);
  if (c.degree < n - 1 && (c.degree % 2 !== 0 || c.degree < 2)) bad('degree', 'an incomplete Harary graph needs an even degree >= 2');
  if (c.threshold > c.degree + 1) bad('threshold', `at most degree + 1 = ${c.degree + 1}`);
  // A majority of the k + 1 holders: two disjoint sets of honest holders cannot both reach t, so a server that
  // shows sites different survivor sets still cannot collect both shares of one site from honest holders alone.
  if (2 * c.threshold <= c.degree + 1) bad('threshold', `must exceed half of degree + 1 (${(c.degree + 1) / 2})`);
  if (c.minSurvivors < c.threshold || c.minSurvivors > n) bad('minSurvivors', `must lie in [threshold, sites] = [${c.threshold}, ${n}]`);
  if (c.encoding !== null) {
    const e = c.encoding;
    if (c.length !== ringLength(e.dimension, e.rotation)) bad('length', `must be ${ringLength(e.dimension, e.rotation)} for ${e.dimension} values with rotation ${e.rotation}`);
    if (e.noise !== null && e.noise.honestSites > n) bad('encoding.noise.honestSites', `at most the ${n} sites of the round`);
  }
  return c;
}

/** The digest every key and transcript of the round is bound to. */
export function contextDigest(config: RoundConfig): Uint8Array {
  return digest(PROTOCOL, 'round context', canonicalJson(config as unknown as JsonValue));
}

/** A checked configuration with its context, graph and site index. Internal. */
export function openRound(value: unknown): Round {
  const config = checkRoundConfig(value);
  const context = contextDigest(config);
  // The permutation depends only on the job, the round, the sites and the degree: the server chooses no
  // randomness, and it cannot re-draw the graph by varying free fields (the encoding, minSurvivors) until a
  // target site gets the neighbours it wants. What remains is the site list and the round number, which the
  // runtime takes from the admin-signed job and the round counter.
  const graphSeed = digest(PROTOCOL, 'graph', config.job, String(config.round), String(config.degree), ...config.sites);
  const graph = buildGraph(config.sites.length, config.degree, graphSeed);
  return { config, context, graph, index: new Map(config.sites.map((s, i) => [s, i])) };
}
