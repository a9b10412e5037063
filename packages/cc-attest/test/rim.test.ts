import { describe, expect, it } from 'vitest';
import { verifyRim } from '../src/index.js';
import { defaultGpuMeasurements, synthesizeRim } from '../src/testing/index.js';
import { AT, authority } from './helpers.js';

const auth = authority();
const root = () => auth.nvidia.rimRoot.pem;
const golden = new Map([...defaultGpuMeasurements()].map(([i, v]) => [i - 1, [v]] as const));
const good = () => synthesizeRim(auth, { version: '550.90.07', measurements: golden });

describe('verifyRim', () => {
  it('verifies the enveloped XML-DSig and reads the measurements from the verified document', () => {
    const r = verifyRim(good(), AT, root());
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.rim.version).toBe('550.90.07');
      expect(r.rim.measurements).toHaveLength(8);
      expect(r.rim.measurements[0]).toMatchObject({ index: 0, active: true });
    }
  });

  it('uses the pinned NVIDIA RIM root by default: a test RIM fails there (E_ATTEST_CHAIN)', () => {
    expect(verifyRim(good(), AT)).toMatchObject({ ok: false, code: 'E_ATTEST_CHAIN' });
  });

  it('refuses a signer chain to another root (E_ATTEST_CHAIN)', () => {
    expect(verifyRim(good(), AT, auth.nvidia.root.pem)).toMatchObject({ ok: false, code: 'E_ATTEST_CHAIN' });
  });

  it('refuses an expired RIM signer (E_ATTEST_CERT_EXPIRED)', () => {
    expect(verifyRim(good(), new Date('2041-01-01Z'), root())).toMatchObject({ ok: false, code: 'E_ATTEST_CERT_EXPIRED' });
  });

  it('refuses a DTD (entity expansion) before parsing (E_ATTEST_RIM)', () => {
    const xml = `<!DOCTYPE x [<!ENTITY a "aaaa">]>${good()}`;
    expect(verifyRim(xml, AT, root())).toMatchObject({ ok: false, code: 'E_ATTEST_RIM' });
  });

  it('refuses signature wrapping: a second Signature element (E_ATTEST_RIM)', () => {
    const xml = good();
    const sig = xml.slice(xml.indexOf('<ds:Signature'), xml.indexOf('</ds:Signature>') + '</ds:Signature>'.length);
    const wrapped = xml.replace('</SoftwareIdentity>', `<ns0:Extra>${sig}</ns0:Extra></SoftwareIdentity>`);
    expect(verifyRim(wrapped, AT, root())).toMatchObject({ ok: false, code: 'E_ATTEST_RIM' });
  });

  it('refuses a Reference that does not cover the whole document (E_ATTEST_RIM)', () => {
    expect(verifyRim(good().replace('URI=""', 'URI="#x"'), AT, root())).toMatchObject({ ok: false, code: 'E_ATTEST_RIM' });
  });

  it('refuses XML that is not well formed (E_ATTEST_MALFORMED)', () => {
    expect(verifyRim('<SoftwareIdentity', AT, root())).toMatchObject({ ok: false, code: 'E_ATTEST_MALFORMED' });
  });
});
