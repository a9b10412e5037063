import { CodecError } from '../errors/areas.js';
import type { JsonValue } from '../json.js';
import type { FLModel } from '../model.js';
import { WIRE_BYTES, type DType, type Tensor } from '../tensor.js';
import { bfloatToFloat, floatToBfloat, floatToHalf, halfToFloat } from './half.js';
import type { BufferArena } from '../buffer-arena.js';
import { MODEL_LIMITS, type DecodeLimits } from './limits.js';
import { parseStrictJson } from './strict-json.js';

// The safetensors layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian
// header length N, N bytes of UTF-8 JSON mapping tensor names to {dtype, shape, data_offsets} plus an
// optional "__metadata__" string map, then the data section, which the tensors' byte ranges tile exactly.

const WIRE_DTYPE: Readonly<Record<DType, string>> = {
  float32: 'F32',
  float64: 'F64',
  int32: 'I32',
  int64: 'I64',
  uint8: 'U8',
  bool: 'BOOL',
  float16: 'F16',
  bfloat16: 'BF16',
};
const FROM_WIRE = new Map<string, DType>(Object.entries(WIRE_DTYPE).map(([k, v]) => [v, k as DType]));
const METADATA = '__metadata__';
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const FORBIDDEN_NAMES = new Set([METADATA, '__proto__', 'constructor', 'prototype']);

/** A model encoded as a list of byte ranges: the header, then each tensor's data (zero-copy views where possible). */
export interface EncodedParts {
  readonly byteLength: number;
  readonly parts: readonly Uint8Array[];
}

function wireBytes(t: Tensor): Uint8Array {
  const d = t.data;
  if (t.dtype === 'float16' || t.dtype === 'bfloat16') {
    const half = (t.dtype === 'float16' ? floatToHalf : floatToBfloat)(d as Float32Array);
    return toLittleEndian(new Uint8Array(half.buffer), 2);
  }
  const view = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  return LITTLE_ENDIAN ? view : toLittleEndian(view.slice(), d.BYTES_PER_ELEMENT);
}

function toLittleEndian(bytes: Uint8Array, width: number): Uint8Array {
  if (LITTLE_ENDIAN || width === 1) return bytes;
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
  return bytes;
}

function metadataOf(m: FLModel): Record<string, string> {
  const meta: Record<string, string> = { format: 'flare-ts', 'flare.kind': m.kind };
  if (Object.keys(m.meta).length > 0) meta['flare.meta'] = JSON.stringify(m.meta);
  if (m.metrics !== undefined) meta['flare.metrics'] = JSON.stringify(m.metrics);
  return meta;
}

/**
 * Encodes a model as safetensors without copying tensor data: the first part is the length-prefixed header,
 * the rest are views of the tensors' bytes (16-bit floats are converted). Send the parts in order, or write
 * them to a file: the concatenation is a valid `.safetensors` file.
 *
 * Tensors are laid out widest element first so that every tensor starts aligned to its element size (the
 * header is space-padded to a multiple of 8, as the reference writer does); decoding can then return views.
 */
