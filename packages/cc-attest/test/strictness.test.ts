import { describe, expect, it } from 'vitest';
import { AttestationPolicySchema, assertAtLeastAsStrict, attestationPolicyOverride, loadAttestationPolicy, parseAttestationPolicy, STRICTNESS_RULES, type AttestationPolicyInput } from '../src/index.js';

const M1 = 'aa'.repeat(48);
const M2 = 'bb'.repeat(48);
const signed: AttestationPolicyInput = {
  version: 1,
  require: ['snp'],
  freshness: { maxAgeSeconds: 600, requireNonce: true },
  snp: { measurements: [M1], minTcb: { snp: 20, microcode: 80 }, minFirmware: '1.55', vmpls: [0] },
  gpu: { rimIds: ['NV_GPU_DRIVER_GH100_550.144.03'], minDriverVersion: '550.90.07' },
};
const p = (x: AttestationPolicyInput) => parseAttestationPolicy(x);
const enc = (x: unknown) => new TextEncoder().encode(JSON.stringify(x));
const weaker = (local: AttestationPolicyInput, field: string) => {
  let error: unknown;
  try {
    assertAtLeastAsStrict(p(signed), p(local));
  } catch (e) {
    error = e;
  }
  expect(error, `expected ${field} to be found weaker`).toMatchObject({ code: 'E_ATTEST_POLICY_WEAKER' });
  expect((error as Error).message).toContain(`"${field}"`);
};

describe('a site policy at least as strict as the signed one', () => {
  it('every field of every section has a rule (a new schema field cannot slip through)', () => {
    const shape = AttestationPolicySchema.shape;
    for (const section of ['snp', 'tdx', 'gpu'] as const) {
      const fields = Object.keys((shape[section].unwrap() as unknown as { shape: object }).shape).sort();
      expect(Object.keys(STRICTNESS_RULES[section]).sort(), section).toEqual(fields);
    }
    expect(Object.keys(STRICTNESS_RULES.freshness).sort()).toEqual(['maxAgeSeconds', 'requireNonce']);
    expect(Object.keys(shape).sort()).toEqual(['freshness', 'gpu', 'require', 'snp', 'tdx', 'version']);
  });

  it('accepts the same policy and stricter ones', () => {
    assertAtLeastAsStrict(p(signed), p(signed));
    assertAtLeastAsStrict(p(signed), p({ ...signed, require: ['snp', 'gpu'], freshness: { maxAgeSeconds: 60, requireNonce: true }, snp: { ...signed.snp, minTcb: { snp: 21, microcode: 80, tee: 1 }, minGuestSvn: 2 } }));
    assertAtLeastAsStrict(p(signed), p({ ...signed, tdx: { mrTd: [M1] } })); // a section the signed policy lacks
    assertAtLeastAsStrict(p({ version: 1 }), p(signed));
  });

  it('refuses each way of accepting more (E_ATTEST_POLICY_WEAKER, naming the field)', () => {
    weaker({ ...signed, require: [] }, 'require');
    weaker({ ...signed, freshness: { maxAgeSeconds: 601, requireNonce: true } }, 'freshness.maxAgeSeconds');
    weaker({ ...signed, freshness: { maxAgeSeconds: 600, requireNonce: false } }, 'freshness.requireNonce');
    weaker({ ...signed, snp: { ...signed.snp, measurements: [M1, M2] } }, 'snp.measurements');
    weaker({ ...signed, snp: { ...signed.snp, measurements: undefined } }, 'snp.measurements');
    weaker({ ...signed, snp: { ...signed.snp, minTcb: { snp: 19, microcode: 80 } } }, 'snp.minTcb');
    weaker({ ...signed, snp: { ...signed.snp, minTcb: { snp: 20 } } }, 'snp.minTcb');
    weaker({ ...signed, snp: { ...signed.snp, minFirmware: '1.54' } }, 'snp.minFirmware');
    weaker({ ...signed, snp: { ...signed.snp, allowDebug: true } }, 'snp.allowDebug');
    weaker({ ...signed, snp: { ...signed.snp, vmpls: [0, 1] } }, 'snp.vmpls');
    weaker({ ...signed, snp: undefined }, 'snp');
    weaker({ ...signed, gpu: { ...signed.gpu, requireRims: false } }, 'gpu.requireRims');
    weaker({ ...signed, gpu: { ...signed.gpu, minDriverVersion: '550.90.06' } }, 'gpu.minDriverVersion');
    weaker({ ...signed, gpu: { ...signed.gpu, allowedMismatchIndices: [7] } }, 'gpu.allowedMismatchIndices');
  });

  it("the kit rule and loadAttestationPolicy use the site's file only when it is as strict", async () => {
    const stricter = { ...signed, freshness: { maxAgeSeconds: 60, requireNonce: true } };
    attestationPolicyOverride.check(enc(stricter), enc(signed));
    expect(() => attestationPolicyOverride.check(enc({ ...signed, require: [] }), enc(signed))).toThrow(expect.objectContaining({ code: 'E_ATTEST_POLICY_WEAKER' }) as Error);
    expect(() => attestationPolicyOverride.check(enc({ version: 2 }), enc(signed))).toThrow(expect.objectContaining({ code: 'E_ATTEST_POLICY' }) as Error);
    attestationPolicyOverride.check(enc(signed), undefined); // no signed default: any valid policy is as strict
    const files = new Map([
      ['local/attestation_policy.json.default', enc(signed)],
      ['local/attestation_policy.json', enc(stricter)],
    ]);
    expect((await loadAttestationPolicy(files))?.freshness.maxAgeSeconds).toBe(60);
    files.set('local/attestation_policy.json', enc({ ...signed, snp: undefined }));
    await expect(loadAttestationPolicy(files)).rejects.toMatchObject({ code: 'E_ATTEST_POLICY_WEAKER' });
    expect(await loadAttestationPolicy(new Map())).toBeUndefined();
  });
});
