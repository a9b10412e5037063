import {
  AggregatorError,
  AttestError,
  AuditError,
  AuthError,
  CliError,
  CodecError,
  DpError,
  FileError,
  FlareRuntimeError,
  HeError,
  LearnerError,
  MlError,
  ModelError,
  PkiError,
  PolicyError,
  SecAggError,
  TransportError,
} from './areas.js';
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
import { isFlareErrorCode, type FlareErrorCode } from './codes.js';
import { FlareError, type FlareErrorOptions } from './flare-error.js';
import type { Catalog } from './info.js';

type AreaClass = new (code: never, message: string, options?: FlareErrorOptions) => FlareError;

// Each catalog with the class its codes are thrown as. Codes are looked up by catalog membership, never by
// prefix: pki owns E_CERT_*, E_KIT_*, E_CRL_* and more, and a prefix table drifts as soon as a code is added.
const CLASS_OF_CATALOG: ReadonlyArray<readonly [Catalog, AreaClass]> = [
  [CODEC_CODES, CodecError],
  [MODEL_CODES, ModelError],
  [FILE_CODES, FileError],
  [PKI_CODES, PkiError],
  [AUTH_CODES, AuthError],
  [TRANSPORT_CODES, TransportError],
  [POLICY_CODES, PolicyError],
  [AUDIT_CODES, AuditError],
  [DP_CODES, DpError],
  [HE_CODES, HeError],
  [AGGREGATOR_CODES, AggregatorError],
  [SECAGG_CODES, SecAggError],
  [ATTEST_CODES, AttestError],
  [RUNTIME_CODES, FlareRuntimeError],
  [ML_CODES, MlError],
  [LEARNER_CODES, LearnerError],
  [CLI_CODES, CliError],
];

const classOf = new Map<string, AreaClass>();
for (const [catalog, Area] of CLASS_OF_CATALOG) for (const code of Object.keys(catalog)) classOf.set(code, Area);

/**
 * Makes the error a code is thrown as: the area subclass of the catalog that defines `code` (`E_KIT_TAMPERED`
 * gives a `PkiError`), so `instanceof PkiError` holds for a refusal read back from a peer, a log or a child
 * process just as for one thrown here.
 *
 * @throws RangeError when `code` is not in any catalog (check codes from the wire with `isFlareErrorCode`, or
 *   use {@link toFlareError} with a fallback).
 * @example
 * ```ts
 * if (isFlareErrorCode(reason)) throw flareErrorFromCode(reason, `the peer refused the connection (${reason})`);
 * ```
 */
export function flareErrorFromCode(code: FlareErrorCode, message: string, options?: FlareErrorOptions): FlareError {
  const Area = classOf.get(code);
  if (Area === undefined) throw new RangeError(`unknown FLARE-TS error code ${JSON.stringify(String(code).slice(0, 64))}`);
  return new (Area as new (code: FlareErrorCode, message: string, options?: FlareErrorOptions) => FlareError)(code, message, options);
}

/** The longest message {@link toFlareError} copies from a foreign error (wire and child-process text is unbounded). */
const MAX_MESSAGE = 1000;

/**
 * Turns anything caught into a {@link FlareError}:
 * - a FlareError is returned as it is;
 * - an error-like object whose `code` is a catalog code (a refusal parsed from the wire, or thrown by a second
 *   copy of @flare/core) becomes that code's area error, with its `message` and itself as `cause`;
 * - anything else (a TypeError, a Node system error such as ENOENT, a string) becomes `fallback`, with the
 *   value's message and the value as `cause`, so the original (and its own `code`) is kept for diagnosis.
 *
 * `message`, when given, replaces the message in the last two cases. Copied messages are cut to 1,000
 * characters.
 *
 * @example
 * ```ts
 * try { await step() } catch (e) { throw toFlareError(e, 'E_RUNTIME_TASK_FAILED') }
 * ```
 */
export function toFlareError(value: unknown, fallback: FlareErrorCode, message?: string): FlareError {
  if (value instanceof FlareError) return value;
  const code = typeof value === 'object' && value !== null ? (value as { code?: unknown }).code : undefined;
  const text = message ?? bounded(messageOf(value));
  if (isFlareErrorCode(code)) return flareErrorFromCode(code, text, { cause: value });
  return flareErrorFromCode(fallback, text, { cause: value });
}

function messageOf(value: unknown): string {
  if (value instanceof Error) return value.message;
  if (typeof value === 'object' && value !== null) {
    const m = (value as { message?: unknown }).message;
    if (typeof m === 'string') return m;
    return 'an error without a message';
  }
  return String(value);
}

function bounded(text: string): string {
  return text.length <= MAX_MESSAGE ? text : `${text.slice(0, MAX_MESSAGE)}…`;
}

/** For a test that every catalog has a class: the class `code` maps to, if any (internal). */
export function areaClassOf(code: string): AreaClass | undefined {
  return classOf.get(code);
}
