import { X509Certificate, type KeyObject } from 'node:crypto';
import { AuditError, canonicalJson, type JsonValue } from '@flare/core';
import { verifyAnchor, type AuditAnchor } from './anchor.js';
import { readLines } from './read-lines.js';
import { CHECKPOINT_ACTION, checkpointSchema, eventSchema, GENESIS, sha256Hex, type SignatureAlg } from './record.js';
import { fingerprint, publicKeyFromSpki, verifyCheckpoint } from './signer.js';

/** What kind of damage a line shows. */
export type AuditProblemKind = 'modified' | 'deleted' | 'reordered' | 'inserted' | 'bad_signature' | 'unsigned_tail' | 'truncated' | 'rolled_back' | 'forked';

/** One finding of {@link verifyAuditLog}: the 1-based line, the kind, and a sentence. */
export interface AuditProblem {
  readonly line: number;
  readonly kind: AuditProblemKind;
  readonly detail: string;
}

/** The outcome of {@link verifyAuditLog}. */
export interface AuditVerification {
  /** True when the log is whole: an unbroken chain, every checkpoint signature good, nothing after the last checkpoint. */
  readonly ok: boolean;
  /** Event lines (checkpoints not counted). */
  readonly events: number;
  /** All lines read. */
  readonly lines: number;
  /** The site named by the first intact line. */
  readonly site: string | undefined;
  /** The last checkpoint line, with whether its signature verified. */
  readonly lastCheckpoint: { readonly line: number; readonly seq: number; readonly ts: string; readonly final: boolean; readonly valid: boolean } | null;
  /** True when the log ends with the final checkpoint close() writes. A log cut exactly after a checkpoint is whole up to it but not closed. */
  readonly closed: boolean;
  /**
   * Who signed the checkpoints. `trusted` is true only when a certificate was given and its key signed them;
   * without a certificate the signatures prove only that one key signed the whole log.
   */
  readonly signer: { readonly alg: SignatureAlg; readonly fingerprint: string; readonly trusted: boolean } | null;
  /** Every problem found, in line order (the first is the first bad line). */
  readonly problems: readonly AuditProblem[];
  /** With the `anchors` option: how the log compares with the checkpoints its peers recorded. */
  readonly anchors?: {
    /** Anchors of this log's site that verified and were compared. */
    readonly checked: number;
    /** Of those, found in the log as recorded (same seq, same hash). */
    readonly matched: number;
    /** The latest anchor of this log's site, whether or not the log reaches it. */
    readonly latest: { readonly seq: number; readonly ts: string } | null;
    /** Anchors of other sites (ignored) and anchors that did not verify (never used). */
    readonly otherSites: number;
    readonly invalid: number;
  };
}

/** Options of {@link verifyAuditLog}. */
export interface VerifyAuditLogOptions {
  /** The site certificate (PEM text) whose key must have signed every checkpoint (startup/client.crt or server.crt). */
  readonly certificate?: string;
  /**
   * Checkpoints of this log that its peers recorded (`readAnchors` of their logs, or exported anchors). Each must
   * be in the log at its seq with its hash: a log that ends before one is `rolled_back` (an older copy, or cut
   * after a valid checkpoint), one with another line there is `forked` (rolled back, then written again).
   * Anchors of other sites are ignored; anchors that do not verify are counted, never used.
   */
  readonly anchors?: readonly unknown[];
}

interface Entry {
  readonly line: number;
  /** Why the line could not be read as an audit line (then the fields below are absent). */
  readonly unreadable?: string;
  readonly seq?: number;
  readonly prev?: string;
  readonly stored?: string;
  readonly computed?: string;
  readonly site?: string;
  readonly ts?: string;
  readonly checkpoint?: { readonly alg: SignatureAlg; readonly key: string; readonly final: boolean; readonly sig: string };
}

