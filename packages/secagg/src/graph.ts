import { maskWords } from './prg.js';

// The SecAgg+ communication graph (Bell, Bonawitz, Gascón, Lepoint, Raykova, CCS 2020, §3): a k-regular Harary
// graph H(k, n) (positions on a ring, each joined to the k/2 nearest positions on either side) whose positions
// are assigned to sites by a random permutation. When k = n - 1 it is the complete graph of the original SecAgg
// (Bonawitz et al., CCS 2017). The permutation comes from a seed every participant derives from the round's
// configuration (config.ts), so the server cannot pick neighbourhoods, and every site computes its own
// neighbours instead of trusting a list from the server. Internal.

/** The neighbourhoods of one round, by site index (the index in the round's sorted site list). */
export interface Graph {
  readonly sites: number;
  readonly degree: number;
  /** position -> site index. */
  readonly order: Uint32Array;
  /** site index -> position. */
  readonly position: Uint32Array;
}

/** The graph for `sites` participants of degree `degree` (even, or sites - 1 for the complete graph). */
export function buildGraph(sites: number, degree: number, seed: Uint8Array): Graph {
  const order = permutation(sites, seed);
  const position = new Uint32Array(sites);
  for (let p = 0; p < sites; p++) position[order[p]!] = p;
  return { sites, degree, order, position };
}

/** The site indices adjacent to site `i`, ascending. */
export function neighboursOf(graph: Graph, i: number): number[] {
  const { sites, degree } = graph;
  if (degree >= sites - 1) {
    const all: number[] = [];
    for (let j = 0; j < sites; j++) if (j !== i) all.push(j);
    return all;
  }
  const p = graph.position[i]!;
  const out: number[] = [];
  for (let s = 1; s <= degree / 2; s++) {
    out.push(graph.order[(p + s) % sites]!, graph.order[(p - s + sites) % sites]!);
  }
  return out.sort((a, b) => a - b);
}

/** True when sites i and j are adjacent. */
export function adjacent(graph: Graph, i: number, j: number): boolean {
  if (i === j) return false;
  const { sites, degree } = graph;
  if (degree >= sites - 1) return true;
  const gap = Math.abs(graph.position[i]! - graph.position[j]!);
  return Math.min(gap, sites - gap) <= degree / 2;
}

/** A uniform permutation of 0..n-1 by Fisher-Yates, its indices drawn without modulo bias from AES-CTR(seed). */
function permutation(n: number, seed: Uint8Array): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let words = maskWords(seed, Math.max(64, 2 * n));
  let at = 0;
  let block = 0;
  const next = (): number => {
    if (at === words.length) {
      // Rare: more than 2n draws were rejected. Continue the stream under a fresh IV.
      const iv = new Uint8Array(16);
      new DataView(iv.buffer).setUint32(0, ++block);
      words = maskWords(seed, words.length, iv);
      at = 0;
    }
    return words[at++]!;
  };
  for (let i = n - 1; i > 0; i--) {
    const bound = i + 1;
    const limit = 2 ** 32 - (2 ** 32 % bound);
    let w = next();
    while (w >= limit) w = next();
    const j = w % bound;
    const tmp = order[i]!;
    order[i] = order[j]!;
    order[j] = tmp;
  }
  return order;
}
