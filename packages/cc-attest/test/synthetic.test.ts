import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseTdxQuote } from '../src/index.js';
import { synthesizeSnpEvidence, synthesizeTdxEvidence } from '../src/testing/index.js';
import { authority } from './helpers.js';

// The synthetic certificates are built by our own DER encoder; openssl checking them shows the encoder
// and the vendor-shaped profiles (RSASSA-PSS params, EC keys) are right, independently of our verifier.
const auth = authority();
const dir = mkdtempSync(join(tmpdir(), 'flare-synth-'));
const write = (name: string, text: string) => {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
};
const ossl = (...args: string[]) => execFileSync('/usr/bin/openssl', args, { encoding: 'utf8' });

describe('createTestAuthority (checked with openssl)', () => {
  it('AMD: VCEK <- ASK <- ARK verifies with RSASSA-PSS SHA-384 salt 48', () => {
    const e = synthesizeSnpEvidence(auth, { product: 'Genoa' });
    const ca = write('ark.pem', auth.amd.Genoa.ark.pem);
    const untrusted = write('ask.pem', auth.amd.Genoa.ask.pem);
    const leaf = write('vcek.pem', e.certificates[0]!);
    expect(ossl('verify', '-no-CApath', '-no-CAstore', '-attime', String(Date.UTC(2030, 0, 1) / 1000), '-CAfile', ca, '-untrusted', untrusted, leaf)).toMatch(/OK/);
    const text = ossl('x509', '-in', leaf, '-noout', '-text');
    expect(text).toMatch(/rsassaPss/);
    expect(text).toMatch(/Salt Length: 0x30/);
    expect(text).toMatch(/1\.3\.6\.1\.4\.1\.3704\.1\.4/);
  });

  it('Intel: the PCK chain in a synthetic quote verifies with openssl', () => {
    const q = parseTdxQuote(synthesizeTdxEvidence(auth).evidence);
    const certs = q.pckChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
    const ca = write('iroot.pem', certs[2]!);
    expect(ossl('verify', '-no-CApath', '-no-CAstore', '-attime', String(Date.UTC(2030, 0, 1) / 1000), '-CAfile', ca, '-untrusted', write('pckca.pem', certs[1]!), write('pck.pem', certs[0]!))).toMatch(/OK/);
  });
});

describe('serializeTestAuthority / loadTestAuthority', () => {
  it('a loaded authority signs evidence that verifies with the original trust anchors (POC processes share one)', async () => {
    const { loadTestAuthority, serializeTestAuthority, synthesizeGpuEvidence } = await import('../src/testing/index.js');
    const { verifyEvidence } = await import('../src/index.js');
    const copy = loadTestAuthority(serializeTestAuthority(auth));
    const at = new Date('2030-01-01Z');
    const snp = synthesizeSnpEvidence(copy);
    expect((await verifyEvidence({ type: 'snp', ...snp, at, trust: auth.trust })).ok).toBe(true);
    const gpu = synthesizeGpuEvidence(copy);
    expect((await verifyEvidence({ type: 'gpu', evidence: gpu.evidence, certificates: [gpu.certificates], at, trust: auth.trust })).ok).toBe(true);
    expect(copy.trust).toEqual(auth.trust);
    expect(() => loadTestAuthority('{"format":"other"}')).toThrow(TypeError);
  });
});
