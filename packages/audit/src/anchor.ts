import { X509Certificate, type KeyObject } from 'node:crypto';
import { AuditError, parseStrictJson, type JsonValue } from '@flare/core';
import { readLines } from './read-lines.js';
import { ANCHOR_ACTION, CHECKPOINT_ACTION, checkpointSchema, eventSchema, recordHash, type CheckpointRecord } from './record.js';
import { publicKeyFromSpki, verifyCheckpoint } from './signer.js';

// A log's own checkpoints prove it whole up to where it ends, not that it ends where it should: an older copy
// of a log, or a log rolled back and then continued by its writer, verifies on its own. An anchor is a
// participant's latest signed checkpoint, recorded by its peers (the server records each site's, each site
// the server's) in their own logs. A verifier given those records finds, for every anchor, the same checkpoint
// at the same seq in the log, or knows the log was rolled back (it ends before the anchor) or forked (another
// line stands at the anchor's seq).

/** A participant's signed checkpoint, as its peers record it: the checkpoint line itself (self-verifying). */
export type AuditAnchor = CheckpointRecord;

/** How one anchor relates to another of the same log (see {@link compareAnchors}). */
export type AnchorOrder = 'same' | 'advanced' | 'rolled_back' | 'forked';

/** Options of {@link verifyAnchor}. */
export interface VerifyAnchorOptions {
  /** The participant's certificate (PEM) or public key: the anchor must be signed by its key. */
  readonly certificate?: string | KeyObject;
  /** The participant the anchor must belong to (its log's site name). */
  readonly site?: string;
}

const keyOf = (certificate: string | KeyObject): KeyObject => {
  if (typeof certificate !== 'string') return certificate;
  try {
    return new X509Certificate(certificate).publicKey;
  } catch (cause) {
    throw new AuditError('E_AUDIT_CERT', 'the certificate is not a PEM X.509 certificate', { cause });
  }
};

/**
 * Checks an anchor received from a peer (or read from a file): a well-formed checkpoint line whose hash matches
 * its content and whose signature verifies with the key it carries, and, when given, with the participant's
 * certificate key and site name.
 *
 * @throws AuditError E_AUDIT_ANCHOR saying what is wrong; E_AUDIT_CERT for an unreadable certificate.
 */
export function verifyAnchor(value: unknown, options: VerifyAnchorOptions = {}): AuditAnchor {
  const bad = (why: string): never => {
    throw new AuditError('E_AUDIT_ANCHOR', `audit anchor refused: ${why}`);
  };
  const parsed = checkpointSchema.safeParse(value);
  if (!parsed.success) return bad(`not a checkpoint line (${parsed.error.issues.map((i) => i.path.join('.') || '(top)').join(', ')})`);
  const a = parsed.data as AuditAnchor;
  if (recordHash(value as Record<string, JsonValue>) !== a.hash) bad(`its content does not match its hash (site ${JSON.stringify(a.site)}, seq ${a.seq})`);
  const key = publicKeyFromSpki(a.cp.key);
  if (key === undefined) return bad('its key cannot be read');
  if (options.site !== undefined && a.site !== options.site) bad(`it belongs to ${JSON.stringify(a.site)}, not ${JSON.stringify(options.site)}`);
  if (options.certificate !== undefined) {
    const expected = keyOf(options.certificate).export({ type: 'spki', format: 'der' }).toString('base64');
    if (expected !== a.cp.key) bad(`it is signed by a key other than ${JSON.stringify(a.site)}'s certificate`);
  }
  if (!verifyCheckpoint(a.cp.alg, key, a.hash, a.sig)) bad(`its signature does not verify (site ${JSON.stringify(a.site)}, seq ${a.seq})`);
  return Object.freeze(a);
}

/**
 * How `next` relates to `previous`, two verified anchors of the same log: the same checkpoint, a later one, an
 * earlier one (`rolled_back`: the log now ends before a checkpoint it had already shown), or another checkpoint
 * at the same seq (`forked`: rolled back, then written again).
 */
export function compareAnchors(previous: AuditAnchor, next: AuditAnchor): AnchorOrder {
  if (next.seq === previous.seq) return next.hash === previous.hash ? 'same' : 'forked';
  return next.seq > previous.seq ? 'advanced' : 'rolled_back';
}

/** What {@link readAnchors} found. */
export interface AnchorRecords {
  /** Every anchor that verified, in file order. */
  readonly anchors: readonly AuditAnchor[];
  /** Anchor-looking entries that did not verify (forged, damaged): reported, never used. */
  readonly invalid: readonly { readonly file: string; readonly line: number; readonly reason: string }[];
}

/**
 * Reads anchors from files: each line a checkpoint line (an exported anchor, e.g. `flare audit anchor LOG >
 * FILE`, or a log's own checkpoints) or an `audit_anchor` event of a peer's audit log (an anchor that peer
 * recorded; the event's hash must match). Other lines are skipped. Each anchor is verified on its own; which
 * log it belongs to is decided where it is used.
 *
 * @throws AuditError E_AUDIT_FILE when a file cannot be read.
 */
export async function readAnchors(paths: readonly string[]): Promise<AnchorRecords> {
  const anchors: AuditAnchor[] = [];
  const invalid: { file: string; line: number; reason: string }[] = [];
  for (const file of paths) {
    for await (const raw of readLines(file)) {
      if (raw.text === undefined || !raw.complete) continue;
      let value: JsonValue;
      try {
        value = parseStrictJson(raw.text);
      } catch {
        continue;
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) continue;
      let candidate: unknown;
      if (value['action'] === CHECKPOINT_ACTION) candidate = value;
      else if (value['action'] === ANCHOR_ACTION) {
        const event = eventSchema.safeParse(value);
        if (!event.success || recordHash(value) !== event.data.hash) {
          invalid.push({ file, line: raw.line, reason: 'an audit_anchor event whose content does not match its hash' });
          continue;
        }
        candidate = event.data.data?.['anchor'];
      } else continue;
      try {
        anchors.push(verifyAnchor(candidate));
      } catch (e) {
        invalid.push({ file, line: raw.line, reason: e instanceof AuditError ? e.message : 'unreadable' });
      }
    }
  }
  return { anchors, invalid };
}