export function encodeModelParts(m: FLModel): EncodedParts {
  const entries = [...m.params].map(([name, t], order) => ({ name, t, order }));
  for (const { name, t } of entries) {
    if (FORBIDDEN_NAMES.has(name)) throw new CodecError('E_CODEC_FORBIDDEN_KEY', `a tensor may not be named ${JSON.stringify(name)}`);
    if (t.data.length !== t.shape.reduce((a, b) => a * b, 1)) {
      throw new CodecError('E_CODEC_SHAPE', `tensor "${name}": shape [${t.shape.join(', ')}] does not match ${t.data.length} elements`);
    }
  }
  entries.sort((a, b) => WIRE_BYTES[b.t.dtype] - WIRE_BYTES[a.t.dtype] || a.order - b.order);

  const header: Record<string, unknown> = { [METADATA]: metadataOf(m) };
  const data: Uint8Array[] = [];
  let offset = 0;
  for (const { name, t } of entries) {
    const bytes = wireBytes(t);
    header[name] = { dtype: WIRE_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    data.push(bytes);
    offset += bytes.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return { byteLength: head.length + offset, parts: [head, ...data] };
}

/** Encodes a model as one safetensors byte array (one copy of the tensor data, into a new buffer). */
export function encodeModel(m: FLModel): Uint8Array {
  const encoded = encodeModelParts(m);
  const out = new Uint8Array(encoded.byteLength);
  writeParts(encoded, out, 0);
  return out;
}

/** The number of bytes {@link encodeModel} and {@link encodeModelInto} produce for `m`. */
export function encodedByteLength(m: FLModel): number {
  return encodeModelParts(m).byteLength;
}

/**
 * Encodes a model as safetensors into caller-provided memory (e.g. a {@link BufferArena}, or a buffer reused
 * round after round), at `offset`: the tensor data is copied once and nothing model-sized is allocated.
 * Returns the number of bytes written ({@link encodedByteLength}).
 *
 * @throws RangeError when `out` has fewer than `encodedByteLength(m)` bytes after `offset`; the
 *   CodecErrors of {@link encodeModelParts}.
 * @example
 * ```ts
 * const out = arena.alloc(encodedByteLength(m));
 * encodeModelInto(m, out);
 * ```
 */
export function encodeModelInto(m: FLModel, out: Uint8Array, offset = 0): number {
  const encoded = encodeModelParts(m);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + encoded.byteLength > out.length) {
    throw new RangeError(`encodeModelInto: the model needs ${encoded.byteLength} bytes at offset ${offset}; the buffer has ${out.length}`);
  }
  writeParts(encoded, out, offset);
  return encoded.byteLength;
}

function writeParts({ parts }: EncodedParts, out: Uint8Array, offset: number): void {
  let at = offset;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
}

function isRecord(v: JsonValue | undefined): v is Record<string, JsonValue> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isSafeNat = (v: JsonValue | undefined): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

interface Entry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: number[];
  readonly begin: number;
  readonly end: number;
}

