import { CodecError, decodeFrame, encodeFrame, SecAggError, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { fromB64, equalBytes } from './bytes.js';
import { sealedBytes } from './crypto.js';
import { FIELD_BYTES } from './shamir.js';

// The protocol's messages: FLARE-TS frames (magic | version | header length | JSON header | payload, see
// @flare/core) with a strict zod schema per type. Binary fields travel as canonical base64url; the masked input
// travels as the frame payload. Every decoder bounds the frame's size from the round's configuration before it
// parses anything, and checks the round context. Internal.

/** The largest signature accepted (an RSA-8192 signature is 1024 bytes; Ed25519 is 64, ECDSA P-384 at most 104). */
export const MAX_SIGNATURE_BYTES = 1024;
/** Bytes of the plaintext of one encrypted share: the mask-key seed share and the self-mask seed share. */
export const SHARE_PLAINTEXT_BYTES = 2 * FIELD_BYTES;
/** Bytes of one encrypted share on the wire. */
export const SEALED_SHARE_BYTES = sealedBytes(SHARE_PLAINTEXT_BYTES);
/** Largest setup frame: 10,000 site names of 256 characters and the rest. */
export const MAX_SETUP_BYTES = 4 * 1024 * 1024;

const b64 = (bytes: number) => z.string().length(Math.ceil((bytes * 4) / 3));
const site = z.string().min(1).max(256);
const signature = z.string().min(1).max(Math.ceil((MAX_SIGNATURE_BYTES * 4) / 3));
const context = b64(32);

const keysEntry = { channelKey: b64(32), maskKey: b64(32), commitment: b64(32), signature };

/** Header schemas by message type. */
const SCHEMAS = {
  setup: z.strictObject({ type: z.literal('secagg/setup'), config: z.unknown() }),
  advertise: z.strictObject({ type: z.literal('secagg/advertise'), context, ...keysEntry }),
  keys: z.strictObject({ type: z.literal('secagg/keys'), context, neighbours: z.array(z.strictObject({ site, ...keysEntry })) }),
  shares: z.strictObject({ type: z.literal('secagg/shares'), context, shares: z.array(z.strictObject({ to: site, sealed: b64(SEALED_SHARE_BYTES) })) }),
  relayed: z.strictObject({ type: z.literal('secagg/relayed-shares'), context, shares: z.array(z.strictObject({ from: site, sealed: b64(SEALED_SHARE_BYTES) })) }),
  masked: z.strictObject({ type: z.literal('secagg/masked'), context }),
  survivors: z.strictObject({ type: z.literal('secagg/survivors'), context, survivors: z.string().max(Math.ceil((10_000 / 8) * (4 / 3)) + 4) }),
  consistency: z.strictObject({ type: z.literal('secagg/consistency'), context, signature }),
  unmask: z.strictObject({ type: z.literal('secagg/unmask'), context, signatures: z.array(z.strictObject({ site, signature })) }),
  reveal: z.strictObject({
    type: z.literal('secagg/reveal'),
    context,
    selfMask: z.array(z.strictObject({ of: site, share: b64(FIELD_BYTES) })),
    maskKey: z.array(z.strictObject({ of: site, share: b64(FIELD_BYTES) })),
  }),
} as const;

/** A message type. */
export type MessageKind = keyof typeof SCHEMAS;
/** A decoded header of type K. */
export type Header<K extends MessageKind> = z.infer<(typeof SCHEMAS)[K]>;

/** Encodes a header (and payload) as a frame. */
export function encodeMessage(header: { readonly [key: string]: JsonValue }, payload?: Uint8Array): Uint8Array {
  return encodeFrame(header, payload);
}

/** Where a message comes from, for error messages: "from site-3" or "from the server". */
export interface Origin {
  readonly who: string;
  readonly phase: string;
}

/**
 * Decodes a frame of type `kind`: refuses it before parsing when it is larger than `maxBytes`
 * (E_SECAGG_TOO_LARGE), refuses malformed frames and headers (E_SECAGG_MALFORMED), and checks the round context
 * when `expectedContext` is given (E_SECAGG_CONTEXT).
 */
export function decodeMessage<K extends MessageKind>(
  kind: K,
  bytes: Uint8Array,
  { maxHeaderBytes, maxPayloadBytes = 0, expectedContext, origin }: { maxHeaderBytes: number; maxPayloadBytes?: number; expectedContext?: Uint8Array; origin: Origin },
): { header: Header<K>; payload: Uint8Array } {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('a secure-aggregation message is a Uint8Array');
  const limit = 9 + maxHeaderBytes + maxPayloadBytes;
  if (bytes.length > limit) {
    throw new SecAggError('E_SECAGG_TOO_LARGE', `${origin.phase} message ${origin.who} has ${bytes.length} bytes, more than the ${limit} this round allows`);
  }
  let frame: { header: Header<K>; payload: Uint8Array };
  try {
    frame = decodeFrame(bytes, SCHEMAS[kind], { maxHeaderBytes, maxBytes: maxPayloadBytes }) as { header: Header<K>; payload: Uint8Array };
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    // The frame's own bounds (header or payload above what the round allows) are a size refusal too.
    const tooLarge = cause instanceof CodecError && cause.code === 'E_CODEC_TOO_LARGE';
    throw new SecAggError(tooLarge ? 'E_SECAGG_TOO_LARGE' : 'E_SECAGG_MALFORMED', `${origin.phase} message ${origin.who} ${tooLarge ? 'is too large' : 'is malformed'}: ${detail}`, { cause });
  }
  if (expectedContext !== undefined && 'context' in frame.header) {
    const got = fromB64((frame.header as { context: string }).context, 32);
    if (got === undefined || !equalBytes(got, expectedContext)) {
      throw new SecAggError('E_SECAGG_CONTEXT', `${origin.phase} message ${origin.who} belongs to another job, round or configuration`);
    }
  }
  return frame;
}

/** Decodes a base64url field of a known length, or refuses the message. */
export function binary(text: string, length: number | undefined, field: string, origin: Origin): Uint8Array {
  const bytes = fromB64(text, length);
  if (bytes === undefined) {
    throw new SecAggError('E_SECAGG_MALFORMED', `${origin.phase} message ${origin.who}: field ${field} is not canonical base64url${length === undefined ? '' : ` of ${length} bytes`}`);
  }
  return bytes;
}
