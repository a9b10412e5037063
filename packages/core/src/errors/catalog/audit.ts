import type { Catalog } from '../info.js';

/** Error codes of the tamper-evident audit log (@flare/audit). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const AUDIT_CODES = {
  E_AUDIT_FILE: {
    meaning: 'An audit log or certificate file could not be read.',
    action: 'Check the path and permissions of the file the message names.',
  },
  E_AUDIT_LOCKED: {
    meaning: 'Another live process is writing this audit log.',
    action: 'Use one log file per process (one per site and per job); if that process is gone, remove the stale .lock file beside the log.',
  },
  E_AUDIT_CORRUPT: {
    meaning: 'The existing audit log ends in a line that cannot be read, so the hash chain cannot be continued.',
    action: 'Run `flare audit verify` on the file, keep it as evidence, and start a new log file.',
  },
  E_AUDIT_SITE_MISMATCH: {
    meaning: 'The existing audit log belongs to another site than the one opening it.',
    action: 'Open the log of this site, or a new file.',
  },
  E_AUDIT_SIGNER: {
    meaning: 'The audit signer is not a usable private key (ECDSA P-256, RSA of at least 2048 bits, or Ed25519).',
    action: 'Pass the site\'s startup-kit private key (PEM text or a node KeyObject).',
  },
  E_AUDIT_EVENT: {
    meaning: 'The audit event is invalid: empty or malformed action, reserved action name, or larger than the line limit.',
    action: 'Use a short snake_case action, keep messages and data small, and never log model data.',
  },
  E_AUDIT_CLOSED: {
    meaning: 'An event was appended after the audit log was closed.',
    action: 'Open the log again (the chain continues) before appending; close it only at shutdown.',
  },
  E_AUDIT_WRITE: {
    meaning: 'Writing or syncing the audit log to disk failed.',
    action: 'Check free disk space and permissions; the process must stop acting while it cannot audit.',
  },
  E_AUDIT_CERT: {
    meaning: 'The certificate given for verification could not be read as an X.509 PEM certificate.',
    action: 'Pass the site\'s certificate from its startup kit (startup/server.crt or startup/client.crt).',
  },
  E_AUDIT_TAMPERED: {
    meaning: 'The audit log is not whole: a line was modified, deleted, reordered or inserted, a checkpoint signature is bad, or events follow the last signed checkpoint.',
    action: 'Treat the log as evidence of tampering or of a crash; compare with a backup and with peers\' logs (`flare audit trace`).',
  },
  E_AUDIT_ANCHOR: {
    meaning: 'An audit anchor (a participant\'s signed checkpoint, sent to its peers) is malformed, does not match its hash, or is not signed by the participant\'s key.',
    action: 'Treat the sender as broken or hostile: anchors are produced by AuditLog.anchor() and sent as they are; check that the peer\'s certificate is the one its log is signed with.',
  },
  E_AUDIT_ROLLBACK: {
    meaning: 'A participant\'s audit log was rolled back: its new anchor is older than one its peers recorded, or another checkpoint stands where a recorded one stood.',
    action: 'Investigate the participant named in the message: its log was restored from an older copy or rewritten. Keep its anchors and the audit_anchor_rollback event; verify its log with `flare audit verify FILE --anchors PEER_LOG`.',
  },
  E_AUDIT_TRACE: {
    meaning: 'The event to trace was not found in the given audit logs.',
    action: 'Check the event id and pass every site\'s log that may hold it.',
  },
} as const satisfies Catalog;
