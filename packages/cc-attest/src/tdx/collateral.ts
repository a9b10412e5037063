import { createHash, verify } from 'node:crypto';
import { AttestError, parseStrictJson } from '@flare/core';
import { z } from 'zod';
import { fromHex } from '../bytes.js';
import type { ParsedCertificate } from '../cert.js';
import type { PckTcb } from './pck.js';
import type { TdxQuote } from './quote.js';

// Intel PCS collateral for TDX: TCB info (/tdx/certification/v4/tcb) and the TD QE identity
// (/tdx/certification/v4/qe/identity). Each response is `{"tcbInfo"|"enclaveIdentity": {...}, "signature":
// hex r||s}`; the ECDSA P-256 signature covers the exact bytes of the inner JSON value as sent, so the raw
// text is kept, not re-serialized.

/** TCB statuses in Intel's order, best first (Intel SGX DCAP QVL, sgx_ql_qv_result_t). */
export const TDX_TCB_STATUSES = ['UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded', 'ConfigurationAndSWHardeningNeeded', 'OutOfDate', 'OutOfDateConfigurationNeeded', 'Revoked'] as const;
/** One of Intel's TCB statuses. */
export type TdxTcbStatus = (typeof TDX_TCB_STATUSES)[number];

const hexStr = (n: number) => z.string().regex(new RegExp(`^[0-9a-fA-F]{${n}}$`));
const status = z.enum(TDX_TCB_STATUSES);
const svnList = z.array(z.object({ svn: z.number().int().min(0).max(255) }).loose()).length(16);
const date = z.iso.datetime();

const TcbLevel = z.object({
  tcb: z.object({ sgxtcbcomponents: svnList, pcesvn: z.number().int().min(0).max(65535), tdxtcbcomponents: svnList }).loose(),
  tcbDate: date,
  tcbStatus: status,
  advisoryIDs: z.array(z.string()).optional(),
}).loose();
const ModuleIdentity = z.object({
  id: z.string().regex(/^TDX_[0-9A-F]{2}$/),
  mrsigner: hexStr(96),
  attributes: hexStr(16),
  attributesMask: hexStr(16),
  tcbLevels: z.array(z.object({ tcb: z.object({ isvsvn: z.number().int().min(0).max(255) }).loose(), tcbDate: date, tcbStatus: status }).loose()).min(1).max(64),
}).loose();
const TcbInfo = z.object({
  id: z.literal('TDX'),
  version: z.literal(3),
  issueDate: date,
  nextUpdate: date,
  fmspc: hexStr(12),
  pceId: hexStr(4),
  tcbType: z.number().int(),
  tcbEvaluationDataNumber: z.number().int(),
  tdxModule: z.object({ mrsigner: hexStr(96), attributes: hexStr(16), attributesMask: hexStr(16) }).loose(),
  tdxModuleIdentities: z.array(ModuleIdentity).max(64).optional(),
  tcbLevels: z.array(TcbLevel).min(1).max(256),
}).loose();
const QeIdentity = z.object({
  id: z.literal('TD_QE'),
  version: z.literal(2),
  issueDate: date,
  nextUpdate: date,
  tcbEvaluationDataNumber: z.number().int(),
  miscselect: hexStr(8),
  miscselectMask: hexStr(8),
  attributes: hexStr(32),
  attributesMask: hexStr(32),
  mrsigner: hexStr(64),
  isvprodid: z.number().int(),
  tcbLevels: z.array(z.object({ tcb: z.object({ isvsvn: z.number().int().min(0).max(65535) }).loose(), tcbDate: date, tcbStatus: status }).loose()).min(1).max(256),
}).loose();

/** Parsed TDX TCB info (PCS TCB info v3 for TDX). */
export type TdxTcbInfo = z.infer<typeof TcbInfo>;
/** Parsed TD QE identity (PCS enclave identity v2). */
export type TdxQeIdentity = z.infer<typeof QeIdentity>;

/** A signed PCS document: the parsed body, the exact signed bytes and the signature. */
export interface SignedCollateral<T> {
  readonly body: T;
  readonly signed: Uint8Array;
  readonly signature: Uint8Array;
}

/** Finds the raw text of a top-level member of a JSON object (the text was already validated as JSON). */
function rawMember(text: string, key: string): string | undefined {
  let i = text.indexOf('{') + 1;
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  };
  const skipString = () => {
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
  };
  const skipValue = () => {
    ws();
    if (text[i] === '"') return skipString();
    if (text[i] === '{' || text[i] === '[') {
      let depth = 0;
      do {
        const c = text[i];
        if (c === '"') {
          skipString();
          continue;
        }
        if (c === '{' || c === '[') depth++;
        if (c === '}' || c === ']') depth--;
        i++;
      } while (depth > 0);
      return;
    }
    while (i < text.length && !',}] \t\r\n'.includes(text[i]!)) i++;
  };
  for (;;) {
    ws();
    if (text[i] !== '"') return undefined;
    const k0 = i;
    skipString();
    const name = JSON.parse(text.slice(k0, i)) as string;
    ws();
    i++; // ':'
    ws();
    const v0 = i;
    skipValue();
    if (name === key) return text.slice(v0, i);
    ws();
    if (text[i] !== ',') return undefined;
    i++;
  }
}

