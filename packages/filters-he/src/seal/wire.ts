import { HeError } from '@flare/core';
import { inflateExact } from './zstd.js';

// A validator for SEAL 4.1 serializations, written from SEAL's sources (native/src/seal/serialization.h,
// ciphertext.cpp Ciphertext::save_members/load_members, plaintext.cpp, dynarray.h, randomgen.cpp). SEAL's own
// loader is not safe on hostile bytes in its WebAssembly build: a stream that ends early aborts the module
// (measured with node-seal 6.0.3), so nothing from the wire reaches SEAL until this file has proved that the
// bytes have exactly the layout SEAL will read, with the sizes of our parameters and every coefficient
// reduced modulo its prime. What SEAL then reads is our canonical uncompressed copy.

/** SEALHeader (serialization.h): magic 0xA15E, header size 16, version 4.1, compression, reserved, total size. */
const SEAL_MAGIC = 0xa15e;
const HEADER_BYTES = 16;
const VERSION_MAJOR = 4;
const VERSION_MINOR = 1;
/** compr_mode_type (serialization.h). */
const COMPR_NONE = 0;
const COMPR_ZSTD = 2;
/** Ciphertext members before the data: parms_id (4 x u64), is_ntt_form (u8), size, degree, rns size (u64), scale (f64), correction factor (u64). */
const CT_MEMBER_BYTES = 32 + 1 + 8 + 8 + 8 + 8 + 8;
/** A DynArray: its own SEALHeader, then a u64 element count, then the elements. */
const DYNARRAY_PREFIX = HEADER_BYTES + 8;
/** UniformRandomGeneratorInfo (randomgen.h): SEALHeader, prng_type (u8), a 512-bit seed. */
const PRNG_INFO_BYTES = HEADER_BYTES + 1 + 64;
/** prng_type: blake2xb = 1, shake256 = 2. */
const PRNG_TYPES = new Set([1, 2]);
/** zstd frame magic (RFC 8878, 3.1.1). */
const ZSTD_MAGIC = 0xfd2fb528;

/** One level of the modulus chain, as the wire validator needs it. */
export interface WireLevel {
  /** SEAL's chain index: 0 is the last level. */
  readonly chainIndex: number;
  /** SEAL's parms_id of this level, 32 bytes little-endian. */
  readonly parmsId: Uint8Array;
  /** The primes of this level, in order. */
  readonly primes: readonly bigint[];
  /** Sum of the primes' bit lengths (SEAL's total_coeff_modulus_bit_count). */
  readonly bits: number;
}

/** What a ciphertext must look like for one context. */
export interface WireShape {
  readonly degree: number;
  /** Data levels, top first. */
  readonly levels: readonly WireLevel[];
}

/** A ciphertext that passed validation: its level, scale, and bytes SEAL can load (uncompressed). */
export interface CheckedCiphertext {
  readonly level: WireLevel;
  readonly scale: number;
  readonly seeded: boolean;
  readonly sealBytes: Uint8Array;
}

