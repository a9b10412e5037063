import { createHash, verify } from 'node:crypto';
import { DOMParser } from '@xmldom/xmldom';
import { AttestError, type AttestErrorCode } from '@flare/core';
import { C14nCanonicalization } from 'xml-crypto';
import { fromHex } from '../bytes.js';
import { chainEntry, checkChain, OID, parseCertificate, parseCertificates, type ChainEntry, type ChainOutcome, type ParsedCertificate } from '../cert.js';
import { VENDOR_TRUST } from '../trust.js';

// NVIDIA Reference Integrity Manifests: ISO/IEC 19770-2 SWID tags with an enveloped XML-DSig (W3C XML
// Signature 1.1): Reference URI="" with the enveloped-signature and C14N 1.1 transforms, SHA-384 digest,
// ECDSA-SHA384 signature (RFC 6931 URIs), signer chain in KeyInfo ending at the NVIDIA CoRIM signing Root CA.
//
// xml-crypto 6.3 provides the canonicalizer only (it has no ecdsa-sha384, xmldsig-more#sha384 or c14n11
// URIs); digest and signature are checked here with node:crypto. C14N 1.0 and 1.1 produce the same bytes
// for these documents (no xml:id / xml:base attributes, which are the only differences). The document is
// accepted only in the one shape NVIDIA signs, so signature-wrapping tricks (a second Signature, a Reference
// to a subset, extra transforms) are refused before anything is read from it.

const DS = 'http://www.w3.org/2000/09/xmldsig#';
const SWID = 'http://standards.iso.org/iso/19770/-2/2015/schema.xsd';
const SHA384_NS = 'http://www.w3.org/2001/04/xmlenc#sha384';
const C14N11 = 'http://www.w3.org/2006/12/xml-c14n11';
const C14N10 = 'http://www.w3.org/TR/2001/REC-xml-c14n-20010315';
const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
const ECDSA_SHA384 = 'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384';
const DIGEST_SHA384 = new Set(['http://www.w3.org/2001/04/xmldsig-more#sha384', 'http://www.w3.org/2001/04/xmlenc#sha384']);
/** Largest RIM accepted (the real ones are ~20 KB). */
const MAX_RIM_BYTES = 1 << 20;

/** One golden measurement of a RIM. */
export interface RimMeasurement {
  /** The RIM index (SPDM block index - 1). */
  readonly index: number;
  readonly active: boolean;
  /** Accepted values (Hash0..HashN). */
  readonly alternatives: readonly string[];
}

/** A RIM whose XML signature verified; its content is read from the verified document only. */
export interface Rim {
  readonly tagId: string;
  readonly name: string;
  readonly product: string | undefined;
  /** Meta colloquialVersion: the driver version ("550.144.03") or the VBIOS version ("96.00.5E.00.01"). */
  readonly version: string;
  readonly measurements: readonly RimMeasurement[];
  /** The signer chain that verified, leaf first. */
  readonly signer: readonly ChainEntry[];
}

/** The outcome of checking one RIM. */
export type RimOutcome = { readonly ok: true; readonly rim: Rim; readonly detail: string } | { readonly ok: false; readonly code: AttestErrorCode; readonly detail: string };

type El = Element;

function elements(parent: El | Document, ns: string, local: string): El[] {
  const list = parent.getElementsByTagNameNS(ns, local);
  const out: El[] = [];
  for (let i = 0; i < list.length; i++) out.push(list.item(i)!);
  return out;
}

function childElements(parent: El): El[] {
  const out: El[] = [];
  for (let n = parent.firstChild; n !== null; n = n.nextSibling) if (n.nodeType === 1) out.push(n as El);
  return out;
}

function one(parent: El | Document, ns: string, local: string): El {
  const found = elements(parent, ns, local);
  if (found.length !== 1) throw new AttestError('E_ATTEST_RIM', `RIM has ${found.length} ${local} elements (expected exactly one)`);
  return found[0]!;
}

