import { createHash, randomBytes, sign } from 'node:crypto';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import { C14nCanonicalization } from 'xml-crypto';
import { AT, newKey } from './certs.js';
import { derContext as ctx, derOctetString as octets, derOidEncode as oid, derSequence as seq, derUtf8String as utf8 } from '@flare/core';
import { issue, type Issued, type TestAuthority } from './authority.js';

/** Options of {@link synthesizeGpuEvidence}. */
export interface GpuSynthesisOptions {
  /** The 32-byte SPDM request nonce. */
  readonly nonce?: Uint8Array;
  /** Measurement values by SPDM block index (1-based); default 8 blocks of fixed test values. */
  readonly measurements?: ReadonlyMap<number, Uint8Array>;
  readonly driverVersion?: string;
  /** VBIOS version bytes (default 96.00.9f.00.01). */
  readonly vbios?: Uint8Array;
  /** The FWID in the opaque data (default: the leaf certificate's). */
  readonly opaqueFwid?: Uint8Array;
  /** Leave the FWID out of the opaque data (as drivers before 550 do). */
  readonly omitFwid?: boolean;
  /** Sign with a key other than the leaf's. */
  readonly wrongSigner?: boolean;
  /** Append junk after the signature (trustee's CoCo sample has one trailing byte). */
  readonly trailing?: number;
}

/** The default test measurements: block i holds SHA-384("flare-ts test measurement i"). */
export function defaultGpuMeasurements(): Map<number, Uint8Array> {
  return new Map(Array.from({ length: 8 }, (_, i) => [i + 1, new Uint8Array(createHash('sha384').update(`flare-ts test measurement ${i + 1}`).digest())]));
}

const u16 = (n: number) => new Uint8Array([n & 0xff, n >> 8]);
const cat = (...p: Uint8Array[]) => new Uint8Array(Buffer.concat(p));
const tlvOpaque = (type: number, value: Uint8Array) => cat(u16(type), u16(value.length), value);

/**
 * Builds Hopper-shaped GPU evidence (SPDM 1.1 GET_MEASUREMENTS request || response) signed by a fresh device
 * leaf whose 5-certificate chain ends at the test authority's device root; the leaf carries the FWID in a
 * DICE TcbInfo extension.
 */
export function synthesizeGpuEvidence(auth: TestAuthority, o: GpuSynthesisOptions = {}): { evidence: Uint8Array; certificates: string; leaf: Issued; brom: Issued } {
  const fwid = randomBytes(48);
  const nv = (cn: string) => [[AT.CN, cn], [AT.O, 'NVIDIA Corporation']] as const;
  const brom = issue(auth, nv('GH100 A01 GSP BROM'), 'p384', auth.nvidia.ica, true);
  // TCG DICE TcbInfo: vendor [0], model [1], fwids [6] SEQUENCE OF { hashAlg, digest }.
  const dice = seq(ctx(0, utf8('NVIDIA').subarray(2), false), ctx(1, utf8('GH100').subarray(2), false), ctx(6, seq(oid('2.16.840.1.101.3.4.2.2'), octets(fwid))));
  const leaf = issue(auth, nv('GH100 A01 GSP FMC LF'), 'p384', brom, false, [['2.23.133.5.4.1', dice]]);
  const request = cat(new Uint8Array([0x11, 0xe0, 0x01, 0xff]), o.nonce ?? randomBytes(32), new Uint8Array([0]));
  const blocks = [...(o.measurements ?? defaultGpuMeasurements())].sort((a, b) => a[0] - b[0]);
  const record = cat(...blocks.map(([index, value]) => cat(new Uint8Array([index, 1]), u16(value.length + 3), new Uint8Array([1]), u16(value.length), value)));
  const opaque = cat(
    tlvOpaque(3, new Uint8Array(Buffer.from(`${o.driverVersion ?? '550.90.07'}\0`, 'latin1'))),
    tlvOpaque(6, o.vbios ?? new Uint8Array([0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0])),
    tlvOpaque(17, new Uint8Array(Buffer.from('1010', 'latin1'))),
    tlvOpaque(18, new Uint8Array(Buffer.from('0200', 'latin1'))),
    tlvOpaque(15, new Uint8Array(Buffer.from('882', 'latin1'))),
    ...(o.omitFwid ? [] : [tlvOpaque(20, o.opaqueFwid ?? fwid)]),
  );
  const len = record.length;
  const response = cat(new Uint8Array([0x11, 0x60, 0, 0, blocks.length, len & 0xff, (len >> 8) & 0xff, len >> 16]), record, randomBytes(32), u16(opaque.length), opaque);
  const signed = cat(request, response);
  const sig = sign('sha384', signed, { key: (o.wrongSigner ? newKey('p384') : leaf.key).privateKey, dsaEncoding: 'ieee-p1363' });
  const chain = leaf.pem + brom.pem + auth.nvidia.ica.pem + auth.nvidia.identity.pem + auth.nvidia.root.pem;
  return { evidence: cat(signed, sig, new Uint8Array(o.trailing ?? 0)), certificates: chain, leaf, brom };
}

