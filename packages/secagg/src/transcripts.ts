import { encodeFields } from './bytes.js';
import { derive, digest, PROTOCOL } from './crypto.js';
import { fieldToBytes } from './shamir.js';

// What is signed, encrypted under, committed to and expanded, one function each, so the site and the server
// cannot build them differently. Every one starts with the protocol and a label and includes the round context.
// Internal.

/** What a site signs when it advertises its keys. */
export function advertiseTranscript(context: Uint8Array, site: string, channelKey: Uint8Array, maskKey: Uint8Array, commitment: Uint8Array): Uint8Array {
  return encodeFields(PROTOCOL, 'advertise', context, site, channelKey, maskKey, commitment);
}

/** What a site signs in the consistency check: the survivor set it was shown. */
export function survivorsTranscript(context: Uint8Array, site: string, survivors: Uint8Array): Uint8Array {
  return encodeFields(PROTOCOL, 'survivors', context, site, survivors);
}

/** Associated data of the encrypted share from `from` to `to`. */
export function shareAad(context: Uint8Array, from: string, to: string): Uint8Array {
  return encodeFields(PROTOCOL, 'share', context, from, to);
}

/** The AES-256-GCM key for shares from `from` to `to` (one direction), from the channel agreement. */
export function shareKey(shared: Uint8Array, context: Uint8Array, from: string, to: string): Uint8Array {
  return derive(shared, context, ['share key', from, to]);
}

/** The pairwise mask's PRG key, from the mask agreement of the two sites; `low` has the smaller index. */
export function pairMaskKey(shared: Uint8Array, context: Uint8Array, low: string, high: string): Uint8Array {
  return derive(shared, context, ['pair mask', low, high]);
}

/** The self mask's PRG key, from the site's self-mask seed. */
export function selfMaskKey(seed: bigint, context: Uint8Array, site: string): Uint8Array {
  return derive(fieldToBytes(seed), context, ['self mask', site]);
}

/** The commitment to the self-mask seed a site signs when it advertises, so a false share is detected. */
export function selfMaskCommitment(seed: bigint, context: Uint8Array, site: string): Uint8Array {
  return digest(PROTOCOL, 'self mask commitment', context, site, fieldToBytes(seed));
}
