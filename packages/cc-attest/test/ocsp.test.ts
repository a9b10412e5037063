import { createHash, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyGpuEvidence, type CollateralFetcher } from '../src/index.js';
import { defaultGpuMeasurements, synthesizeGpuEvidence, synthesizeRim, type Issued, type TestAuthority } from '../src/testing/index.js';
import { parseCertificates, type ParsedCertificate } from '../src/cert.js';
import { children, readTlv } from '../src/der.js';
import { checkOcspResponse, buildOcspRequest } from '../src/gpu/ocsp.js';
import { derBitString as bits, derContext as ctx, derOctetString as octets, derOidEncode as oid, derSequence as seq, derTimeEncode as time, derEncode as tlv } from '@flare/core';
import { name } from '../src/synthetic/certs.js';
import { AT, authority, failures } from './helpers.js';

// A synthetic OCSP responder (RFC 6960) answering for the test authority's certificates.
const auth: TestAuthority = authority();

type Answer = 'good' | 'revoked' | 'hold' | 'unknown' | 'bad-signature' | 'wrong-nonce' | 'stale' | 'unauthorized';

function respond(request: Uint8Array, issuers: ReadonlyMap<string, Issued>, answer: (serial: string) => Answer): Uint8Array {
  const tbsReq = children(readTlv(request).value)[0]!;
  const [requestList, extsTlv] = children(tbsReq.value);
  const certId = children(children(requestList!.value)[0]!.value)[0]!;
  const [, nameHash, keyHash, serial] = children(certId.value);
  const nonceExt = children(children(children(extsTlv!.value)[0]!.value)[0]!.value);
  const nonce = readTlv(nonceExt[1]!.value).value;
  const issuer = issuers.get(Buffer.from(keyHash!.value).toString('hex'))!;
  const serialHex = Buffer.from(serial!.value).toString('hex').replace(/^(00)+(?=.)/, '');
  void nameHash;
  const a = answer(serialHex);
  const status = a === 'revoked' || a === 'hold' ? tlv(0xa1, Buffer.concat([time(new Date('2029-06-01Z')), ctx(0, tlv(0x0a, new Uint8Array([a === 'hold' ? 6 : 1])))])) : a === 'unknown' ? new Uint8Array([0x82, 0]) : new Uint8Array([0x80, 0]);
  const thisUpdate = a === 'stale' ? new Date('2029-01-01Z') : new Date(AT.getTime() - 3600_000);
  const single = seq(certId.raw, status, time(thisUpdate), ctx(0, time(new Date(thisUpdate.getTime() + 7 * 86400_000))));
  const echoed = a === 'wrong-nonce' ? new Uint8Array(32).fill(1) : nonce;
  const tbs = seq(ctx(1, name(issuer.subject)), time(AT), seq(single), ctx(1, seq(seq(oid('1.3.6.1.5.5.7.48.1.2'), octets(octets(echoed))))));
  const signer = a === 'unauthorized' ? auth.nvidia.rimSigner.key : issuer.key;
  const sig = sign('sha384', tbs, signer.privateKey);
  if (a === 'bad-signature') sig[10]! ^= 1;
  const basic = seq(tbs, seq(oid('1.2.840.10045.4.3.3')), bits(new Uint8Array(sig)));
  return seq(tlv(0x0a, new Uint8Array([0])), ctx(0, seq(oid('1.3.6.1.5.5.7.48.1.1'), octets(basic))));
}

function responder(issuers: Issued[], answer: (serial: string) => Answer): CollateralFetcher & { requests: number } {
  const byKey = new Map<string, Issued>();
  for (const i of issuers) {
    const c = parseCertificates(i.pem)[0]!;
    byKey.set(require384(c), i);
  }
  const f = {
    requests: 0,
    get: async () => {
      throw new Error('no GET expected');
    },
    post: async (url: string, body: Uint8Array) => {
      expect(url).toBe('https://ocsp.ndis.nvidia.com/');
      f.requests++;
      return { body: respond(body, byKey, answer), headers: {} };
    },
  };
  return f;
}

function require384(c: ParsedCertificate): string {
  return createHash384(c.publicKeyBits);
}
const createHash384 = (b: Uint8Array) => createHash('sha384').update(b).digest('hex');

describe('OCSP for NVIDIA certificates (only with a fetcher)', () => {
  const m = defaultGpuMeasurements();
  const rims = [synthesizeRim(auth, { version: '550.90.07', measurements: new Map([...m].map(([i, v]) => [i - 1, [v]] as const)) })];
  const setup = () => {
    const e = synthesizeGpuEvidence(auth, { measurements: m });
    const issuers = [e.brom, auth.nvidia.ica, auth.nvidia.identity, auth.nvidia.root, auth.nvidia.rimCa, auth.nvidia.rimRoot];
    return { e, issuers };
  };

  it('asks about every non-root certificate of the device chain and of the RIM signer chain, and passes when all are good', async () => {
    const { e, issuers } = setup();
    const f = responder(issuers, () => 'good');
    const r = await verifyGpuEvidence({ evidence: e.evidence, certificates: [e.certificates], rims, at: AT, trust: auth.trust, fetcher: f });
    expect(failures(r)).toEqual([]);
    expect(r.checks.find((c) => c.id === 'gpu.ocsp')?.status).toBe('pass');
    expect(f.requests).toBe(4 + 2);
  });

  it('is skipped offline', async () => {
    const { e } = setup();
    const r = await verifyGpuEvidence({ evidence: e.evidence, certificates: [e.certificates], at: AT, trust: auth.trust });
    expect(r.checks.find((c) => c.id === 'gpu.ocsp')?.status).toBe('skip');
  });

  it.each([
    ['revoked', 'E_ATTEST_REVOKED'],
    ['hold', 'E_ATTEST_REVOKED'],
    ['unknown', 'E_ATTEST_REVOKED'],
    ['bad-signature', 'E_ATTEST_SIGNATURE'],
    ['unauthorized', 'E_ATTEST_SIGNATURE'],
    ['wrong-nonce', 'E_ATTEST_NONCE'],
    ['stale', 'E_ATTEST_CERT_EXPIRED'],
  ] as const)('refuses a leaf whose OCSP answer is %s (%s)', async (answer, code) => {
    const { e, issuers } = setup();
    const leafSerial = parseCertificates(e.leaf.pem)[0]!.serialHex;
    const f = responder(issuers, (s) => (s === leafSerial ? answer : 'good'));
    const r = await verifyGpuEvidence({ evidence: e.evidence, certificates: [e.certificates], rims, at: AT, trust: auth.trust, fetcher: f });
    expect(failures(r)).toEqual([`gpu.ocsp:${code}`]);
  });

  it('checkOcspResponse refuses bytes that are not an OCSP response (E_ATTEST_MALFORMED)', () => {
    const { e } = setup();
    const [leaf, brom] = parseCertificates(e.certificates);
    expect(buildOcspRequest(leaf!, brom!, new Uint8Array(32))[0]).toBe(0x30);
    expect(() => checkOcspResponse(new Uint8Array([1, 2]), leaf!, brom!, new Uint8Array(32), AT)).toThrow(expect.objectContaining({ code: 'E_ATTEST_MALFORMED' }));
  });
});
