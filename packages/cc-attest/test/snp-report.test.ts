import { describe, expect, it } from 'vitest';
import { decodeSnpTcb, parseSnpReport, SNP_REPORT_SIZE } from '../src/index.js';
import { synthesizeSnpEvidence } from '../src/testing/index.js';
import { authority } from './helpers.js';

const report = (mut: (v: DataView, b: Uint8Array) => void = () => {}) => {
  const b = Uint8Array.from(synthesizeSnpEvidence(authority(), { version: 3 }).evidence);
  mut(new DataView(b.buffer), b);
  return b;
};

describe('decodeSnpTcb', () => {
  it('Milan/Genoa layout: byte 0 boot loader, 1 TEE, 6 SNP, 7 microcode (go-sev-guest DecomposeTCBVersion)', () => {
    // go-sev-guest attestation.bin: 0x4405000000000002 -> bl 2, tee 0, snp 5, ucode 68.
    expect(decodeSnpTcb(0x4405000000000002n, 'Milan')).toEqual({ bootloader: 2, tee: 0, snp: 5, microcode: 68, raw: '4405000000000002' });
  });
  it('Turin layout: byte 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 7 microcode (attestation.md 1.2)', () => {
    expect(decodeSnpTcb(0x4700000002000100n, 'Turin')).toEqual({ fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71, raw: '4700000002000100' });
  });
});

describe('parseSnpReport', () => {
  it('reads every field of a v3 report', () => {
    const r = parseSnpReport(report());
    expect(r.version).toBe(3);
    expect(r.guestPolicy).toMatchObject({ smt: true, debug: false, migrateMa: false });
    expect(r.cpuid).toEqual({ family: 0x19, model: 0x01, stepping: 0x01 });
    expect(r.cpuidProduct).toBe('Milan');
    expect(r.signingKey).toBe('vcek');
    expect(r.signatureR).toHaveLength(48);
    expect(r.signed).toHaveLength(0x2a0);
    expect(r.currentVersion).toEqual({ major: 1, minor: 55, build: 7 });
  });

  it('decodes the guest policy bits at go-sev-guest positions (SMT 16, MIGRATE_MA 18, DEBUG 19)', () => {
    const r = parseSnpReport(report((v) => v.setBigUint64(8, (1n << 17n) | (1n << 18n) | (1n << 19n), true)));
    expect(r.guestPolicy).toMatchObject({ smt: false, migrateMa: true, debug: true });
  });

  it('tolerates unknown PLATFORM_INFO bits (the real Turin report sets bit 6)', () => {
    expect(parseSnpReport(report((v) => v.setBigUint64(0x40, 0x67n | (1n << 40n), true))).platformInfo).toBe(0x67n | (1n << 40n));
  });

  it.each([
    ['a short buffer', (b: Uint8Array) => b.subarray(0, SNP_REPORT_SIZE - 1), 'E_ATTEST_MALFORMED'],
    ['version 1', (b: Uint8Array) => (new DataView(b.buffer).setUint32(0, 1, true), b), 'E_ATTEST_UNSUPPORTED'],
    ['version 6', (b: Uint8Array) => (new DataView(b.buffer).setUint32(0, 6, true), b), 'E_ATTEST_UNSUPPORTED'],
    ['signature algorithm 2', (b: Uint8Array) => (new DataView(b.buffer).setUint32(0x34, 2, true), b), 'E_ATTEST_UNSUPPORTED'],
    ['policy bit 17 clear', (b: Uint8Array) => (new DataView(b.buffer).setBigUint64(8, 0n, true), b), 'E_ATTEST_MALFORMED'],
    ['policy MBZ bit 40', (b: Uint8Array) => (new DataView(b.buffer).setBigUint64(8, 0x30000n | (1n << 40n), true), b), 'E_ATTEST_MALFORMED'],
    ['reserved signing key 3', (b: Uint8Array) => (new DataView(b.buffer).setUint32(0x48, 3 << 2, true), b), 'E_ATTEST_MALFORMED'],
    ['non-zero reserved byte 0x04C', (b: Uint8Array) => ((b[0x4c] = 1), b), 'E_ATTEST_MALFORMED'],
    ['non-zero bytes after the signature', (b: Uint8Array) => ((b[0x400] = 1), b), 'E_ATTEST_MALFORMED'],
    ['an R above 384 bits', (b: Uint8Array) => ((b[0x2a0 + 60] = 1), b), 'E_ATTEST_MALFORMED'],
  ])('refuses %s (%s)', (_what, mutate, code) => {
    expect(() => parseSnpReport(mutate(report()))).toThrow(expect.objectContaining({ code }));
  });
});
