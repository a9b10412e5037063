import { describe, expect, it } from 'vitest';
import { openRound } from '../src/config.js';
import { maskWords } from '../src/prg.js';
import { unpack } from '../src/ring.js';
import { combine, fieldFromBytes, type Share } from '../src/shamir.js';
import { simulateRound, type DropPhase } from '../src/testing.js';
import { selfMaskKey } from '../src/transcripts.js';
import { plainSum, readFrame, ringConfig } from './helpers/harness.js';

// What the server sees. Every byte the sites send in a round is collected; from it alone the test shows that
// each masked input, and even each masked input with its self mask removed using every share the server
// received, is statistically indistinguishable from uniform in the ring, while the unmasked sum is exact.
//
// The test: Pearson's chi-square over 256 equal bins of the 16-bit ring (by the high byte, then by the low
// byte) with 16,384 values per site, df = 255. The critical value is the 1 - 10^-6 quantile of chi-square(255)
// by the Wilson-Hilferty approximation (z = 4.7534, the standard normal's 1 - 10^-6 quantile): ~377. A uniform
// vector exceeds it with probability ~10^-6, so the 40 statistics below fail together with probability below
// 4·10^-5 (the masks come from the CSPRNG: no fixed seed is possible, or wanted). The same statistic on the
// plaintext inputs is shown to exceed it by far, so the test can fail.

const BINS = 256;
const DF = BINS - 1;
const Z = 4.7534;
const CRITICAL = DF * (1 - 2 / (9 * DF) + Z * Math.sqrt(2 / (9 * DF))) ** 3;

function chiSquare(values: Uint32Array, bin: (v: number) => number): number {
  const counts = new Float64Array(BINS);
  for (const v of values) counts[bin(v)]! += 1;
  const expected = values.length / BINS;
  let chi = 0;
  for (const c of counts) chi += (c - expected) ** 2 / expected;
  return chi;
}

const high = (v: number) => v >>> 8;
const low = (v: number) => v & 0xff;

describe('what the server sees', () => {
  it('every masked input, even stripped of its self mask with all revealed shares, is uniform in the ring (chi-square, false failure < 4e-5) while the sum is exact', () => {
    expect(CRITICAL).toBeGreaterThan(370);
    expect(CRITICAL).toBeLessThan(385);
    const length = 16_384;
    const config = ringConfig(10, { degree: 4, threshold: 4, minSurvivors: 4, bits: 16, length });
    const round = openRound(config);
    // Inputs with as much structure as possible: zeros, a constant, a ramp, one-hot vectors.
    const inputs = new Map(
      config.sites.map((site, s) => {
        const v = new Uint32Array(length);
        if (s === 1) v.fill(0x7fff);
        if (s === 2) for (let i = 0; i < length; i++) v[i] = i & 0xffff;
        if (s >= 3) v[s] = 1;
        return [site, v];
      }),
    );
    const seen: Array<{ site: string; phase: DropPhase; bytes: Uint8Array }> = [];
    const drop = { maskedInput: ['site-07'] };
    const result = simulateRound({ config, inputs, drop, onSend: (site, phase, bytes) => seen.push({ site, phase, bytes: bytes.slice() }) });
    expect(result.sum).toEqual(plainSum(config, inputs, result.summed));

    // Everything the server learned about self masks: the revealed self-mask shares of the summed sites.
    const shares = new Map<string, Share[]>();
    for (const { site, phase, bytes } of seen) {
      if (phase !== 'unmask') continue;
      for (const { of, share } of readFrame(bytes).header.selfMask as Array<{ of: string; share: string }>) {
        if (!shares.has(of)) shares.set(of, []);
        shares.get(of)!.push({ x: round.index.get(site)! + 1, y: fieldFromBytes(new Uint8Array(Buffer.from(share, 'base64url')))! });
      }
    }
    let checked = 0;
    for (const { site, phase, bytes } of seen) {
      if (phase !== 'maskedInput') continue;
      const masked = unpack(readFrame(bytes).payload, config.bits, length)!;
      for (const bin of [high, low]) expect(chiSquare(masked, bin)).toBeLessThan(CRITICAL);
      // Remove the self mask the server can rebuild: the pairwise masks with the neighbours still hide the input.
      const seed = combine(shares.get(site)!.slice(0, config.threshold));
      const self = maskWords(selfMaskKey(seed, round.context, site), length);
      const stripped = masked.map((v, i) => (v - self[i]!) & 0xffff);
      for (const bin of [high, low]) expect(chiSquare(stripped, bin)).toBeLessThan(CRITICAL);
      // The statistic has the power to see structure: on the plaintext it is far above the critical value.
      expect(chiSquare(inputs.get(site)!, high)).toBeGreaterThan(10 * CRITICAL);
      checked++;
    }
    expect(checked).toBe(9);
  }, 120_000);
});