function parseXml(xml: string): Document {
  if (xml.length > MAX_RIM_BYTES) throw new AttestError('E_ATTEST_MALFORMED', `RIM is larger than ${MAX_RIM_BYTES} bytes`);
  // No DTDs: entity expansion and external entities are refused before parsing.
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new AttestError('E_ATTEST_RIM', 'RIM contains a DTD');
  const problems: string[] = [];
  const doc = new DOMParser({
    errorHandler: {
      error: (msg: unknown) => problems.push(String(msg)),
      fatalError: (msg: unknown) => problems.push(String(msg)),
    },
  }).parseFromString(xml, 'text/xml');
  if (problems.length > 0 || doc.documentElement === null) throw new AttestError('E_ATTEST_MALFORMED', 'RIM is not well-formed XML');
  return doc;
}

function ancestorNamespaces(el: El): Array<{ prefix: string; namespaceURI: string }> {
  // Inclusive C14N of a subset emits every namespace in scope on its apex (W3C C14N 1.0 section 2.4), so
  // SignedInfo carries the declarations of SoftwareIdentity and Signature.
  const seen = new Map<string, string>();
  for (let n = el.parentNode; n !== null && n.nodeType === 1; n = n.parentNode) {
    const attrs = (n as El).attributes;
    for (let i = 0; i < attrs.length; i++) {
      const a = attrs.item(i)!;
      const prefix = a.name === 'xmlns' ? '' : a.prefix === 'xmlns' ? a.localName! : undefined;
      if (prefix !== undefined && !seen.has(prefix)) seen.set(prefix, a.value);
    }
  }
  return [...seen].filter(([, uri]) => uri !== '').map(([prefix, namespaceURI]) => ({ prefix, namespaceURI }));
}

/** What a RIM document says about itself, independent of trust anchors and time (cached by content). */
type RimDocument =
  | { readonly kind: 'refused'; readonly code: AttestErrorCode; readonly detail: string }
  | { readonly kind: 'parsed'; readonly certs: readonly ParsedCertificate[]; readonly signatureOk: boolean; readonly digestOk: boolean; readonly content: Rim | { readonly code: AttestErrorCode; readonly detail: string } };

const documents = new Map<string, RimDocument>();
const DOCUMENT_CACHE = 64;

function readRimDocument(xml: string): RimDocument {
  const key = createHash('sha256').update(xml, 'utf8').digest('hex');
  const hit = documents.get(key);
  if (hit !== undefined) return hit;
  const doc = parseRimDocument(xml);
  if (documents.size >= DOCUMENT_CACHE) documents.delete(documents.keys().next().value as string);
  documents.set(key, doc);
  return doc;
}

