import { parseStrictJson } from '@flare/core';

// Anchors (issue #14.13): a participant's latest signed audit checkpoint, recorded by its peers in their own logs,
// so a log rolled back or cut after the fact is caught by `flare audit verify --anchors`. Sites send theirs to
// the server at login and periodically; the server answers each with its own.

/**
 * A participant's audit log, as the anchor exchange needs it: @flare/audit's `AuditLog` fits as it is.
 */
export interface AnchorLog {
  /** Seals the events so far with a signed checkpoint (synced to disk) and returns it: this log's anchor. */
  anchor(): unknown;
  /**
   * Records a peer's anchor after checking it; throws E_AUDIT_ANCHOR (it does not verify) or E_AUDIT_ROLLBACK
   * (the peer's log went back on an anchor recorded before; the log records that too).
   */
  recordAnchor(value: unknown, options: { readonly site?: string }): string;
}

/** An anchor as it travels: the checkpoint line's JSON, as the payload of an `anchor` message. */
export function encodeAnchor(log: AnchorLog): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(log.anchor()));
}

/** An anchor as it arrived (untrusted JSON bytes), for `recordAnchor` to judge: `null` when it is not JSON. */
export function decodeAnchor(payload: Uint8Array): unknown {
  try {
    return parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(payload), { maxDepth: 4 });
  } catch {
    return null;
  }
}
