import { expectFlareCodeAsync } from '@flare/core/testing';
import fc from 'fast-check';
import { HeError } from '@flare/core';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_HE_PARAMS,
  heParamsFromBuilderArgs,
  MAX_COEFF_BITS_128,
  paramsFingerprint,
  resolveHeParams,
} from '../src/index.js';
import { loadSeal } from '../src/seal/library.js';


describe('CKKS parameters', () => {
  it('defaults to N = 8192, primes [60, 40, 40, 60], scale 2^40', () => {
    expect(resolveHeParams()).toEqual({ polyModulusDegree: 8192, coeffModBits: [60, 40, 40, 60], scaleBits: 40 });
    expect(DEFAULT_HE_PARAMS.coeffModBits).toEqual([60, 40, 40, 60]);
  });

  it("accepts FLARE's HEBuilder args from tests/integration_test/data/projects/2_clients_with_he.yml", () => {
    // NVFlare f3b7c1b, tests/integration_test/data/projects/2_clients_with_he.yml, builders[2].args (verbatim).
    const args = { poly_modulus_degree: 8192, coeff_mod_bit_sizes: [60, 40, 40], scale_bits: 40, scheme: 'CKKS' };
    expect(heParamsFromBuilderArgs(args)).toEqual({ polyModulusDegree: 8192, coeffModBits: [60, 40, 40], scaleBits: 40 });
  });

  it('fills absent HEBuilder args from the given defaults, then ours', () => {
    expect(heParamsFromBuilderArgs({ scale_bits: 40 })).toEqual(DEFAULT_HE_PARAMS);
    expect(heParamsFromBuilderArgs(undefined, resolveHeParams({ coeffModBits: [60, 40, 40] })).coeffModBits).toEqual([60, 40, 40]);
  });

  it('refuses a scheme other than CKKS, unknown args and wrong types (E_HE_INVALID_PARAMS)', async () => {
    await expectFlareCodeAsync(() => heParamsFromBuilderArgs({ scheme: 'BFV' }), 'E_HE_INVALID_PARAMS');
    await expectFlareCodeAsync(() => heParamsFromBuilderArgs({ poly_modulus_degre: 8192 }), 'E_HE_INVALID_PARAMS');
    await expectFlareCodeAsync(() => heParamsFromBuilderArgs({ coeff_mod_bit_sizes: '60,40' }), 'E_HE_INVALID_PARAMS');
    expect(heParamsFromBuilderArgs({ scheme: 'ckks' }).coeffModBits).toEqual([60, 40, 40, 60]);
  });

  it('refuses parameters beyond the 128-bit security table (E_HE_INSECURE_PARAMS)', async () => {
    await expectFlareCodeAsync(() => resolveHeParams({ coeffModBits: [60, 60, 60, 60] }), 'E_HE_INSECURE_PARAMS'); // 240 > 218
    await expectFlareCodeAsync(() => resolveHeParams({ polyModulusDegree: 4096 }), 'E_HE_INSECURE_PARAMS'); // 200 > 109
    await expectFlareCodeAsync(() => resolveHeParams({ polyModulusDegree: 2048, coeffModBits: [40, 30, 30] }), 'E_HE_INSECURE_PARAMS');
    expect(resolveHeParams({ coeffModBits: [60, 40, 40, 40, 38] }).coeffModBits.reduce((a, b) => a + b)).toBe(218);
  });

  it.each([
    ['a degree that is not a power of two', { polyModulusDegree: 8000 }],
    ['a degree above SEAL range', { polyModulusDegree: 65536 }],
    ['two primes (no rescaling prime)', { coeffModBits: [60, 60] }],
    ['a prime above 60 bits', { coeffModBits: [61, 40, 40] }],
    ['a prime below 20 bits', { coeffModBits: [60, 40, 19] }],
    ['a rescaling prime below 30 bits', { coeffModBits: [60, 25, 60] }],
    ['a fractional prime size', { coeffModBits: [60, 40.5, 60] }],
    ['a scale leaving no room for values', { coeffModBits: [45, 40, 45] }],
    ['a scale below 20 bits', { scaleBits: 10 }],
  ])('refuses %s (E_HE_INVALID_PARAMS)', async (_label, input) => {
    await expectFlareCodeAsync(() => resolveHeParams(input), 'E_HE_INVALID_PARAMS');
  });

  it('uses the same 128-bit table as SEAL (CoeffModulus.MaxBitCount, sec_level_type::tc128)', async () => {
    const seal = await loadSeal();
    for (const [n, bits] of MAX_COEFF_BITS_128) expect(seal.CoeffModulus.MaxBitCount(n, seal.SecurityLevel.tc128), `N = ${n}`).toBe(bits);
  });

  it('fingerprints parameters by value', () => {
    expect(paramsFingerprint(resolveHeParams())).toBe(paramsFingerprint(DEFAULT_HE_PARAMS));
    expect(paramsFingerprint(resolveHeParams({ coeffModBits: [60, 40, 40] }))).not.toBe(paramsFingerprint(DEFAULT_HE_PARAMS));
    expect(paramsFingerprint(DEFAULT_HE_PARAMS)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('property: any parameter set is either secure and well-formed, or refused with one of two codes', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1024, 2048, 4096, 8192, 16384, 32768, 3000),
        fc.array(fc.integer({ min: 15, max: 65 }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 10, max: 62 }),
        (polyModulusDegree, coeffModBits, scaleBits) => {
          try {
            const p = resolveHeParams({ polyModulusDegree, coeffModBits, scaleBits });
            const total = p.coeffModBits.reduce((a, b) => a + b, 0);
            expect(total).toBeLessThanOrEqual(MAX_COEFF_BITS_128.get(p.polyModulusDegree)!);
            expect(p.coeffModBits.length).toBeGreaterThanOrEqual(3);
            expect(p.coeffModBits[0]! - p.scaleBits).toBeGreaterThanOrEqual(10);
          } catch (e) {
            expect(e).toBeInstanceOf(HeError);
            expect(['E_HE_INVALID_PARAMS', 'E_HE_INSECURE_PARAMS']).toContain((e as HeError).code);
          }
        },
      ),
      { seed: 9, numRuns: 300 },
    );
  });
});
