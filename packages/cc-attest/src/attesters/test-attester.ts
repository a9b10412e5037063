import { createHash } from 'node:crypto';
import type { EvidenceType } from '../result.js';
import type { TestAuthority } from '../synthetic/authority.js';
import { defaultGpuMeasurements, synthesizeGpuEvidence, synthesizeRim, type GpuSynthesisOptions } from '../synthetic/gpu.js';
import { synthesizeSnpEvidence, type SnpSynthesisOptions } from '../synthetic/snp.js';
import { synthesizeTdxEvidence, type TdxSynthesisOptions } from '../synthetic/tdx.js';
import type { AttestationEvidence, Attester } from './attester.js';

/** Options of {@link TestAttester}: the type and how to shape (or break) the synthetic evidence. */
export type TestAttesterOptions =
  | { readonly type: 'snp'; readonly snp?: Omit<SnpSynthesisOptions, 'reportData'> }
  | { readonly type: 'tdx'; readonly tdx?: Omit<TdxSynthesisOptions, 'reportData'> }
  | { readonly type: 'gpu'; readonly gpu?: Omit<GpuSynthesisOptions, 'nonce'>; readonly rims?: boolean };

/**
 * An attester for tests and `flare poc --attest test`: it signs synthetic evidence with the test
 * authority's keys, putting the nonce where real hardware puts it. Verify its evidence with
 * `trust: authority.trust`; with the default (vendor) trust it is refused, as it must be.
 *
 * @example
 * ```ts
 * import { verifyEvidence } from '@flare/cc-attest';
 * import { createTestAuthority, TestAttester } from '@flare/cc-attest/testing';
 *
 * const authority = createTestAuthority();
 * const attester = new TestAttester(authority, { type: 'snp' });
 * const [e] = await attester.collect(nonce);
 * const r = await verifyEvidence({ ...e, nonce, at: new Date(), trust: authority.trust });
 * ```
 */
export class TestAttester implements Attester {
  readonly name: string;
  readonly type: EvidenceType;
  readonly #auth: TestAuthority;
  readonly #o: TestAttesterOptions;

  constructor(authority: TestAuthority, options: TestAttesterOptions) {
    this.#auth = authority;
    this.#o = options;
    this.type = options.type;
    this.name = `test:${options.type}`;
  }

  async collect(nonce: Uint8Array): Promise<AttestationEvidence[]> {
    const o = this.#o;
    if (o.type === 'snp') {
      const e = synthesizeSnpEvidence(this.#auth, { ...o.snp, reportData: nonce });
      return [{ type: 'snp', evidence: e.evidence, certificates: e.certificates }];
    }
    if (o.type === 'tdx') return [{ type: 'tdx', evidence: synthesizeTdxEvidence(this.#auth, { ...o.tdx, reportData: nonce }).evidence, certificates: [] }];
    const measurements = o.gpu?.measurements ?? defaultGpuMeasurements();
    const e = synthesizeGpuEvidence(this.#auth, { ...o.gpu, measurements, nonce });
    if (o.rims === false) return [{ type: 'gpu', evidence: e.evidence, certificates: [e.certificates] }];
    // One driver RIM covering every block (RIM index = SPDM index - 1).
    const golden = new Map([...measurements].map(([i, v]) => [i - 1, [v]] as const));
    const rim = synthesizeRim(this.#auth, { version: o.gpu?.driverVersion ?? '550.90.07', measurements: golden });
    return [{ type: 'gpu', evidence: e.evidence, certificates: [e.certificates], rims: [rim] }];
  }
}

/** SHA-384 of a label: a convenient synthetic measurement value for policies in tests. */
export function testMeasurement(label: string): string {
  return createHash('sha384').update(label).digest('hex');
}
