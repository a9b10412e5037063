import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import type { SnpProduct } from '../snp/tcb.js';
import type { TrustAnchors } from '../trust.js';
import { AT, makeCertificate, newKey, toPem, type SigningKey } from './certs.js';

// The test authority: stand-ins for AMD, Intel and NVIDIA generated in memory, with the vendors' certificate
// shapes, so `npm test` and `flare poc --attest test` exercise the real verifiers without real hardware.
// Its trust anchors are labelled "test"; verifiers use them only when a caller passes them explicitly.

const AMD_SUBJECT = [[AT.OU, 'Engineering'], [AT.C, 'US'], [AT.L, 'Santa Clara'], [AT.ST, 'CA'], [AT.O, 'Advanced Micro Devices']] as const;

/** A certificate and the key it certifies. */
export interface Issued {
  readonly der: Uint8Array;
  readonly pem: string;
  readonly key: SigningKey;
  readonly subject: ReadonlyArray<readonly [string, string]>;
}

/** Keys and certificates of a synthetic vendor hierarchy. Test use only: the private keys are in memory. */
export interface TestAuthority {
  /** Trust anchors naming this authority's roots, for the verifiers' `trust` option. */
  readonly trust: TrustAnchors;
  readonly amd: Readonly<Record<SnpProduct, { readonly ark: Issued; readonly ask: Issued; readonly asvk: Issued }>>;
  readonly intel: { readonly root: Issued; readonly pckCa: Issued; readonly tcbSigning: Issued };
  readonly nvidia: { readonly root: Issued; readonly identity: Issued; readonly ica: Issued; readonly rimRoot: Issued; readonly rimCa: Issued; readonly rimSigner: Issued };
  /** Validity window of every certificate (default 2020-01-01 to 2040-01-01). */
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Next serial number (certificates issued by the synthesizers take one each). */
  nextSerial(): number;
}

