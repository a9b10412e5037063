import type {
  AggregatorErrorCode,
  AttestErrorCode,
  AuditErrorCode,
  AuthErrorCode,
  CliErrorCode,
  CodecErrorCode,
  DpErrorCode,
  FileErrorCode,
  HeErrorCode,
  LearnerErrorCode,
  MlErrorCode,
  ModelErrorCode,
  PkiErrorCode,
  PolicyErrorCode,
  RuntimeErrorCode,
  SecAggErrorCode,
  TransportErrorCode,
} from './codes.js';
import { FlareError } from './flare-error.js';

// One subclass per area (jose's errors are the model): `instanceof PkiError` selects a family, `code` the case.

/** A malformed model or frame (E_CODEC_*). */
export class CodecError extends FlareError<CodecErrorCode> {}
/** Models or tensors that do not fit an operation (E_MODEL_*). */
export class ModelError extends FlareError<ModelErrorCode> {}
/** Durable file reads and writes (E_FILE_*). */
export class FileError extends FlareError<FileErrorCode> {}
/** Provisioning, certificates, kits, revocation. */
export class PkiError extends FlareError<PkiErrorCode> {}
/** Login, sessions, message authentication. */
export class AuthError extends FlareError<AuthErrorCode> {}
/** Connections, frames on the wire, proxies. */
export class TransportError extends FlareError<TransportErrorCode> {}
/** Site policy refusals and policy files. */
export class PolicyError extends FlareError<PolicyErrorCode> {}
/** Audit log writing and verification. */
export class AuditError extends FlareError<AuditErrorCode> {}
/** Differential privacy filters, accounting, budgets. */
export class DpError extends FlareError<DpErrorCode> {}
/** Homomorphic encryption. */
export class HeError extends FlareError<HeErrorCode> {}
/** Aggregation. */
export class AggregatorError extends FlareError<AggregatorErrorCode> {}
/** Masking secure aggregation and distributed differential privacy. */
export class SecAggError extends FlareError<SecAggErrorCode> {}
/** Attestation evidence and policy. */
export class AttestError extends FlareError<AttestErrorCode> {}
/** Server, client and admin engines, jobs and workflows. */
export class FlareRuntimeError extends FlareError<RuntimeErrorCode> {}
/** Machine-learning backends and learners. */
export class MlError extends FlareError<MlErrorCode> {}
/** Site learners: external programs and in-process plugins (E_LEARNER_*). */
export class LearnerError extends FlareError<LearnerErrorCode> {}
/** The flare command line. */
export class CliError extends FlareError<CliErrorCode> {}