function readEntry(line: number, text: string): Entry {
  let value: JsonValue;
  let canonical: string;
  try {
    // JSON.parse is safe here because the text must also equal its own canonical form: a duplicate key, a
    // prototype key or any other ambiguity would make the two differ (and zod refuses unknown keys).
    value = JSON.parse(text) as JsonValue;
    canonical = canonicalJson(value);
  } catch {
    return { line, unreadable: 'not valid JSON' };
  }
  const isCheckpoint = typeof value === 'object' && value !== null && !Array.isArray(value) && value['action'] === CHECKPOINT_ACTION;
  const parsed = isCheckpoint ? checkpointSchema.safeParse(value) : eventSchema.safeParse(value);
  if (!parsed.success) return { line, unreadable: `not an audit line (${parsed.error.issues.map((i) => i.path.join('.') || '(top)').join(', ')})` };
  // Lines are written in canonical form: any byte that differs from it (spacing, key order, escapes) is a change.
  if (canonical !== text) return { line, unreadable: 'not in canonical form' };
  const r = parsed.data;
  // The hashed body is the canonical line without its top-level "hash" (and "sig"): cut them out of the text
  // rather than serializing again. Keys after "hash" hold only strings and numbers, so the last occurrence is
  // the top-level key (a quote inside a string value is always escaped).
  const hashField = `"hash":"${r.hash}",`;
  const at = text.lastIndexOf(hashField);
  let body = text.slice(0, at) + text.slice(at + hashField.length);
  if ('sig' in r) {
    const sigField = `,"sig":"${r.sig}"`;
    const s = body.lastIndexOf(sigField);
    body = body.slice(0, s) + body.slice(s + sigField.length);
  }
  return {
    line,
    seq: r.seq,
    prev: r.prev,
    stored: r.hash,
    computed: sha256Hex(body),
    site: r.site,
    ts: r.ts,
    ...('cp' in r ? { checkpoint: { ...r.cp, sig: r.sig } } : {}),
  };
}

async function certificateKey(pem: string): Promise<KeyObject> {
  try {
    return new X509Certificate(pem).publicKey;
  } catch (cause) {
    throw new AuditError('E_AUDIT_CERT', 'the certificate is not a PEM X.509 certificate', { cause });
  }
}

/**
 * Proves an audit log whole, or names where it is not: every line must be an intact audit line (its content
 * matches its hash), link to the line before it (`prev`), and continue its `seq`; checkpoints must be signed by
 * one key (the certificate's, when given); no events may follow the last checkpoint. Classifies damage as
 * `modified`, `deleted`, `reordered`, `inserted`, `bad_signature`, `unsigned_tail` or `truncated` (a last line
 * cut short). Reads the file in bounded chunks; keeps a few hashes per line in memory.
 *
 * @throws AuditError E_AUDIT_FILE when the file cannot be read, E_AUDIT_CERT for an unreadable certificate.
 * @example
 * ```ts
 * const r = await verifyAuditLog('audit/site-1.jsonl', { certificate: readFileSync('startup/client.crt', 'utf8') });
 * if (!r.ok) console.error(`line ${r.problems[0].line}: ${r.problems[0].kind}`);
 * ```
 */
