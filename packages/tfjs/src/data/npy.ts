import { MlError } from '@flare/core';
import { MAX_DATA_VALUES } from './tabular.js';

/** An array read from a .npy file, as float32 values (what the learner trains on). */
export interface NpyArray {
  /** The dtype as the file wrote it (numpy's descr, e.g. `<f4`). */
  readonly descr: string;
  readonly shape: readonly number[];
  /** Row-major (C order) values. */
  readonly data: Float32Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

// The little-endian (or byte-order-free) dtypes accepted, with their element size and reader.
const DTYPES: Readonly<Record<string, { size: number; read: (v: DataView, at: number) => number }>> = {
  '<f4': { size: 4, read: (v, at) => v.getFloat32(at, true) },
  '<f8': { size: 8, read: (v, at) => v.getFloat64(at, true) },
  '<f2': { size: 2, read: (v, at) => half(v.getUint16(at, true)) },
  '|i1': { size: 1, read: (v, at) => v.getInt8(at) },
  '|u1': { size: 1, read: (v, at) => v.getUint8(at) },
  '|b1': { size: 1, read: (v, at) => (v.getUint8(at) === 0 ? 0 : 1) },
  '<i2': { size: 2, read: (v, at) => v.getInt16(at, true) },
  '<u2': { size: 2, read: (v, at) => v.getUint16(at, true) },
  '<i4': { size: 4, read: (v, at) => v.getInt32(at, true) },
  '<u4': { size: 4, read: (v, at) => v.getUint32(at, true) },
  '<i8': { size: 8, read: (v, at) => Number(v.getBigInt64(at, true)) },
  '<u8': { size: 8, read: (v, at) => Number(v.getBigUint64(at, true)) },
};

/** IEEE 754 binary16 to a number. */
function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : Number.NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// NEP 1 header: a Python dict literal with exactly descr, fortran_order and shape (numpy writes them in this
// order; other orders are accepted), padded with spaces and ended by a newline.
const ENTRY = /^\s*'(descr|fortran_order|shape)'\s*:\s*('[^']*'|True|False|\(\s*(?:\d+\s*,\s*)*(?:\d+\s*)?\))\s*$/;

function parseHeader(text: string, name: string): { descr: string; fortran: boolean; shape: number[] } {
  const body = /^\{(.*)\}\s*$/s.exec(text.replace(/\n$/, ''))?.[1];
  if (body === undefined) throw new MlError('E_ML_DATA_FORMAT', `${name}: the .npy header is not a dict`);
  // Split on commas outside parentheses.
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of body) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim() !== '') parts.push(cur);
  const got = new Map<string, string>();
  for (const p of parts) {
    const m = ENTRY.exec(p);
    if (m === null) throw new MlError('E_ML_DATA_FORMAT', `${name}: the .npy header has an entry other than descr, fortran_order and shape`);
    if (got.has(m[1]!)) throw new MlError('E_ML_DATA_FORMAT', `${name}: the .npy header names '${m[1]!}' twice`);
    got.set(m[1]!, m[2]!);
  }
  const descr = got.get('descr');
  const fortran = got.get('fortran_order');
  const shape = got.get('shape');
  if (descr === undefined || fortran === undefined || shape === undefined) throw new MlError('E_ML_DATA_FORMAT', `${name}: the .npy header needs descr, fortran_order and shape`);
  if (!descr.startsWith("'") || !(fortran === 'True' || fortran === 'False') || !shape.startsWith('(')) throw new MlError('E_ML_DATA_FORMAT', `${name}: the .npy header has a value of the wrong type`);
  return { descr: descr.slice(1, -1), fortran: fortran === 'True', shape: (shape.slice(1, -1).match(/\d+/g) ?? []).map(Number) };
}

/**
 * Parses a .npy file (NumPy format versions 1-3) strictly: the magic, the header dict (descr, fortran_order,
 * shape only), a little-endian numeric or bool dtype, C order only, and a data section of exactly the size the
 * header declares, all checked before the values are allocated.
 *
 * @throws MlError E_ML_DATA_FORMAT (not a .npy file, a header or dtype not accepted, fortran_order True, a size
 *   that disagrees with the shape), E_ML_DATA_TOO_LARGE (more values than a loader allocates).
 */
export function parseNpy(bytes: Uint8Array, name: string): NpyArray {
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) throw new MlError('E_ML_DATA_FORMAT', `${name} is not a .npy file (no \\x93NUMPY magic)`);
  const major = bytes[6]!;
  if (major < 1 || major > 3) throw new MlError('E_ML_DATA_FORMAT', `${name}: .npy format version ${major} is not supported (1-3)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenBytes) throw new MlError('E_ML_DATA_FORMAT', `${name}: the .npy file ends inside its preamble`);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = 8 + lenBytes + headerLength;
  if (headerLength > 65_536 || start > bytes.length) throw new MlError('E_ML_DATA_FORMAT', `${name}: the .npy header length ${headerLength} does not fit the file`);
  let text: string;
  try {
    text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1', { fatal: true }).decode(bytes.subarray(8 + lenBytes, start));
  } catch (e) {
    throw new MlError('E_ML_DATA_FORMAT', `${name}: the .npy header is not text`, { cause: e });
  }
  const h = parseHeader(text, name);
  if (h.fortran) throw new MlError('E_ML_DATA_FORMAT', `${name}: fortran_order True is not supported; save a C-contiguous array (numpy.ascontiguousarray)`);
  const dtype = DTYPES[h.descr];
  if (dtype === undefined) throw new MlError('E_ML_DATA_FORMAT', `${name}: dtype '${h.descr.slice(0, 16)}' is not supported (little-endian float, int, uint or bool)`);
  let count = 1;
  for (const d of h.shape) {
    count *= d;
    if (count > MAX_DATA_VALUES) throw new MlError('E_ML_DATA_TOO_LARGE', `${name}: shape (${h.shape.join(', ')}) exceeds the ${MAX_DATA_VALUES} values a data source may hold`);
  }
  if (bytes.length - start !== count * dtype.size) throw new MlError('E_ML_DATA_FORMAT', `${name}: shape (${h.shape.join(', ')}) of ${h.descr} needs ${count * dtype.size} data bytes, the file has ${bytes.length - start}`);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = dtype.read(view, start + i * dtype.size);
  return { descr: h.descr, shape: h.shape, data };
}
