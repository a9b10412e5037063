import { createHash } from 'node:crypto';
import { hkdfSha256 } from './hkdf.js';

/** Domain-separation prefix of every label the protocol derives or signs (bump on any wire change). */
export const PROTOCOL = 'flare-ts/auth/v2';

/** The keys one session epoch uses. Directions are named from the client's point of view. */
export interface EpochKeys {
  /** MAC key for client -> server messages. */
  readonly c2s: Uint8Array;
  /** MAC key for server -> client messages. */
  readonly s2c: Uint8Array;
  /** Key-confirmation keys of the login (finished / ready). */
  readonly confirmClient: Uint8Array;
  readonly confirmServer: Uint8Array;
  /** Root of `exportKeyingMaterial` for this epoch. */
  readonly exporter: Uint8Array;
  /**
   * Keys of the payload digest of large messages, per direction (a session keeps those of its login for its
   * lifetime: a message that streams across a renewal is digested under one key on both ends).
   */
  readonly payloadC2s: Uint8Array;
  readonly payloadS2c: Uint8Array;
}

/**
 * The session key schedule. PRK = HKDF-Extract(salt = SHA-256(transcriptHash || channelBinding), IKM = X25519
 * shared secret); each key is HKDF-Expand(PRK, "flare-ts/auth/v2 <purpose>", 32). The transcript hash binds the
 * keys to both signed login messages (so to both certificates and nonces), and the TLS exporter value, when TLS
 * is end-to-end, binds them to this TLS connection (RFC 9266's idea, with the RFC 8446 section 7.5 exporter).
 */
export function deriveEpochKeys(sharedSecret: Uint8Array, transcriptHash: Uint8Array, channelBinding: Uint8Array = new Uint8Array(0)): EpochKeys {
  const salt = createHash('sha256').update(transcriptHash).update(channelBinding).digest();
  const key = (purpose: string): Uint8Array => hkdfSha256(sharedSecret, salt, `${PROTOCOL} ${purpose}`, 32);
  return {
    c2s: key('c2s mac'),
    s2c: key('s2c mac'),
    confirmClient: key('client finished'),
    confirmServer: key('server finished'),
    exporter: key('exporter'),
    payloadC2s: key('c2s payload'),
    payloadS2c: key('s2c payload'),
  };
}

/**
 * Keying material for another protocol bound to this session (e.g. an attestation nonce): HKDF-Expand-like
 * derivation from the epoch's exporter secret, distinct per label and per length.
 *
 * @throws RangeError for an empty label or a length outside 1..8160.
 */
export function exportKeyingMaterial(exporter: Uint8Array, label: string, length: number): Uint8Array {
  if (typeof label !== 'string' || label.length === 0) throw new RangeError('"label" expected a non-empty string');
  return hkdfSha256(exporter, new Uint8Array(0), `${PROTOCOL} export ${length} ${label}`, length);
}