/** Options of {@link createTestAuthority}. */
export interface TestAuthorityOptions {
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** Issues one certificate (internal helper shared by the synthesizers). */
export function issue(
  auth: Pick<TestAuthority, 'notBefore' | 'notAfter' | 'nextSerial'>,
  subject: ReadonlyArray<readonly [string, string]>,
  kind: SigningKey['kind'],
  issuer: { subject: ReadonlyArray<readonly [string, string]>; key: SigningKey } | 'self',
  ca: boolean,
  extensions: ReadonlyArray<readonly [string, Uint8Array]> = [],
  validity: { notBefore?: Date; notAfter?: Date } = {},
  publicKey?: { key: SigningKey },
): Issued {
  const key = publicKey?.key ?? newKey(kind);
  const signer = issuer === 'self' ? { subject, key } : issuer;
  const der = makeCertificate({
    subject,
    issuer: signer.subject,
    publicKey: key.publicKey as KeyObject,
    signer: signer.key,
    serial: auth.nextSerial(),
    notBefore: validity.notBefore ?? auth.notBefore,
    notAfter: validity.notAfter ?? auth.notAfter,
    ca,
    extensions,
  });
  return { der, pem: toPem(der), key, subject };
}

/**
 * Generates a test authority: AMD ARK/ASK/ASVK for Milan, Genoa and Turin (RSASSA-PSS), an Intel SGX root,
 * PCK CA and TCB signing key (P-256), and NVIDIA device and RIM hierarchies (P-384). Takes about a second
 * (two RSA-2048 key generations dominate).
 *
 * @example
 * ```ts
 * const auth = createTestAuthority();
 * const { evidence, certificates } = synthesizeSnpEvidence(auth, { reportData: nonce });
 * await verifySnpEvidence({ evidence, certificates, nonce, at: new Date(), trust: auth.trust });
 * ```
 */
export function createTestAuthority(options: TestAuthorityOptions = {}): TestAuthority {
  let serial = 0x1000;
  const base = {
    notBefore: options.notBefore ?? new Date('2020-01-01T00:00:00Z'),
    notAfter: options.notAfter ?? new Date('2040-01-01T00:00:00Z'),
    nextSerial: () => serial++,
  };
  // RSA key generation dominates the cost: the three products share one ARK key and one ASK key (their
  // certificates differ, so each product still has its own chain).
  const arkKey = { key: newKey('rsa-pss') };
  const askKey = { key: newKey('rsa-pss') };
  const amdFor = (product: SnpProduct) => {
    const ark = issue(base, [...AMD_SUBJECT, [AT.CN, `ARK-${product}`]], 'rsa-pss', 'self', true, [], {}, arkKey);
    const ask = issue(base, [...AMD_SUBJECT, [AT.CN, `SEV-${product}`]], 'rsa-pss', ark, true, [], {}, askKey);
    const asvk = issue(base, [...AMD_SUBJECT, [AT.CN, `SEV-VLEK-${product}`]], 'rsa-pss', ark, true, [], {}, askKey);
    return { ark, ask, asvk };
  };
  const amd = { Milan: amdFor('Milan'), Genoa: amdFor('Genoa'), Turin: amdFor('Turin') };
  const intelName = (cn: string) => [[AT.CN, cn], [AT.O, 'Intel Corporation'], [AT.L, 'Santa Clara'], [AT.ST, 'CA'], [AT.C, 'US']] as const;
  const iroot = issue(base, intelName('Intel SGX Root CA (test)'), 'p256', 'self', true);
  const intel = {
    root: iroot,
    pckCa: issue(base, intelName('Intel SGX PCK Platform CA (test)'), 'p256', iroot, true),
    tcbSigning: issue(base, intelName('Intel SGX TCB Signing (test)'), 'p256', iroot, false),
  };
  const nvName = (cn: string) => [[AT.CN, cn], [AT.O, 'NVIDIA Corporation']] as const;
  const nroot = issue(base, nvName('NVIDIA Device Identity CA (test)'), 'p384', 'self', true);
  const identity = issue(base, nvName('NVIDIA GH100 Identity'), 'p384', nroot, true);
  const rimRoot = issue(base, nvName('NVIDIA CoRIM signing Root CA (test)'), 'p384', 'self', true);
  const rimCa = issue(base, nvName('NVIDIA Reference Value GH100 CA (test)'), 'p384', rimRoot, true);
  const nvidia = {
    root: nroot,
    identity,
    ica: issue(base, nvName('NVIDIA GH100 Provisioner ICA 1'), 'p384', identity, true),
    rimRoot,
    rimCa,
    rimSigner: issue(base, nvName('HCC RIM L4 Signer (test)'), 'p384', rimCa, false),
  };
  return {
    ...base,
    amd,
    intel,
    nvidia,
    trust: Object.freeze({
      amdArk: Object.freeze({ Milan: amd.Milan.ark.pem, Genoa: amd.Genoa.ark.pem, Turin: amd.Turin.ark.pem }),
      amdIntermediates: Object.freeze(Object.values(amd).flatMap((a) => [a.ask.pem, a.asvk.pem])),
      intelRoot: iroot.pem,
      nvidiaDeviceRoot: nroot.pem,
      nvidiaRimRoot: rimRoot.pem,
      label: 'test',
    }),
  };
}

/** The JSON form of a test authority (private keys as PKCS#8 PEM): test and POC use only. */
interface SerializedIssued {
  readonly der: string;
  readonly key: string;
  readonly kind: SigningKey['kind'];
  readonly subject: ReadonlyArray<readonly [string, string]>;
}

function serializeIssued(i: Issued): SerializedIssued {
  return { der: Buffer.from(i.der).toString('base64'), key: i.key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, kind: i.key.kind, subject: i.subject };
}

function parseIssued(v: unknown, what: string): Issued {
  const o = v as Partial<SerializedIssued> | null;
  if (o === null || typeof o !== 'object' || typeof o.der !== 'string' || typeof o.key !== 'string' || !Array.isArray(o.subject) || (o.kind !== 'rsa-pss' && o.kind !== 'p256' && o.kind !== 'p384')) {
    throw new TypeError(`test authority: ${what} is not a serialized certificate`);
  }
  const privateKey = createPrivateKey(o.key);
  const der = new Uint8Array(Buffer.from(o.der, 'base64'));
  return { der, pem: toPem(der), key: { privateKey, publicKey: createPublicKey(privateKey), kind: o.kind }, subject: o.subject };
}

/**
 * Writes a test authority as JSON (certificates and private keys), so the separate processes of a POC
 * federation (`flare poc --attest test`) share one synthetic vendor hierarchy. The output holds private
 * keys of a test-only hierarchy: keep it in the POC workspace, never where real trust is configured.
 */
export function serializeTestAuthority(auth: TestAuthority): string {
  const amd = Object.fromEntries(Object.entries(auth.amd).map(([p, a]) => [p, { ark: serializeIssued(a.ark), ask: serializeIssued(a.ask), asvk: serializeIssued(a.asvk) }]));
  const group = (g: Record<string, Issued>) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, serializeIssued(v)]));
  return JSON.stringify({ format: 'flare-ts-test-authority-v1', notBefore: auth.notBefore.toISOString(), notAfter: auth.notAfter.toISOString(), amd, intel: group(auth.intel), nvidia: group(auth.nvidia) });
}

