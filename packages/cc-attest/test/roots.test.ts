import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as roots from '../src/roots.js';
import { VENDOR_TRUST } from '../src/index.js';

const pinned = Object.values(roots).filter((v): v is roots.PinnedCertificate => typeof v === 'object' && v !== null && 'pem' in v);
const dir = mkdtempSync(join(tmpdir(), 'flare-roots-'));

describe('pinned vendor roots', () => {
  it('pins the 12 expected certificates', () => {
    expect(pinned.map((p) => p.name).sort()).toEqual(
      ['AMD_ARK_GENOA', 'AMD_ARK_MILAN', 'AMD_ARK_TURIN', 'AMD_ASK_GENOA', 'AMD_ASK_MILAN', 'AMD_ASK_TURIN', 'AMD_ASVK_GENOA', 'AMD_ASVK_MILAN', 'AMD_ASVK_TURIN', 'INTEL_SGX_ROOT_CA', 'NVIDIA_DEVICE_IDENTITY_CA', 'NVIDIA_RIM_ROOT_CA'].sort(),
    );
  });

  it.each(pinned.map((p) => [p.name, p] as const))('%s: the documented SHA-256 fingerprint is the certificate, as openssl computes it', (_n, p) => {
    const file = join(dir, `${p.name}.pem`);
    writeFileSync(file, p.pem);
    const out = execFileSync('/usr/bin/openssl', ['x509', '-in', file, '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' });
    expect(out.trim().split('=')[1]!.replace(/:/g, '').toLowerCase()).toBe(p.sha256);
    expect(createHash('sha256').update(new X509Certificate(p.pem).raw).digest('hex')).toBe(p.sha256);
  });

  it('the roots are self-signed and the AMD intermediates are signed by their ARK (checked by openssl)', () => {
    for (const [product, ark] of [['MILAN', roots.AMD_ARK_MILAN], ['GENOA', roots.AMD_ARK_GENOA], ['TURIN', roots.AMD_ARK_TURIN]] as const) {
      const ca = join(dir, `ark-${product}.pem`);
      writeFileSync(ca, ark.pem);
      for (const inter of [roots[`AMD_ASK_${product}`], roots[`AMD_ASVK_${product}`]]) {
        const f = join(dir, `${inter.name}.pem`);
        writeFileSync(f, inter.pem);
        expect(execFileSync('/usr/bin/openssl', ['verify', '-no-CApath', '-no-CAstore', '-CAfile', ca, f], { encoding: 'utf8' })).toMatch(/OK/);
      }
    }
    for (const r of [roots.INTEL_SGX_ROOT_CA, roots.NVIDIA_DEVICE_IDENTITY_CA, roots.NVIDIA_RIM_ROOT_CA]) {
      const c = new X509Certificate(r.pem);
      expect(c.verify(c.publicKey)).toBe(true);
    }
  });

  it('VENDOR_TRUST uses exactly the pinned roots', () => {
    expect(VENDOR_TRUST.amdArk.Milan).toBe(roots.AMD_ARK_MILAN.pem);
    expect(VENDOR_TRUST.intelRoot).toBe(roots.INTEL_SGX_ROOT_CA.pem);
    expect(VENDOR_TRUST.label).toBe('vendor');
  });
});