export async function verifyAuditLog(path: string, options: VerifyAuditLogOptions = {}): Promise<AuditVerification> {
  const certKey = options.certificate === undefined ? undefined : await certificateKey(options.certificate);
  const certSpki = certKey?.export({ type: 'spki', format: 'der' }).toString('base64');
  const entries: Entry[] = [];
  const problems = new Map<number, AuditProblem>();
  const add = (line: number, kind: AuditProblemKind, detail: string) => {
    if (!problems.has(line)) problems.set(line, { line, kind, detail });
  };
  for await (const raw of readLines(path)) {
    if (!raw.complete) add(raw.line, 'truncated', 'the last line is cut short (no newline): a write torn by a crash, or a truncated file');
    entries.push(raw.text === undefined ? { line: raw.line, unreadable: raw.problem ?? 'unreadable' } : readEntry(raw.line, raw.text));
  }

  // Where each hash is defined, to tell a reordering from a deletion or an insertion.
  const owner = new Map<string, number>();
  entries.forEach((e, i) => {
    if (e.stored !== undefined && !owner.has(e.stored)) owner.set(e.stored, i);
  });

  let expSeq = 0;
  let expPrev: string | undefined = GENESIS;
  let site: string | undefined;
  let events = 0;
  let firstKey: string | undefined;
  let signer: AuditVerification['signer'] = null;
  let lastCheckpoint: { line: number; seq: number; ts: string; final: boolean; valid: boolean; index: number } | undefined;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.unreadable !== undefined || e.seq === undefined || e.prev === undefined || e.stored === undefined) {
      if (!problems.has(e.line)) add(e.line, 'modified', `the line is ${e.unreadable ?? 'unreadable'}`);
      expSeq++;
      expPrev = undefined;
      continue;
    }
    if (e.checkpoint === undefined) events++;
    site ??= e.site;
    if (e.computed !== e.stored) {
      add(e.line, 'modified', 'its content does not match its hash');
      expSeq++;
      expPrev = e.stored;
      continue;
    }
    if (e.site !== site) add(e.line, 'modified', `it names site ${JSON.stringify(e.site)}, not the log's ${JSON.stringify(site)}`);
    const before = entries[i - 1];
    const linked = expPrev === undefined || e.prev === expPrev || (before?.computed !== undefined && e.prev === before.computed);
    if (!linked || e.seq !== expSeq) {
      const o = e.prev === GENESIS ? -1 : owner.get(e.prev);
      const oSeq = o === undefined || o < 0 ? -1 : entries[o]!.seq;
      if (o !== undefined && o > i) add(e.line, 'reordered', `it follows line ${o + 1}, which comes after it`);
      else if (o !== undefined && o < i - 1 && e.seq === (oSeq ?? -1) + 1) {
        const n = i - 1 - o;
        add(o + 2, 'inserted', `${n === 1 ? 'this line is' : `these ${n} lines are`} not part of the chain: line ${e.line} follows line ${o + 1}`);
      } else if (e.seq < expSeq) add(e.line, 'reordered', `seq ${e.seq} comes after seq ${expSeq - 1}`);
      else if (o === undefined && e.seq > expSeq) {
        const n = e.seq - expSeq;
        add(e.line, 'deleted', `${n} line${n === 1 ? '' : 's'} missing before this line (seq ${expSeq}${n === 1 ? '' : `..${e.seq - 1}`})`);
      } else if (o === undefined && e.seq === expSeq && before !== undefined) add(before.line, 'modified', `this line was replaced: line ${e.line} follows a different line`);
      else add(e.line, 'modified', 'it does not follow the line before it');
    }
    expSeq = e.seq + 1;
    expPrev = e.stored;

    if (e.checkpoint !== undefined) {
      const cp = e.checkpoint;
      const key = publicKeyFromSpki(cp.key);
      let valid = false;
      if (key === undefined) add(e.line, 'bad_signature', 'the checkpoint\'s key cannot be read');
      else if (certSpki !== undefined && cp.key !== certSpki) add(e.line, 'bad_signature', 'the checkpoint is signed by a key other than the certificate\'s');
      else if (certSpki === undefined && firstKey !== undefined && cp.key !== firstKey) add(e.line, 'bad_signature', 'the checkpoint is signed by a different key than the log\'s earlier checkpoints');
      else if (!verifyCheckpoint(cp.alg, key, e.stored, cp.sig)) add(e.line, 'bad_signature', 'the checkpoint signature does not verify');
      else {
        valid = true;
        firstKey ??= cp.key;
        signer ??= { alg: cp.alg, fingerprint: fingerprint(key), trusted: certSpki !== undefined };
      }
      lastCheckpoint = { line: e.line, seq: e.seq, ts: e.ts!, final: cp.final, valid, index: i };
    }
  }
  const tailStart = lastCheckpoint === undefined ? 0 : lastCheckpoint.index + 1;
  const tail = entries.slice(tailStart);
  // Damage inside the tail is reported as such (a damaged final checkpoint would otherwise show up first as an
  // unsigned tail); an intact tail is itself the finding.
  if (tail.length > 0 && !tail.some((e) => problems.has(e.line))) {
    add(
      tail[0]!.line,
      'unsigned_tail',
      lastCheckpoint === undefined
        ? `no signed checkpoint: ${tail.length} line${tail.length === 1 ? '' : 's'} unsealed (a log still open, a crash, or a truncation)`
        : `${tail.length} line${tail.length === 1 ? '' : 's'} after the last checkpoint (line ${lastCheckpoint.line}): still open, a crash, or a truncation`,
    );
  }
  const anchorSummary = options.anchors === undefined ? undefined : checkAnchors(options.anchors, entries, site, certSpki ?? firstKey, add);
  const sorted = [...problems.values()].sort((a, b) => a.line - b.line);
  return {
    ok: sorted.length === 0,
    events,
    lines: entries.length,
    site,
    lastCheckpoint: lastCheckpoint === undefined ? null : { line: lastCheckpoint.line, seq: lastCheckpoint.seq, ts: lastCheckpoint.ts, final: lastCheckpoint.final, valid: lastCheckpoint.valid },
    closed: lastCheckpoint !== undefined && lastCheckpoint.final && lastCheckpoint.valid && tail.length === 0,
    signer,
    problems: sorted,
    ...(anchorSummary === undefined ? {} : { anchors: anchorSummary }),
  };
}

