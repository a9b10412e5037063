import { encodeFrame, FRAME_PREFIX_BYTES, type JsonValue } from '@flare/core';
import { z } from 'zod';

// The transport's own framing on top of @flare/core's frame codec. Every WebSocket message is one core
// frame whose JSON header says what it is:
//   {t:'m', h, n, a?} + payload   a message that fits one frame (n = payload bytes, a = guard trailer)
//   {t:'m', h, n}                 the start of a streamed message of n bytes (n > chunk size)
//   {t:'c'} + bytes               the next chunk of the streamed message, in order
//   {t:'e', a?}                   the end of the streamed message, with the guard trailer
//   {t:'x', c, a}                 goodbye: the code of a refusal, sealed by the guard, just before the close
//                                 frame (close frames are not authenticated; this proves who refused)
// Only one message streams at a time per direction (sends are serialised), so chunks need no ids. A goodbye may
// arrive between the chunks of a message (the sender stops streaming to refuse).

/** Names must be JSON object keys; the strict parser in core already refused __proto__ & co. */
const header = z.record(z.string().max(256), z.json());
const trailer = z.record(z.string().max(64), z.json());

/** Largest declared message length we accept on the wire before any limit applies (2^52, a safe integer). */
const MAX_DECLARED = 2 ** 52;

export const FRAME_HEADER = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('m'), h: header, n: z.int().min(0).max(MAX_DECLARED), a: trailer.optional() }),
  z.strictObject({ t: z.literal('c') }),
  z.strictObject({ t: z.literal('e'), a: trailer.optional() }),
  z.strictObject({ t: z.literal('x'), c: z.string().max(64), a: trailer }),
]);

/**
 * The header key of a goodbye as the guard seals and opens it (`{ $close: code }`). Applications may not use
 * it, so no application message can be passed off as a goodbye.
 */
export const GOODBYE_KEY = '$close';
export type FrameHeader = z.infer<typeof FRAME_HEADER>;

/** The bytes of a `{t:'c'}` frame without its payload: prefix + header, computed once. */
export const CHUNK_PREFIX: Uint8Array = encodeFrame({ t: 'c' });
/** The parsed header of every chunk frame. */
export const CHUNK_HEADER: FrameHeader = Object.freeze({ t: 'c' as const });

/** True when `frame` starts with exactly {@link CHUNK_PREFIX}: magic, version, header length and `{"t":"c"}`. */
export function isChunkFrame(frame: Uint8Array): boolean {
  if (frame.length < CHUNK_PREFIX.length) return false;
  for (let i = 0; i < CHUNK_PREFIX.length; i++) if (frame[i] !== CHUNK_PREFIX[i]) return false;
  return true;
}

/**
 * Chunk frame buffers, reused across messages and connections: a fresh 1 MiB buffer per chunk costs page
 * faults and GC pressure (measured here: about a third of a large transfer's time). Bounded per process.
 * Each holds `headroom` spare bytes (the WebSocket header goes there), the chunk prefix and one chunk.
 */
const POOL_LIMIT = 16;
const pools = new Map<number, Uint8Array[]>();

export function takeChunkBuffer(chunkBytes: number, headroom: number): Uint8Array {
  const size = headroom + CHUNK_PREFIX.length + chunkBytes;
  const buf = pools.get(size)?.pop() ?? new Uint8Array(size);
  buf.set(CHUNK_PREFIX, headroom);
  return buf;
}

export function returnChunkBuffer(buf: Uint8Array): void {
  let pool = pools.get(buf.length);
  if (pool === undefined) pools.set(buf.length, (pool = []));
  if (pool.length < POOL_LIMIT) pool.push(buf);
}

/**
 * Fills a chunk frame of `length` payload bytes taken from `parts` at `cursor` into `out` after its headroom
 * and prefix (one copy); returns the frame with its headroom.
 */
export function chunkFrame(out: Uint8Array, headroom: number, parts: readonly Uint8Array[], cursor: { part: number; offset: number }, length: number): Uint8Array {
  const frame = out.subarray(0, headroom + CHUNK_PREFIX.length + length);
  let at = headroom + CHUNK_PREFIX.length;
  while (at < frame.length) {
    const part = parts[cursor.part]!;
    const take = Math.min(part.length - cursor.offset, frame.length - at);
    frame.set(part.subarray(cursor.offset, cursor.offset + take), at);
    at += take;
    cursor.offset += take;
    if (cursor.offset === part.length) {
      cursor.part++;
      cursor.offset = 0;
    }
  }
  return frame;
}

/** The frame header's JSON form for a message start (the trailer only when present). */
export function messageHeader(h: { readonly [key: string]: JsonValue }, n: number, a?: { readonly [key: string]: JsonValue }): { [key: string]: JsonValue } {
  return a === undefined ? { t: 'm', h, n } : { t: 'm', h, n, a };
}

/** Bytes a frame adds around its payload, at most (prefix + a header within the codec's header limit). */
export const FRAME_OVERHEAD = FRAME_PREFIX_BYTES + 64 * 1024;