const DS = 'http://www.w3.org/2000/09/xmldsig#';

/** Options of {@link synthesizeRim}. */
export interface RimSynthesisOptions {
  /** Meta colloquialVersion: the driver or VBIOS version the RIM describes. */
  readonly version: string;
  /** Golden values by RIM index (SPDM block index - 1); each entry lists the alternatives. */
  readonly measurements: ReadonlyMap<number, readonly Uint8Array[]>;
  /** Alter the content after signing (the digest check then fails). */
  readonly tamperAfterSigning?: boolean;
  /** Sign with a key other than the signer certificate's. */
  readonly wrongSigner?: boolean;
}

/**
 * Builds a SWID RIM with an enveloped XML-DSig (C14N 1.1, SHA-384, ECDSA-SHA384) signed by the test
 * authority's RIM signer, in the shape NVIDIA publishes.
 */
export function synthesizeRim(auth: TestAuthority, o: RimSynthesisOptions): string {
  const b64 = (der: Uint8Array) => Buffer.from(der).toString('base64');
  const resources = [...o.measurements]
    .sort((a, b) => a[0] - b[0])
    .map(([index, alts]) => `<ns0:Resource type="Measurement" index="${index}" active="True" alternatives="${alts.length}" ${alts.map((h, k) => `ns2:Hash${k}="${Buffer.from(h).toString('hex')}"`).join(' ')} name="Measurement_${index}" size="48"/>`)
    .join('\n    ');
  const xml = `<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" xmlns:ns0="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" xmlns:ns2="http://www.w3.org/2001/04/xmlenc#sha384" corpus="false" name="GH100" patch="false" supplemental="false" tagId="test-${o.version}" version="1.0" tagVersion="0">
    <ns0:Entity name="NVIDIA Corporation" role="softwareCreator tagCreator"/>
    <ns0:Meta colloquialVersion="${o.version}" edition="GPU" product="GH100" revision="r1"/>
    <ns0:Payload>
    ${resources}
    </ns0:Payload>
<ds:Signature xmlns:ds="${DS}"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"/><ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2006/12/xml-c14n11"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#sha384"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${b64(auth.nvidia.rimSigner.der)}</ds:X509Certificate><ds:X509Certificate>${b64(auth.nvidia.rimCa.der)}</ds:X509Certificate><ds:X509Certificate>${b64(auth.nvidia.rimRoot.der)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature></SoftwareIdentity>`;
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const root = doc.documentElement!;
  const sig = doc.getElementsByTagNameNS(DS, 'Signature').item(0)!;
  const c14n = new C14nCanonicalization();
  root.removeChild(sig);
  const digest = createHash('sha384').update(c14n.process(root, {}) as string, 'utf8').digest('base64');
  root.appendChild(sig);
  doc.getElementsByTagNameNS(DS, 'DigestValue').item(0)!.appendChild(doc.createTextNode(digest));
  const signedInfo = doc.getElementsByTagNameNS(DS, 'SignedInfo').item(0)!;
  const ns = [
    { prefix: '', namespaceURI: 'http://standards.iso.org/iso/19770/-2/2015/schema.xsd' },
    { prefix: 'ns0', namespaceURI: 'http://standards.iso.org/iso/19770/-2/2015/schema.xsd' },
    { prefix: 'ns2', namespaceURI: 'http://www.w3.org/2001/04/xmlenc#sha384' },
    { prefix: 'ds', namespaceURI: DS },
  ];
  const canonical = c14n.process(signedInfo, { ancestorNamespaces: ns }) as string;
  const value = sign('sha384', Buffer.from(canonical, 'utf8'), { key: (o.wrongSigner ? newKey('p384') : auth.nvidia.rimSigner.key).privateKey, dsaEncoding: 'ieee-p1363' });
  doc.getElementsByTagNameNS(DS, 'SignatureValue').item(0)!.appendChild(doc.createTextNode(value.toString('base64')));
  let out = new XMLSerializer().serializeToString(doc);
  if (o.tamperAfterSigning) out = out.replace('active="True"', 'active="False"');
  return out;
}