// Parsed documents and signature results, by content hash: a warm verifier does not re-parse or re-verify
// the same collateral (Intel refreshes it monthly; a federation verifies many quotes against one copy).
const parsedCache = new Map<string, SignedCollateral<unknown>>();
const signatureCache = new Map<string, boolean>();
const CACHE = 64;
const remember = <V>(map: Map<string, V>, key: string, value: V): V => {
  if (map.size >= CACHE) map.delete(map.keys().next().value as string);
  map.set(key, value);
  return value;
};

function parseSigned<T>(text: string, member: string, schema: z.ZodType<T>, what: string): SignedCollateral<T> {
  const key = `${member}:${createHash('sha256').update(text, 'utf8').digest('hex')}`;
  const hit = parsedCache.get(key);
  if (hit !== undefined) return hit as SignedCollateral<T>;
  return remember(parsedCache, key, parseSignedUncached(text, member, schema, what)) as SignedCollateral<T>;
}

function parseSignedUncached<T>(text: string, member: string, schema: z.ZodType<T>, what: string): SignedCollateral<T> {
  let doc: unknown;
  try {
    doc = parseStrictJson(text, { maxDepth: 16 });
  } catch (cause) {
    throw new AttestError('E_ATTEST_COLLATERAL', `${what} is not valid JSON`, { cause });
  }
  const outer = z.strictObject({ [member]: z.unknown(), signature: hexStr(128) }).safeParse(doc);
  if (!outer.success) throw new AttestError('E_ATTEST_COLLATERAL', `${what} is not a PCS response with "${member}" and "signature"`);
  const body = schema.safeParse(outer.data[member]);
  if (!body.success) throw new AttestError('E_ATTEST_COLLATERAL', `${what} "${member}" is invalid: ${body.error.issues[0]?.path.join('.')} ${body.error.issues[0]?.message}`);
  const raw = rawMember(text, member)!;
  return { body: body.data, signed: new Uint8Array(Buffer.from(raw, 'utf8')), signature: fromHex(outer.data.signature as string, 'collateral signature') };
}

/** Parses a PCS TDX TCB info response body. @throws AttestError E_ATTEST_COLLATERAL */
export function parseTdxTcbInfo(text: string): SignedCollateral<TdxTcbInfo> {
  return parseSigned(text, 'tcbInfo', TcbInfo, 'TCB info');
}

/** Parses a PCS TD QE identity response body. @throws AttestError E_ATTEST_COLLATERAL */
export function parseTdxQeIdentity(text: string): SignedCollateral<TdxQeIdentity> {
  return parseSigned(text, 'enclaveIdentity', QeIdentity, 'QE identity');
}

/** Whether the Intel TCB signing certificate signed a PCS document (ECDSA P-256, r||s). */
export function collateralSignedBy(doc: SignedCollateral<unknown>, signer: ParsedCertificate): boolean {
  const key = `${createHash('sha256').update(doc.signed).update(doc.signature).digest('hex')}:${signer.sha256}`;
  const hit = signatureCache.get(key);
  if (hit !== undefined) return hit;
  let ok = false;
  try {
    ok = verify('sha256', doc.signed, { key: signer.publicKey, dsaEncoding: 'ieee-p1363' }, doc.signature);
  } catch {
    ok = false;
  }
  return remember(signatureCache, key, ok);
}

const worse = (a: TdxTcbStatus, b: TdxTcbStatus): TdxTcbStatus => (TDX_TCB_STATUSES.indexOf(a) >= TDX_TCB_STATUSES.indexOf(b) ? a : b);

/** The outcome of matching a quote against TCB info. */
export interface TdxTcbEvaluation {
  /** The combined status, or undefined when no TCB level matched. */
  readonly status: TdxTcbStatus | undefined;
  readonly platformStatus: TdxTcbStatus | undefined;
  readonly moduleStatus: TdxTcbStatus | undefined;
  readonly tcbDate: string | undefined;
  readonly advisoryIds: readonly string[];
  /** Why no level matched or the module identity failed, when it did. */
  readonly problem: string | undefined;
}

const masked = (value: Uint8Array, mask: string, expected: string) => {
  const m = Buffer.from(mask, 'hex');
  const e = Buffer.from(expected, 'hex');
  if (m.length !== value.length || e.length !== value.length) return false;
  return value.every((b, i) => (b & m[i]!) === (e[i]! & m[i]!));
};

