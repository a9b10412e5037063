// @flare/audit: append-only, hash-chained, signed audit log with cross-site tracing and verification.
// Flat named exports only (house style).
export { AuditLog } from './audit-log.js';
export type { AuditLogOptions, RecordAnchorOptions } from './audit-log.js';
export { compareAnchors, readAnchors, verifyAnchor } from './anchor.js';
export type { AnchorOrder, AnchorRecords, AuditAnchor, VerifyAnchorOptions } from './anchor.js';
export { ANCHOR_ACTION, ANCHOR_ROLLBACK_ACTION, AUDIT_FORMAT_VERSION, CHECKPOINT_ACTION, GENESIS, MAX_LINE_BYTES, OPEN_ACTION } from './record.js';
export type { AuditRecord, CheckpointRecord, SignatureAlg } from './record.js';
export { verifyAuditLog } from './verify.js';
export type { AuditProblem, AuditProblemKind, AuditVerification, VerifyAuditLogOptions } from './verify.js';
export { readEvents } from './read-events.js';
export type { LocatedEvent } from './read-events.js';
export { formatTrace, traceAuditEvent } from './trace.js';
export type { AuditTrace, TraceEvent, TraceNode } from './trace.js';
export { exportFlareFormat, toFlareLine } from './flare-format.js';
export { AuditTransport } from './winston-transport.js';
export type { AuditTransportOptions } from './winston-transport.js';
