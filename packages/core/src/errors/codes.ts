import { AGGREGATOR_CODES } from './catalog/aggregator.js';
import { ATTEST_CODES } from './catalog/attest.js';
import { AUDIT_CODES } from './catalog/audit.js';
import { AUTH_CODES } from './catalog/auth.js';
import { CLI_CODES } from './catalog/cli.js';
import { CODEC_CODES } from './catalog/codec.js';
import { DP_CODES } from './catalog/dp.js';
import { FILE_CODES } from './catalog/file.js';
import { HE_CODES } from './catalog/he.js';
import { LEARNER_CODES } from './catalog/learner.js';
import { ML_CODES } from './catalog/ml.js';
import { MODEL_CODES } from './catalog/model.js';
import { PKI_CODES } from './catalog/pki.js';
import { POLICY_CODES } from './catalog/policy.js';
import { RUNTIME_CODES } from './catalog/runtime.js';
import { SECAGG_CODES } from './catalog/secagg.js';
import { TRANSPORT_CODES } from './catalog/transport.js';
import type { ErrorInfo } from './info.js';

/** Every error area, in the order docs/errors.md lists them: [area title, its catalog]. */
export const ERROR_AREAS = [
  ['Codec (@flare/core)', CODEC_CODES],
  ['Models and tensors (@flare/core)', MODEL_CODES],
  ['Files (@flare/core)', FILE_CODES],
  ['Provisioning and kits (@flare/pki)', PKI_CODES],
  ['Authentication (@flare/auth)', AUTH_CODES],
  ['Transport (@flare/transport)', TRANSPORT_CODES],
  ['Site policy (@flare/policy)', POLICY_CODES],
  ['Audit (@flare/audit)', AUDIT_CODES],
  ['Differential privacy (@flare/filters-dp)', DP_CODES],
  ['Homomorphic encryption (@flare/filters-he)', HE_CODES],
  ['Aggregation (@flare/aggregator)', AGGREGATOR_CODES],
  ['Secure aggregation (@flare/secagg)', SECAGG_CODES],
  ['Attestation (@flare/cc-attest)', ATTEST_CODES],
  ['Runtime (@flare/runtime)', RUNTIME_CODES],
  ['Machine learning (@flare/tfjs)', ML_CODES],
  ['Learners (@flare/runtime learners)', LEARNER_CODES],
  ['Command line (@flare/cli)', CLI_CODES],
] as const;

export type CodecErrorCode = keyof typeof CODEC_CODES;
export type ModelErrorCode = keyof typeof MODEL_CODES;
export type FileErrorCode = keyof typeof FILE_CODES;
export type PkiErrorCode = keyof typeof PKI_CODES;
export type AuthErrorCode = keyof typeof AUTH_CODES;
export type TransportErrorCode = keyof typeof TRANSPORT_CODES;
export type PolicyErrorCode = keyof typeof POLICY_CODES;
export type AuditErrorCode = keyof typeof AUDIT_CODES;
export type DpErrorCode = keyof typeof DP_CODES;
export type HeErrorCode = keyof typeof HE_CODES;
export type AggregatorErrorCode = keyof typeof AGGREGATOR_CODES;
export type SecAggErrorCode = keyof typeof SECAGG_CODES;
export type AttestErrorCode = keyof typeof ATTEST_CODES;
export type RuntimeErrorCode = keyof typeof RUNTIME_CODES;
export type MlErrorCode = keyof typeof ML_CODES;
export type LearnerErrorCode = keyof typeof LEARNER_CODES;
export type CliErrorCode = keyof typeof CLI_CODES;

/** Every stable error code FLARE-TS can throw. */
export type FlareErrorCode =
  | CodecErrorCode
  | ModelErrorCode
  | FileErrorCode
  | PkiErrorCode
  | AuthErrorCode
  | TransportErrorCode
  | PolicyErrorCode
  | AuditErrorCode
  | DpErrorCode
  | HeErrorCode
  | AggregatorErrorCode
  | SecAggErrorCode
  | AttestErrorCode
  | RuntimeErrorCode
  | MlErrorCode
  | LearnerErrorCode
  | CliErrorCode;

const index = new Map<string, ErrorInfo>();
for (const [, catalog] of ERROR_AREAS) {
  for (const [code, info] of Object.entries(catalog) as Array<[string, ErrorInfo]>) index.set(code, info);
}

/** The meaning and the action for `code`, as listed in docs/errors.md. */
export function errorInfo(code: FlareErrorCode): ErrorInfo {
  const info = index.get(code);
  if (info === undefined) throw new RangeError(`unknown FLARE-TS error code ${JSON.stringify(code)}`);
  return info;
}

/** True when `value` is a code some catalog defines (for codes read back from logs or the wire). */
export function isFlareErrorCode(value: unknown): value is FlareErrorCode {
  return typeof value === 'string' && index.has(value);
}