const invalid = (msg: string) => new HeError('E_HE_CIPHERTEXT_INVALID', msg);

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function readHeader(bytes: Uint8Array, at: number, what: string): { compr: number; size: number } {
  if (bytes.length - at < HEADER_BYTES) throw invalid(`${what}: shorter than a SEAL header`);
  const dv = view(bytes);
  if (dv.getUint16(at, true) !== SEAL_MAGIC || bytes[at + 2] !== HEADER_BYTES) throw invalid(`${what}: not a SEAL serialization`);
  if (bytes[at + 3] !== VERSION_MAJOR || bytes[at + 4] !== VERSION_MINOR) throw invalid(`${what}: SEAL version ${bytes[at + 3]}.${bytes[at + 4]} is not 4.1`);
  if (dv.getUint16(at + 6, true) !== 0) throw invalid(`${what}: reserved header bits are set`);
  const size = dv.getBigUint64(at + 8, true);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${what}: declared size is out of range`);
  return { compr: bytes[at + 5]!, size: Number(size) };
}

function writeHeader(out: Uint8Array, at: number, size: number): void {
  const dv = view(out);
  dv.setUint16(at, SEAL_MAGIC, true);
  out[at + 2] = HEADER_BYTES;
  out[at + 3] = VERSION_MAJOR;
  out[at + 4] = VERSION_MINOR;
  out[at + 5] = COMPR_NONE;
  dv.setUint16(at + 6, 0, true);
  dv.setBigUint64(at + 8, BigInt(size), true);
}

/** Member bytes (after the outer header) of a ciphertext with `rns` primes, seeded or not. */
function ciphertextMemberBytes(degree: number, rns: number, seeded: boolean): number {
  const count = (seeded ? 1 : 2) * degree * rns;
  return CT_MEMBER_BYTES + DYNARRAY_PREFIX + 8 * count + (seeded ? PRNG_INFO_BYTES : 0);
}

/**
 * Reads the frame content size of a single-segment zstd frame (RFC 8878, 3.1.1.1), which is how SEAL writes
 * (ZSTD_compressStream2 with a pledged size). Anything else is refused.
 */
function zstdContentSize(frame: Uint8Array): number {
  if (frame.length < 6 || view(frame).getUint32(0, true) !== ZSTD_MAGIC) throw invalid('compressed data is not a zstd frame');
  const descriptor = frame[4]!;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const reserved = (descriptor >> 3) & 1;
  const dictionary = descriptor & 3;
  if (reserved !== 0 || dictionary !== 0 || singleSegment !== 1 || fcsFlag === 0) {
    throw invalid('zstd frame header is not the single-segment form SEAL writes');
  }
  const width = [0, 2, 4, 8][fcsFlag]!;
  if (frame.length < 5 + width) throw invalid('zstd frame header is truncated');
  let size = 0;
  for (let i = 0; i < width; i++) size += frame[5 + i]! * 2 ** (8 * i);
  return width === 2 ? size + 256 : size;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Checks that each of `count` little-endian u64 values at `at` is below the prime of its RNS component. */
function checkReduced(dv: DataView, at: number, degree: number, primes: readonly bigint[], polys: number, what: string): void {
  for (let p = 0; p < polys; p++) {
    for (let j = 0; j < primes.length; j++) {
      const q = primes[j]!;
      const qHi = Number(q >> 32n);
      const qLo = Number(q & 0xffffffffn);
      const base = at + 8 * (p * primes.length + j) * degree;
      for (let i = 0; i < degree; i++) {
        const lo = dv.getUint32(base + 8 * i, true);
        const hi = dv.getUint32(base + 8 * i + 4, true);
        if (hi > qHi || (hi === qHi && lo >= qLo)) throw invalid(`${what}: a coefficient is not reduced modulo its prime`);
      }
    }
  }
}

/**
 * Validates a serialized CKKS ciphertext (uncompressed or zstd) against the context's shape and returns its
 * level, scale and an uncompressed copy SEAL can load without reading past its end.
 *
 * @throws HeError E_HE_CIPHERTEXT_INVALID for anything that is not exactly a ciphertext of these parameters.
 */
export function checkCiphertext(bytes: Uint8Array, shape: WireShape): CheckedCiphertext {
  const outer = readHeader(bytes, 0, 'ciphertext');
  if (outer.size !== bytes.length) throw invalid(`ciphertext declares ${outer.size} bytes but has ${bytes.length}`);
  const allowed = new Set<number>();
  for (const level of shape.levels) {
    allowed.add(ciphertextMemberBytes(shape.degree, level.primes.length, true));
    allowed.add(ciphertextMemberBytes(shape.degree, level.primes.length, false));
  }
  let members: Uint8Array;
  if (outer.compr === COMPR_ZSTD) {
    const frame = bytes.subarray(HEADER_BYTES);
    const expected = zstdContentSize(frame);
    if (!allowed.has(expected)) throw invalid(`compressed ciphertext expands to ${expected} bytes, not a size these parameters produce`);
    const inflated = inflateExact(frame, expected);
    if (inflated === undefined) throw invalid('zstd data is corrupt or truncated');
    members = inflated;
  } else if (outer.compr === COMPR_NONE) {
    members = bytes.subarray(HEADER_BYTES);
    if (!allowed.has(members.length)) throw invalid(`ciphertext of ${members.length} member bytes is not a size these parameters produce`);
  } else {
    throw invalid(`compression mode ${outer.compr} is not accepted (zstd or none only)`);
  }

  const dv = view(members);
  const parmsId = members.subarray(0, 32);
  const level = shape.levels.find((l) => sameBytes(l.parmsId, parmsId));
  if (level === undefined) throw invalid('ciphertext parms_id is not a level of these parameters');
  if (members[32] !== 1) throw invalid('ciphertext is not in NTT form');
  if (dv.getBigUint64(33, true) !== 2n) throw invalid('ciphertext size is not 2');
  if (dv.getBigUint64(41, true) !== BigInt(shape.degree)) throw invalid('ciphertext polynomial degree differs');
  const rns = level.primes.length;
  if (dv.getBigUint64(49, true) !== BigInt(rns)) throw invalid('ciphertext coefficient-modulus size differs from its level');
  const scale = dv.getFloat64(57, true);
  // SEAL's is_scale_within_bounds (valcheck.cpp): 0 < scale and floor(log2(scale)) < the level's modulus bits.
  if (!Number.isFinite(scale) || scale <= 0 || Math.floor(Math.log2(scale)) >= level.bits) throw invalid('ciphertext scale is out of bounds');
  if (dv.getBigUint64(65, true) !== 1n) throw invalid('ciphertext correction factor is not 1 (CKKS)');

  const seeded = members.length === ciphertextMemberBytes(shape.degree, rns, true);
  const count = (seeded ? 1 : 2) * shape.degree * rns;
  const inner = readHeader(members, CT_MEMBER_BYTES, 'ciphertext data');
  if (inner.compr !== COMPR_NONE || inner.size !== DYNARRAY_PREFIX + 8 * count) throw invalid('ciphertext data header is inconsistent');
  if (dv.getBigUint64(CT_MEMBER_BYTES + HEADER_BYTES, true) !== BigInt(count)) throw invalid('ciphertext data count is inconsistent');
  const dataAt = CT_MEMBER_BYTES + DYNARRAY_PREFIX;
  checkReduced(dv, dataAt, shape.degree, level.primes, seeded ? 1 : 2, 'ciphertext');
  if (seeded) {
    const at = dataAt + 8 * count;
    const info = readHeader(members, at, 'ciphertext seed');
    if (info.compr !== COMPR_NONE || info.size !== PRNG_INFO_BYTES) throw invalid('ciphertext seed header is inconsistent');
    if (!PRNG_TYPES.has(members[at + HEADER_BYTES]!)) throw invalid('ciphertext seed names an unknown generator');
  }

  let sealBytes: Uint8Array;
  if (outer.compr === COMPR_NONE) {
    sealBytes = bytes;
  } else {
    sealBytes = new Uint8Array(HEADER_BYTES + members.length);
    writeHeader(sealBytes, 0, sealBytes.length);
    sealBytes.set(members, HEADER_BYTES);
  }
  return { level, scale, seeded, sealBytes };
}

/**
 * Validates a serialized secret key (a Plaintext at the key level, plaintext.cpp save_members: parms_id,
 * coeff_count, scale, DynArray) for a context whose key level is `keyLevel`.
 *
 * @throws HeError E_HE_CONTEXT_FORMAT when the bytes are not exactly such a key.
 */
export function checkSecretKey(bytes: Uint8Array, degree: number, keyLevel: WireLevel): Uint8Array {
  const bad = (msg: string, cause?: unknown) => new HeError('E_HE_CONTEXT_FORMAT', `secret key: ${msg}`, { cause });
  let outer;
  try {
    outer = readHeader(bytes, 0, 'secret key');
  } catch (cause) {
    throw bad('not a SEAL serialization', cause);
  }
  const count = degree * keyLevel.primes.length;
  const expected = HEADER_BYTES + 32 + 8 + 8 + DYNARRAY_PREFIX + 8 * count;
  if (outer.compr !== COMPR_NONE || outer.size !== bytes.length || bytes.length !== expected) throw bad('size or compression differs');
  const dv = view(bytes);
  if (!sameBytes(bytes.subarray(HEADER_BYTES, HEADER_BYTES + 32), keyLevel.parmsId)) throw bad('made for other parameters');
  if (dv.getBigUint64(HEADER_BYTES + 32, true) !== BigInt(count)) throw bad('coefficient count differs');
  if (dv.getFloat64(HEADER_BYTES + 40, true) !== 1) throw bad('scale is not 1');
  let inner;
  try {
    inner = readHeader(bytes, HEADER_BYTES + 48, 'secret key data');
  } catch (cause) {
    throw bad('data header is malformed', cause);
  }
  if (inner.compr !== COMPR_NONE || inner.size !== DYNARRAY_PREFIX + 8 * count) throw bad('data header is inconsistent');
  if (dv.getBigUint64(HEADER_BYTES + 48 + HEADER_BYTES, true) !== BigInt(count)) throw bad('data count is inconsistent');
  try {
    checkReduced(dv, HEADER_BYTES + 48 + DYNARRAY_PREFIX, degree, keyLevel.primes, 1, 'secret key');
  } catch (cause) {
    throw bad('a coefficient is not reduced', cause);
  }
  return bytes;
}