/**
 * Finds the TCB level of a TDX platform (Intel DCAP QVL TCB-level matching, as go-tdx-guest and trustee do):
 * the first level whose 16 SGX components and PCESVN are at most the PCK certificate's and whose TDX
 * components are at most TEE_TCB_SVN. When TCB info lists tdxModuleIdentities and TEE_TCB_SVN[1] > 0, the
 * first two TEE_TCB_SVN bytes are judged by the module identity TDX_<svn[1]> instead.
 */
export function evaluateTdxTcb(info: TdxTcbInfo, quote: TdxQuote, pck: PckTcb): TdxTcbEvaluation {
  const tee = quote.body.teeTcbSvn;
  let moduleStatus: TdxTcbStatus | undefined;
  let firstTdx = 0;
  if (info.tdxModuleIdentities !== undefined && tee[1]! > 0) {
    firstTdx = 2;
    const id = `TDX_${tee[1]!.toString(16).toUpperCase().padStart(2, '0')}`;
    const module = info.tdxModuleIdentities.find((m) => m.id === id);
    if (module === undefined) return { status: undefined, platformStatus: undefined, moduleStatus: undefined, tcbDate: undefined, advisoryIds: [], problem: `no TDX module identity ${id}` };
    if (Buffer.from(module.mrsigner, 'hex').compare(quote.body.mrSignerSeam) !== 0 || !masked(quote.body.seamAttributes, module.attributesMask, module.attributes)) {
      return { status: undefined, platformStatus: undefined, moduleStatus: undefined, tcbDate: undefined, advisoryIds: [], problem: `TDX module signer or attributes differ from identity ${id}` };
    }
    const level = module.tcbLevels.find((l) => l.tcb.isvsvn <= tee[0]!);
    if (level === undefined) return { status: undefined, platformStatus: undefined, moduleStatus: undefined, tcbDate: undefined, advisoryIds: [], problem: `TDX module ${id} SVN ${tee[0]} matches no level` };
    moduleStatus = level.tcbStatus;
  } else if (Buffer.from(info.tdxModule.mrsigner, 'hex').compare(quote.body.mrSignerSeam) !== 0 || !masked(quote.body.seamAttributes, info.tdxModule.attributesMask, info.tdxModule.attributes)) {
    return { status: undefined, platformStatus: undefined, moduleStatus: undefined, tcbDate: undefined, advisoryIds: [], problem: 'MR_SIGNER_SEAM or SEAM attributes differ from the TCB info tdxModule' };
  }
  const level = info.tcbLevels.find(
    (l) =>
      l.tcb.sgxtcbcomponents.every((c, i) => pck.sgxComponents[i]! >= c.svn) &&
      pck.pceSvn >= l.tcb.pcesvn &&
      l.tcb.tdxtcbcomponents.every((c, i) => i < firstTdx || tee[i]! >= c.svn),
  );
  if (level === undefined) return { status: undefined, platformStatus: undefined, moduleStatus, tcbDate: undefined, advisoryIds: [], problem: 'no matching TCB level found' };
  return {
    status: moduleStatus === undefined ? level.tcbStatus : worse(level.tcbStatus, moduleStatus),
    platformStatus: level.tcbStatus,
    moduleStatus,
    tcbDate: level.tcbDate,
    advisoryIds: level.advisoryIDs ?? [],
    problem: undefined,
  };
}

/** Matches the quoting enclave against the QE identity; returns its TCB status or the reason it does not match. */
export function evaluateQeIdentity(identity: TdxQeIdentity, quote: TdxQuote): { status: TdxTcbStatus | undefined; problem: string | undefined } {
  const qe = quote.qeReport;
  if (Buffer.from(identity.mrsigner, 'hex').compare(qe.mrSigner) !== 0) return { status: undefined, problem: 'QE MRSIGNER differs from the QE identity' };
  if (identity.isvprodid !== qe.isvProdId) return { status: undefined, problem: `QE ISVPRODID ${qe.isvProdId} differs from ${identity.isvprodid}` };
  const misc = new Uint8Array(4);
  // go-tdx-guest reads the PCS hex as the little-endian bytes of the u32.
  new DataView(misc.buffer).setUint32(0, qe.miscSelect, true);
  if (!masked(misc, identity.miscselectMask, identity.miscselect)) return { status: undefined, problem: 'QE MISCSELECT differs under mask' };
  if (!masked(qe.attributes, identity.attributesMask, identity.attributes)) return { status: undefined, problem: 'QE ATTRIBUTES differ under mask' };
  const level = identity.tcbLevels.find((l) => l.tcb.isvsvn <= qe.isvSvn);
  if (level === undefined) return { status: undefined, problem: `QE ISVSVN ${qe.isvSvn} matches no level` };
  return { status: level.tcbStatus, problem: undefined };
}