function parseRimDocument(xml: string): RimDocument {
  const refuse = (code: AttestErrorCode, detail: string): RimDocument => ({ kind: 'refused', code, detail });
  try {
    const doc = parseXml(xml);
    const root = doc.documentElement!;
    if (root.namespaceURI !== SWID || root.localName !== 'SoftwareIdentity') return refuse('E_ATTEST_RIM', 'RIM root element is not a SWID SoftwareIdentity');
    const sig = one(doc, DS, 'Signature');
    if (sig.parentNode !== root) return refuse('E_ATTEST_RIM', 'RIM Signature is not a child of SoftwareIdentity');
    const signedInfo = one(sig, DS, 'SignedInfo');
    const alg = (el: El) => el.getAttribute('Algorithm') ?? '';
    const c14nAlg = alg(one(signedInfo, DS, 'CanonicalizationMethod'));
    if (c14nAlg !== C14N11 && c14nAlg !== C14N10) return refuse('E_ATTEST_RIM', `RIM canonicalization ${c14nAlg} is not C14N`);
    if (alg(one(signedInfo, DS, 'SignatureMethod')) !== ECDSA_SHA384) return refuse('E_ATTEST_RIM', 'RIM signature method is not ECDSA-SHA384');
    const ref = one(signedInfo, DS, 'Reference');
    if (ref.getAttribute('URI') !== '') return refuse('E_ATTEST_RIM', 'RIM Reference does not cover the whole document (URI="")');
    const transforms = elements(ref, DS, 'Transform').map(alg);
    if (transforms.length !== 2 || transforms[0] !== ENVELOPED || (transforms[1] !== C14N11 && transforms[1] !== C14N10)) {
      return refuse('E_ATTEST_RIM', 'RIM Reference transforms are not enveloped-signature then C14N');
    }
    if (!DIGEST_SHA384.has(alg(one(ref, DS, 'DigestMethod')))) return refuse('E_ATTEST_RIM', 'RIM digest method is not SHA-384');
    const expectedDigest = Buffer.from((one(ref, DS, 'DigestValue').textContent ?? '').replace(/\s+/g, ''), 'base64');
    const signatureValue = Buffer.from((one(sig, DS, 'SignatureValue').textContent ?? '').replace(/\s+/g, ''), 'base64');
    const certs = elements(sig, DS, 'X509Certificate').map((c) => parseCertificate(new Uint8Array(Buffer.from((c.textContent ?? '').replace(/\s+/g, ''), 'base64'))));
    if (certs.length === 0 || certs.length > 8) return refuse('E_ATTEST_RIM', `RIM KeyInfo has ${certs.length} certificates`);
    const signer = certs[0]!;
    if (signer.keyAlg !== OID.ecPublicKey || signer.curve !== OID.p384) return refuse('E_ATTEST_RIM', 'RIM signer key is not ECDSA P-384');
    const c14n = new C14nCanonicalization();
    const signedInfoBytes = Buffer.from(c14n.process(signedInfo, { ancestorNamespaces: ancestorNamespaces(signedInfo) }) as string, 'utf8');
    let signatureOk = false;
    try {
      signatureOk = verify('sha384', signedInfoBytes, { key: signer.publicKey, dsaEncoding: 'ieee-p1363' }, signatureValue);
    } catch {
      signatureOk = false;
    }
    root.removeChild(sig);
    const digestOk = createHash('sha384').update(c14n.process(root, {}) as string, 'utf8').digest().equals(expectedDigest);
    root.appendChild(sig);
    return { kind: 'parsed', certs, signatureOk, digestOk, content: readContent(root) };
  } catch (e) {
    if (e instanceof AttestError) return refuse(e.code === 'E_ATTEST_MALFORMED' ? 'E_ATTEST_MALFORMED' : 'E_ATTEST_RIM', e.message);
    // xmldom throws plain errors on fatal syntax errors.
    if (e instanceof Error && !(e instanceof TypeError) && !(e instanceof RangeError)) return refuse('E_ATTEST_MALFORMED', 'RIM is not well-formed XML');
    throw e;
  }
}