function parseEntry(name: string, v: JsonValue, dataLength: number, maxDims: number): Entry {
  if (!isRecord(v)) throw new CodecError('E_CODEC_HEADER_JSON', `tensor "${name}": entry is not an object`);
  const keys = Object.keys(v);
  if (keys.length !== 3 || !('dtype' in v && 'shape' in v && 'data_offsets' in v)) {
    throw new CodecError('E_CODEC_HEADER_JSON', `tensor "${name}": entry must have exactly dtype, shape and data_offsets`);
  }
  const dtype = typeof v['dtype'] === 'string' ? FROM_WIRE.get(v['dtype']) : undefined;
  if (dtype === undefined) throw new CodecError('E_CODEC_DTYPE', `tensor "${name}": unsupported dtype ${JSON.stringify(v['dtype'])}`);
  const shape = v['shape'];
  if (!Array.isArray(shape) || shape.length > maxDims || !shape.every(isSafeNat)) {
    throw new CodecError('E_CODEC_SHAPE', `tensor "${name}": shape must be at most ${maxDims} non-negative integers`);
  }
  let count = 1;
  for (const d of shape) {
    count *= d;
    if (!Number.isSafeInteger(count)) throw new CodecError('E_CODEC_SHAPE', `tensor "${name}": element count overflows`);
  }
  const offsets = v['data_offsets'];
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isSafeNat(offsets[0]) || !isSafeNat(offsets[1])) {
    throw new CodecError('E_CODEC_BOUNDS', `tensor "${name}": data_offsets must be two non-negative integers`);
  }
  const [begin, end] = offsets;
  if (begin > end || end > dataLength) {
    throw new CodecError('E_CODEC_BOUNDS', `tensor "${name}": bytes [${begin}, ${end}) lie outside the ${dataLength}-byte data section`);
  }
  if (end - begin !== count * WIRE_BYTES[dtype]) {
    throw new CodecError(
      'E_CODEC_SIZE_MISMATCH',
      `tensor "${name}": ${end - begin} bytes for ${count} elements of ${WIRE_DTYPE[dtype]}`,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

function readTensor(bytes: Uint8Array, base: number, e: Entry, arena: BufferArena | undefined): Tensor {
  const at = bytes.byteOffset + base + e.begin;
  const n = (e.end - e.begin) / WIRE_BYTES[e.dtype];
  // A copy that is always a plain Uint8Array at an 8-byte-aligned offset: from the arena when there is one,
  // else new. (On a Node Buffer, which is what sockets hand over, .slice() is a view, not a copy, and a
  // misaligned tensor would then be read from the wrong bytes.)
  const copy = (): Uint8Array => {
    const source = bytes.subarray(base + e.begin, base + e.end);
    if (arena === undefined) return new Uint8Array(source);
    const out = arena.alloc(source.length);
    out.set(source);
    return out;
  };
  const shape = Object.freeze(e.shape);
  switch (e.dtype) {
    case 'uint8':
    case 'bool':
      // A plain Uint8Array view (not a Buffer subclass, whose .slice() would not copy).
      return { dtype: e.dtype, shape, data: new Uint8Array(bytes.buffer, bytes.byteOffset + base + e.begin, e.end - e.begin) };
    case 'float16':
    case 'bfloat16': {
      const raw = toLittleEndian(copy(), 2);
      const halves = new Uint16Array(raw.buffer, raw.byteOffset, n);
      const memory = arena?.alloc(4 * n);
      const dst = memory === undefined ? new Float32Array(n) : new Float32Array(memory.buffer, memory.byteOffset, n);
      return { dtype: e.dtype, shape, data: (e.dtype === 'float16' ? halfToFloat : bfloatToFloat)(halves, dst) };
    }
    default: {
      const Data = { float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array }[e.dtype];
      if (LITTLE_ENDIAN && at % Data.BYTES_PER_ELEMENT === 0) return { dtype: e.dtype, shape, data: new Data(bytes.buffer as ArrayBuffer, at, n) };
      const copied = toLittleEndian(copy(), Data.BYTES_PER_ELEMENT);
      return { dtype: e.dtype, shape, data: new Data(copied.buffer as ArrayBuffer, copied.byteOffset, n) };
    }
  }
}

function readMetadata(v: JsonValue | undefined, maxEntries: number): Pick<FLModel, 'kind' | 'meta' | 'metrics'> {
  const out: Pick<FLModel, 'kind' | 'meta' | 'metrics'> = { kind: 'full', meta: {} };
  if (v === undefined) return out;
  if (!isRecord(v)) throw new CodecError('E_CODEC_METADATA', '__metadata__ must map strings to strings');
  const entries = Object.keys(v).length;
  if (entries > maxEntries) throw new CodecError('E_CODEC_TOO_LARGE', `__metadata__ has ${entries} entries, above the limit of ${maxEntries}`);
  if (!Object.values(v).every((x) => typeof x === 'string')) {
    throw new CodecError('E_CODEC_METADATA', '__metadata__ must map strings to strings');
  }
  const strings = v as Record<string, string>;
  const kind = strings['flare.kind'];
  if (kind !== undefined && kind !== 'full' && kind !== 'diff') {
    throw new CodecError('E_CODEC_METADATA', `flare.kind must be "full" or "diff", got ${JSON.stringify(kind)}`);
  }
  if (kind !== undefined) out.kind = kind;
  for (const [k, s] of Object.entries(strings)) if (!k.startsWith('flare.') && k !== 'format') out.meta[k] = s;
  const meta = strings['flare.meta'] === undefined ? undefined : parseStrictJsonField('flare.meta', strings['flare.meta']);
  if (meta !== undefined) {
    if (!isRecord(meta)) throw new CodecError('E_CODEC_METADATA', 'flare.meta must be a JSON object');
    Object.assign(out.meta, meta);
  }
  const metrics = strings['flare.metrics'] === undefined ? undefined : parseStrictJsonField('flare.metrics', strings['flare.metrics']);
  if (metrics !== undefined) {
    if (!isRecord(metrics) || !Object.values(metrics).every((x) => typeof x === 'number')) {
      throw new CodecError('E_CODEC_METADATA', 'flare.metrics must be a JSON object of numbers');
    }
    out.metrics = { ...(metrics as Record<string, number>) };
  }
  return out;
}

function parseStrictJsonField(field: string, text: string): JsonValue {
  try {
    return parseStrictJson(text);
  } catch (cause) {
    if (cause instanceof CodecError && cause.code !== 'E_CODEC_HEADER_JSON') throw cause;
    throw new CodecError('E_CODEC_METADATA', `${field} is not valid JSON`, { cause });
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Options of {@link decodeModel} besides its limits. */
export interface DecodeOptions {
  /**
   * Where to put the tensors that must be copied (misaligned in `bytes`, 16-bit floats, big-endian hosts),
   * instead of new buffers: with an arena reset after each model is used, decoding allocates nothing
   * model-sized after the first round. The model's tensors then live until the arena's next `reset()`.
   */
  readonly arena?: BufferArena;
}

/**
 * Decodes a safetensors byte array into a model, validating everything before allocating anything sized by
 * the input. Tensors of 4- and 8-byte dtypes are zero-copy views of `bytes` when aligned (always, for data we
 * encoded, when `bytes` starts 8-byte aligned): they share memory with `bytes`, so copy with `cloneModel`
 * before reusing the buffer. Tensors that must be copied go to `options.arena` when given.
 * Files from other writers decode too; their `__metadata__` strings land in `meta`.
 *
 * @throws CodecError (E_CODEC_*) for every malformed input; nothing else for any byte string.
 */
export function decodeModel(bytes: Uint8Array, limits: DecodeLimits = {}, options: DecodeOptions = {}): FLModel {
  const { maxHeaderBytes, maxBytes, maxTensors, maxDims, maxMetadataEntries } = { ...MODEL_LIMITS, ...limits };
  if (bytes.length < 8) throw new CodecError('E_CODEC_TRUNCATED', `${bytes.length} bytes is shorter than the 8-byte header length`);
  const declared = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (declared > BigInt(maxHeaderBytes)) {
    throw new CodecError('E_CODEC_TOO_LARGE', `header of ${declared} bytes exceeds the ${maxHeaderBytes}-byte limit`);
  }
  const headerLength = Number(declared);
  if (8 + headerLength > bytes.length) {
    throw new CodecError('E_CODEC_TRUNCATED', `header declares ${headerLength} bytes but only ${bytes.length - 8} follow`);
  }
  const dataLength = bytes.length - 8 - headerLength;
  if (dataLength > maxBytes) throw new CodecError('E_CODEC_TOO_LARGE', `data section of ${dataLength} bytes exceeds the ${maxBytes}-byte limit`);
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(8, 8 + headerLength));
  } catch (cause) {
    throw new CodecError('E_CODEC_HEADER_JSON', 'header is not valid UTF-8', { cause });
  }
  if (!text.startsWith('{')) throw new CodecError('E_CODEC_HEADER_JSON', 'header must be a JSON object');
  // Every member the limits allow: 4 per tensor (its name and dtype, shape, data_offsets), the metadata's.
  // Counted by the parser's scan before anything is built, so a header of a million keys costs one scan.
  const header = parseStrictJson(text, { maxDepth: 8, maxMembers: 4 * maxTensors + 1 + maxMetadataEntries });
  if (!isRecord(header)) throw new CodecError('E_CODEC_HEADER_JSON', 'header must be a JSON object');
  const names = Object.keys(header).filter((k) => k !== METADATA);
  if (names.length > maxTensors) {
    throw new CodecError('E_CODEC_TOO_MANY_TENSORS', `${names.length} tensors exceed the limit of ${maxTensors}`);
  }
  const entries = names.map((name) => parseEntry(name, header[name]!, dataLength, maxDims));
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const e of entries) {
    if (e.begin !== covered) {
      throw new CodecError('E_CODEC_LAYOUT', `tensor "${e.name}" starts at byte ${e.begin}, expected ${covered} (overlap or hole)`);
    }
    covered = e.end;
  }
  if (covered !== dataLength) {
    throw new CodecError('E_CODEC_LAYOUT', `tensors cover ${covered} of ${dataLength} data bytes`);
  }
  const { kind, meta, metrics } = readMetadata(header[METADATA], maxMetadataEntries);
  const base = 8 + headerLength;
  const params = new Map<string, Tensor>();
  for (const e of entries) params.set(e.name, readTensor(bytes, base, e, options.arena));
  const out: FLModel = { params, kind, meta };
  if (metrics !== undefined) out.metrics = metrics;
  return out;
}
