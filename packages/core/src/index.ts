// @flare/core: the contracts every FLARE-TS package and integrator relies on.

export { FlareError, isFlareError } from './errors/flare-error.js';
export type { FlareErrorOptions } from './errors/flare-error.js';
export {
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
} from './errors/areas.js';
export { ERROR_AREAS, errorInfo, isFlareErrorCode } from './errors/codes.js';
export type {
  AggregatorErrorCode,
  AttestErrorCode,
  AuditErrorCode,
  AuthErrorCode,
  CliErrorCode,
  CodecErrorCode,
  DpErrorCode,
  FileErrorCode,
  FlareErrorCode,
  HeErrorCode,
  LearnerErrorCode,
  MlErrorCode,
  ModelErrorCode,
  PkiErrorCode,
  PolicyErrorCode,
  RuntimeErrorCode,
  SecAggErrorCode,
  TransportErrorCode,
} from './errors/codes.js';
export type { Catalog, ErrorInfo } from './errors/info.js';
export { flareErrorFromCode, toFlareError } from './errors/from-code.js';

export { IdentitySchema, PARTICIPANT_TYPES, identityText, sameIdentity } from './identity.js';
export type { Identity, ParticipantType } from './identity.js';

export { readFileIfExists, writeFileAtomic } from './fs/atomic-file.js';
export type { ReadFileIfExistsOptions, WriteFileAtomicOptions } from './fs/atomic-file.js';

export { DTYPES, WIRE_BYTES, arrayTypeOf, elementCount, floatData, isFloatDType, tensor } from './tensor.js';
export type { DType, FloatArray, Tensor, TypedArray } from './tensor.js';
export { META, cloneModel, model, parameterCount } from './model.js';
export type { FLModel } from './model.js';
export type { JsonValue } from './json.js';
export { add, allClose, axpy, l2norm, scale, sub } from './algebra.js';
export type { CloseOptions } from './algebra.js';
export { checkUpdateAgainst, manifestOf } from './manifest.js';
export type { ManifestCheckOptions, ManifestEntry, ModelManifest } from './manifest.js';
export { flatten, unflatten } from './flatten.js';
export type { FlatEntry, FlatIndex, FlattenOptions } from './flatten.js';
export { canonicalJson } from './canonical-json.js';
export { compileNamePattern, NAME_PATTERN_LIMITS, toNamePattern } from './name-pattern.js';
export type { NamePattern } from './name-pattern.js';
export {
  DER_TAG,
  derBitString,
  derBoolean,
  derBooleanEncode,
  derChildren,
  derContent,
  derContext,
  derEncode,
  derExpect,
  derIa5String,
  derInteger,
  derNull,
  derOctetString,
  derOid,
  derOidEncode,
  derRaw,
  derRead,
  derReadAll,
  derSafeInteger,
  derSequence,
  derSet,
  derTime,
  derTimeEncode,
  derUnsigned,
  derUtf8String,
} from './der.js';
export type { DerNode } from './der.js';

export { decodeModel, encodedByteLength, encodeModel, encodeModelInto, encodeModelParts } from './codec/safetensors.js';
export type { DecodeOptions, EncodedParts } from './codec/safetensors.js';
export { BufferArena } from './buffer-arena.js';
export type { BufferArenaOptions } from './buffer-arena.js';
export { FRAME_MAGIC, FRAME_PREFIX_BYTES, FRAME_VERSION, decodeFrame, encodeFrame } from './codec/frame.js';
export type { Frame } from './codec/frame.js';
export { FRAME_LIMITS, MODEL_LIMITS } from './codec/limits.js';
export type { DecodeLimits } from './codec/limits.js';
export { parseStrictJson } from './codec/strict-json.js';
export type { StrictJsonOptions } from './codec/strict-json.js';
export { bfloatToFloat, floatToBfloat, floatToHalf, halfToFloat } from './codec/half.js';

export { silentLogger } from './contracts.js';
export type {
  AcceptContext,
  AggregationScheme,
  Aggregator,
  AuditEventInput,
  AuditHook,
  Filter,
  FilterContext,
  FilterEnv,
  FilterFactory,
  KitBuildContext,
  KitBuilder,
  KitLocalOverride,
  KitParticipant,
  Learner,
  LearnerContext,
  Logger,
} from './contracts.js';