function readContent(root: El): Rim | { readonly code: AttestErrorCode; readonly detail: string } {
  const meta = childElements(root).find((e) => e.namespaceURI === SWID && e.localName === 'Meta');
  const payload = childElements(root).find((e) => e.namespaceURI === SWID && e.localName === 'Payload');
  if (meta === undefined || payload === undefined) return { code: 'E_ATTEST_RIM', detail: 'RIM lacks Meta or Payload' };
  const measurements: RimMeasurement[] = [];
  for (const res of childElements(payload)) {
    if (res.localName !== 'Resource' || res.getAttribute('type') !== 'Measurement') continue;
    const index = Number(res.getAttribute('index'));
    const count = Number(res.getAttribute('alternatives') ?? '1');
    if (!Number.isInteger(index) || index < 0 || index > 255 || !Number.isInteger(count) || count < 1 || count > 64) {
      return { code: 'E_ATTEST_MALFORMED', detail: 'RIM Resource has an invalid index or alternatives count' };
    }
    const alternatives: string[] = [];
    for (let k = 0; k < count; k++) {
      const value = res.getAttributeNS(SHA384_NS, `Hash${k}`);
      if (value === null || value === '') return { code: 'E_ATTEST_MALFORMED', detail: `RIM Resource ${index} lacks Hash${k}` };
      alternatives.push(Buffer.from(fromHex(value, `RIM Resource ${index} Hash${k}`)).toString('hex'));
    }
    if (measurements.some((m) => m.index === index)) return { code: 'E_ATTEST_MALFORMED', detail: `RIM defines index ${index} twice` };
    measurements.push({ index, active: res.getAttribute('active') === 'True', alternatives });
  }
  return {
    tagId: root.getAttribute('tagId') ?? '',
    name: root.getAttribute('name') ?? '',
    product: meta.getAttribute('product') ?? undefined,
    version: meta.getAttribute('colloquialVersion') ?? '',
    measurements,
    signer: [],
  };
}

/**
 * Verifies a RIM's enveloped XML signature and its signer chain to `rimRoot` (PEM; default the pinned NVIDIA
 * CoRIM signing root) at `at`, then reads its
 * measurements from the verified document. Failures are reported in this order: document shape, XML
 * signature, signer chain (including validity at `at`), digest, content. The document checks that do not
 * depend on the root or the time are cached by the RIM's SHA-256, so a warm verifier re-checks only the chain.
 */
export function verifyRim(xml: string, at: Date, rimRoot: string = VENDOR_TRUST.nvidiaRimRoot): RimOutcome {
  const root = parseCertificates(rimRoot)[0];
  if (root === undefined) throw new TypeError('"rimRoot" expected a PEM certificate');
  return checkRim(xml, root, at).outcome;
}

/** verifyRim with a parsed root, also returning the verified signer chain (internal, for OCSP). */
export function checkRim(xml: string, rimRoot: ParsedCertificate, at: Date): { outcome: RimOutcome; chain: readonly ParsedCertificate[] } {
  const outcome = verifyRimParsed(xml, rimRoot, at);
  const d = documents.get(createHash('sha256').update(xml, 'utf8').digest('hex'));
  const certs = d?.kind === 'parsed' ? d.certs : [];
  return { outcome, chain: certs.length > 0 && certs[certs.length - 1]!.sha256 === rimRoot.sha256 ? certs : [...certs, rimRoot] };
}

function verifyRimParsed(xml: string, rimRoot: ParsedCertificate, at: Date): RimOutcome {
  const d = readRimDocument(xml);
  if (d.kind === 'refused') return { ok: false, code: d.code, detail: d.detail };
  const signer = d.certs[0]!;
  if (!d.signatureOk) return { ok: false, code: 'E_ATTEST_RIM', detail: `RIM XML signature does not verify with its signer "${signer.subject}"` };
  const chain = d.certs[d.certs.length - 1]!.sha256 === rimRoot.sha256 ? d.certs : [...d.certs, rimRoot];
  const outcome: ChainOutcome = checkChain(chain, rimRoot.sha256, at, ['RIM signer', 'RIM CA', 'RIM CA', 'RIM CA', 'RIM root']);
  if (!outcome.ok) return { ok: false, code: outcome.code, detail: `RIM signer chain: ${outcome.detail}` };
  if (!d.digestOk) return { ok: false, code: 'E_ATTEST_RIM', detail: 'RIM content does not match its signed digest (edited after signing)' };
  if ('code' in d.content) return { ok: false, code: d.content.code, detail: d.content.detail };
  return { ok: true, rim: { ...d.content, signer: chain.map((c, i) => chainEntry(i === 0 ? 'rim-signer' : i === chain.length - 1 ? 'root' : 'intermediate', c)) }, detail: `RIM ${d.content.version} signed by "${signer.subject}", chain to the NVIDIA RIM root` };
}
