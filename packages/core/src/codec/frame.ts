import type { z } from 'zod';
import { CodecError } from '../errors/areas.js';
import type { JsonValue } from '../json.js';
import { FRAME_LIMITS, type DecodeLimits } from './limits.js';
import { parseStrictJson } from './strict-json.js';

/** The 4 bytes every FLARE-TS frame starts with: "FLTS". */
export const FRAME_MAGIC = Uint8Array.of(0x46, 0x4c, 0x54, 0x53);
/** The wire version this build speaks. */
export const FRAME_VERSION = 1;
/** magic (4) | version (1) | header length (4, little-endian). */
export const FRAME_PREFIX_BYTES = 9;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Encodes a message frame: `magic | version | header length | header (UTF-8 JSON) | payload`.
 * The payload is copied once into the frame; for large models send the header frame and stream the model's
 * parts instead (see `encodeModelParts`).
 */
export function encodeFrame(header: { readonly [key: string]: JsonValue }, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(FRAME_PREFIX_BYTES + json.length + payload.length);
  out.set(FRAME_MAGIC, 0);
  out[4] = FRAME_VERSION;
  new DataView(out.buffer).setUint32(5, json.length, true);
  out.set(json, FRAME_PREFIX_BYTES);
  out.set(payload, FRAME_PREFIX_BYTES + json.length);
  return out;
}

/** A decoded frame: the header as the schema parsed it, and the payload (a view into the input bytes). */
export interface Frame<H> {
  readonly header: H;
  readonly payload: Uint8Array;
}

/**
 * Decodes a frame and validates its header with the caller's zod schema (pass a strict object schema, so
 * unknown fields are refused). Sizes are checked before anything is parsed: header at most 64 KiB and payload
 * at most 64 MiB by default.
 *
 * @throws CodecError E_CODEC_MAGIC, E_CODEC_VERSION, E_CODEC_TRUNCATED, E_CODEC_TOO_LARGE, E_CODEC_HEADER_JSON,
 *   E_CODEC_DUPLICATE, E_CODEC_FORBIDDEN_KEY or E_CODEC_HEADER_SCHEMA.
 */
export function decodeFrame<S extends z.ZodType>(bytes: Uint8Array, schema: S, limits: DecodeLimits = {}): Frame<z.output<S>> {
  const { maxHeaderBytes, maxBytes } = { ...FRAME_LIMITS, ...limits };
  if (bytes.length < FRAME_PREFIX_BYTES) throw new CodecError('E_CODEC_TRUNCATED', `frame of ${bytes.length} bytes is shorter than its prefix`);
  for (let i = 0; i < FRAME_MAGIC.length; i++) {
    if (bytes[i] !== FRAME_MAGIC[i]) throw new CodecError('E_CODEC_MAGIC', 'frame does not start with the FLTS magic');
  }
  if (bytes[4] !== FRAME_VERSION) throw new CodecError('E_CODEC_VERSION', `frame version ${bytes[4]} is not ${FRAME_VERSION}`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset + 5, 4).getUint32(0, true);
  if (headerLength > maxHeaderBytes) {
    throw new CodecError('E_CODEC_TOO_LARGE', `frame header of ${headerLength} bytes exceeds the ${maxHeaderBytes}-byte limit`);
  }
  if (FRAME_PREFIX_BYTES + headerLength > bytes.length) {
    throw new CodecError('E_CODEC_TRUNCATED', `frame header declares ${headerLength} bytes but only ${bytes.length - FRAME_PREFIX_BYTES} follow`);
  }
  const payloadLength = bytes.length - FRAME_PREFIX_BYTES - headerLength;
  if (payloadLength > maxBytes) throw new CodecError('E_CODEC_TOO_LARGE', `frame payload of ${payloadLength} bytes exceeds the ${maxBytes}-byte limit`);
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(FRAME_PREFIX_BYTES, FRAME_PREFIX_BYTES + headerLength));
  } catch (cause) {
    throw new CodecError('E_CODEC_HEADER_JSON', 'frame header is not valid UTF-8', { cause });
  }
  const raw = parseStrictJson(text, { maxDepth: 16 });
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const where = first === undefined || first.path.length === 0 ? 'header' : first.path.join('.');
    throw new CodecError('E_CODEC_HEADER_SCHEMA', `frame ${where}: ${first?.message ?? 'invalid'}`, { cause: parsed.error });
  }
  return { header: parsed.data as z.output<S>, payload: bytes.subarray(FRAME_PREFIX_BYTES + headerLength) };
}
