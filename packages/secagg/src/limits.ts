import type { RoundConfig } from './config.js';
import { MAX_SIGNATURE_BYTES, SEALED_SHARE_BYTES } from './messages.js';
import { bitmapSize } from './survivors.js';
import { FIELD_BYTES } from './shamir.js';

// The largest header each message type can have in a given round, computed from the configuration before a
// message is parsed: a message above it is refused unread (E_SECAGG_TOO_LARGE). Each bound is the encoded size
// of the largest honest message plus 1 KiB of slack for JSON punctuation. Internal.

const b64 = (bytes: number): number => Math.ceil((bytes * 4) / 3);
const SITE = 256 + 16; // a name and its key
const SLACK = 1024;

/** Header bounds by message type for `config`. */
export function headerLimits(config: RoundConfig): {
  advertise: number;
  keys: number;
  shares: number;
  relayed: number;
  masked: number;
  survivors: number;
  consistency: number;
  unmask: number;
  reveal: number;
} {
  const k = config.degree;
  const signature = b64(MAX_SIGNATURE_BYTES) + 32;
  const key = b64(32) + 24;
  const entryKeys = SITE + 3 * key + signature;
  const entryShare = SITE + b64(SEALED_SHARE_BYTES) + 24;
  const entryReveal = SITE + b64(FIELD_BYTES) + 24;
  return {
    advertise: SLACK + 4 * key + signature,
    keys: SLACK + k * entryKeys,
    shares: SLACK + k * entryShare,
    relayed: SLACK + k * entryShare,
    masked: SLACK,
    survivors: SLACK + b64(bitmapSize(config.sites.length)),
    consistency: SLACK + signature,
    unmask: SLACK + k * (SITE + signature),
    reveal: SLACK + (k + 1) * entryReveal,
  };
}