/** Compares the log with its peers' anchors; adds `rolled_back` and `forked` problems. */
function checkAnchors(
  given: readonly unknown[],
  entries: readonly Entry[],
  site: string | undefined,
  logKey: string | undefined,
  add: (line: number, kind: AuditProblemKind, detail: string) => void,
): NonNullable<AuditVerification['anchors']> {
  const mine: AuditAnchor[] = [];
  let otherSites = 0;
  let invalid = 0;
  for (const value of given) {
    let a: AuditAnchor;
    try {
      a = verifyAnchor(value);
    } catch {
      invalid++;
      continue;
    }
    if (site === undefined || a.site !== site) otherSites++;
    else mine.push(a);
  }
  const bySeq = new Map<number, Entry>();
  for (const e of entries) if (e.seq !== undefined && !bySeq.has(e.seq)) bySeq.set(e.seq, e);
  const last = entries.at(-1);
  let matched = 0;
  let latest: AuditAnchor | undefined;
  let beyond: AuditAnchor | undefined;
  for (const a of mine) {
    if (latest === undefined || a.seq > latest.seq) latest = a;
    if (logKey !== undefined && a.cp.key !== logKey) {
      add(1, 'forked', `a peer recorded a checkpoint of this log (seq ${a.seq}, ${a.ts}) signed by another key than this log's checkpoints: the log was rewritten`);
      continue;
    }
    const e = bySeq.get(a.seq);
    if (e === undefined) {
      if (beyond === undefined || a.seq > beyond.seq) beyond = a;
    } else if (e.stored !== a.hash) {
      add(e.line, 'forked', `a peer recorded another checkpoint at seq ${a.seq} (${a.ts}): the log was rolled back and written again from here`);
    } else matched++;
  }
  if (beyond !== undefined) {
    const lastSeq = [...bySeq.keys()].reduce((m, k) => Math.max(m, k), -1);
    add(last?.line ?? 1, 'rolled_back', `the log ends at seq ${lastSeq} but a peer recorded its checkpoint at seq ${beyond.seq} (${beyond.ts}): an older copy of the log, or cut after a valid checkpoint`);
  }
  return { checked: mine.length, matched, latest: latest === undefined ? null : { seq: latest.seq, ts: latest.ts }, otherSites, invalid };
}