/** Reads a test authority written by {@link serializeTestAuthority}. @throws TypeError when it is not one */
export function loadTestAuthority(text: string): TestAuthority {
  const doc = JSON.parse(text) as Record<string, unknown>;
  if (doc['format'] !== 'flare-ts-test-authority-v1') throw new TypeError('not a serialized FLARE-TS test authority');
  const g = (name: string) => (doc[name] ?? {}) as Record<string, unknown>;
  const amdRaw = g('amd') as Record<string, Record<string, unknown>>;
  const amdFor = (p: SnpProduct) => ({ ark: parseIssued(amdRaw[p]?.['ark'], `${p} ARK`), ask: parseIssued(amdRaw[p]?.['ask'], `${p} ASK`), asvk: parseIssued(amdRaw[p]?.['asvk'], `${p} ASVK`) });
  const amd = { Milan: amdFor('Milan'), Genoa: amdFor('Genoa'), Turin: amdFor('Turin') };
  const i = g('intel');
  const n = g('nvidia');
  const intel = { root: parseIssued(i['root'], 'Intel root'), pckCa: parseIssued(i['pckCa'], 'Intel PCK CA'), tcbSigning: parseIssued(i['tcbSigning'], 'Intel TCB signing') };
  const nvidia = {
    root: parseIssued(n['root'], 'NVIDIA root'),
    identity: parseIssued(n['identity'], 'NVIDIA identity'),
    ica: parseIssued(n['ica'], 'NVIDIA ICA'),
    rimRoot: parseIssued(n['rimRoot'], 'NVIDIA RIM root'),
    rimCa: parseIssued(n['rimCa'], 'NVIDIA RIM CA'),
    rimSigner: parseIssued(n['rimSigner'], 'NVIDIA RIM signer'),
  };
  // Serial numbers of certificates issued after loading only need to be unique per issuer and process.
  let serial = 0x100000 + Math.floor(Date.now() % 0x100000);
  return {
    notBefore: new Date(String(doc['notBefore'])),
    notAfter: new Date(String(doc['notAfter'])),
    nextSerial: () => serial++,
    amd,
    intel,
    nvidia,
    trust: Object.freeze({
      amdArk: Object.freeze({ Milan: amd.Milan.ark.pem, Genoa: amd.Genoa.ark.pem, Turin: amd.Turin.ark.pem }),
      amdIntermediates: Object.freeze(Object.values(amd).flatMap((a) => [a.ask.pem, a.asvk.pem])),
      intelRoot: intel.root.pem,
      nvidiaDeviceRoot: nvidia.root.pem,
      nvidiaRimRoot: nvidia.rimRoot.pem,
      label: 'test',
    }),
  };
}
