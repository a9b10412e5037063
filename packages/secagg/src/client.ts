import { randomBytes } from 'node:crypto';
import { SecAggError } from '@flare/core';
import { toB64 } from './bytes.js';
import { openRound, type Round, type RoundConfig } from './config.js';
import { agree, seal, open, x25519FromScalar, x25519FromSeed, x25519PublicKey, type AgreementKey } from './crypto.js';
import { neighboursOf } from './graph.js';
import { binary, decodeMessage, encodeMessage, MAX_SETUP_BYTES, MAX_SIGNATURE_BYTES, SHARE_PLAINTEXT_BYTES, type Origin } from './messages.js';
import type { SecAggSigner, SecAggVerifier } from './participants.js';
import { checkEncoding } from './plan-encoding.js';
import { addMask } from './prg.js';
import { pack, ringMask } from './ring.js';
import { FIELD_BYTES, fieldFromBytes, fieldToBytes, randomFieldElement, split } from './shamir.js';
import { bitmapSize, readBitmap } from './survivors.js';
import {
  advertiseTranscript,
  pairMaskKey,
  selfMaskCommitment,
  selfMaskKey,
  shareAad,
  shareKey,
  survivorsTranscript,
} from './transcripts.js';
import { headerLimits } from './limits.js';

/** Options of {@link SecAggClient}. */
export interface SecAggClientOptions {
  /** This site's name, as authenticated by the runtime (the round's site list must contain it). */
  readonly site: string;
  /** The job and round this site is running: a configuration for any other is refused (E_SECAGG_CONTEXT). */
  readonly job: string;
  readonly round: number;
  /** Signs with this site's identity key. */
  readonly signer: SecAggSigner;
  /** Verifies other sites' signatures with their identity keys. */
  readonly verifier: SecAggVerifier;
  /**
   * The site's own rules for a round (its privacy policy: minimum noise, threshold, ...), called with the
   * checked configuration before any key is made; throw a FlareError to refuse the round.
   */
  readonly accept?: (config: RoundConfig) => void;
}

/** Where a {@link SecAggClient} is in the protocol. */
export type ClientPhase = 'new' | 'advertised' | 'shared' | 'masked' | 'signed' | 'revealed' | 'stopped';

interface Neighbour {
  readonly index: number;
  readonly name: string;
  /** X25519 of this site's channel key and the neighbour's: the share-encryption keys derive from it. */
  readonly channelShared: Uint8Array;
  /** X25519 of this site's mask key and the neighbour's: the pairwise mask derives from it. */
  readonly maskShared: Uint8Array;
}

interface HeldShares {
  readonly maskKey: bigint;
  readonly selfMask: bigint;
}

const ORDER: readonly ClientPhase[] = ['new', 'advertised', 'shared', 'masked', 'signed', 'revealed'];

/**
 * One site's side of a SecAgg+ round (Bell et al., CCS 2020, with the consistency check of Bonawitz et al.,
 * CCS 2017), as a state machine: one method per phase, each taking the server's message bytes and returning
 * this site's reply bytes for the server to relay. Nothing here does I/O, so the runtime carries the messages
 * over its own authenticated channels and tests run many sites in one process.
 *
 * Every message is validated before use (size bounds from the round, strict schema, round context, signatures,
 * authenticated encryption of shares). Any refusal throws a SecAggError and stops the site for the round: every
 * later call throws E_SECAGG_PHASE. The site never reveals both the mask-key share and the self-mask share of
 * one neighbour (E_SECAGG_BOTH_SHARES).
 *
 * @example
 * ```ts
 * const site = new SecAggClient({ site: 'site-1', job, round, signer, verifier });
 * const advertise = site.start(setupBytes);                    // -> server
 * const shares = site.receiveKeys(keysBytes);                  // -> server
 * const masked = site.receiveShares(relayedBytes, ringInput);  // -> server (ringInput from encodeUpdate)
 * const signature = site.receiveSurvivors(survivorsBytes);     // -> server
 * const reveal = site.receiveUnmask(unmaskBytes);              // -> server
 * ```
 */
export class SecAggClient {
  readonly #options: SecAggClientOptions;
  #phase: ClientPhase = 'new';
  #round: Round | undefined;
  #me = -1;
  #channel: AgreementKey | undefined;
  #mask: AgreementKey | undefined;
  #maskSeed = 0n;
  #selfSeed = 0n;
  #neighbours = new Map<number, Neighbour>();
  #held = new Map<number, HeldShares>();
  #survivors: Uint8Array | undefined;
  #survivorSet = new Set<number>();
  #revealedSelf = new Set<number>();

  constructor(options: SecAggClientOptions) {
    if (typeof options.site !== 'string' || options.site.length === 0) throw new TypeError('"site" expected a non-empty string');
    this.#options = options;
  }

  /** The current phase ('stopped' after any refusal). */
  get phase(): ClientPhase {
    return this.#phase;
  }

  /** The checked round configuration, once {@link start} accepted it. */
  get config(): RoundConfig | undefined {
    return this.#round?.config;
  }

  /** Stops the site for this round: every later call throws E_SECAGG_PHASE. */
  abort(): void {
    this.#phase = 'stopped';
    this.#forgetSecrets();
  }

  /**
   * Phase 0: checks the round configuration (schema, protocol rules, this job and round, this site in the list,
   * the encoding's bounds, the site's own `accept` rules), makes this round's keys and the self-mask seed, and
   * returns the signed key advertisement.
   *
   * @throws SecAggError E_SECAGG_TOO_LARGE, E_SECAGG_MALFORMED, E_SECAGG_CONFIG, E_SECAGG_CONTEXT, E_SECAGG_PARAMS.
   */
  start(setup: Uint8Array): Uint8Array {
    return this.#step('new', 'setup', () => {
      const origin = this.#origin('setup');
      const { header } = decodeMessage('setup', setup, { maxHeaderBytes: MAX_SETUP_BYTES, origin });
      const round = openRound(header.config);
      const { config } = round;
      if (config.job !== this.#options.job || config.round !== this.#options.round) {
        throw new SecAggError('E_SECAGG_CONTEXT', `the server sent the configuration of job ${config.job} round ${config.round}; site ${this.#options.site} runs job ${this.#options.job} round ${this.#options.round}`);
      }
      const me = round.index.get(this.#options.site);
      if (me === undefined) throw new SecAggError('E_SECAGG_CONFIG', `site ${this.#options.site} is not in the round's site list`);
      checkEncoding(config);
      this.#options.accept?.(config);
      this.#round = round;
      this.#me = me;
      this.#maskSeed = randomFieldElement();
      this.#selfSeed = randomFieldElement();
      this.#mask = x25519FromSeed(fieldToBytes(this.#maskSeed), round.context, this.#options.site, 'mask');
      this.#channel = x25519FromScalar(randomBytes(32));
      const commitment = selfMaskCommitment(this.#selfSeed, round.context, this.#options.site);
      const signature = this.#options.signer.sign(advertiseTranscript(round.context, this.#options.site, this.#channel.publicKey, this.#mask.publicKey, commitment));
      if (!(signature instanceof Uint8Array) || signature.length === 0 || signature.length > MAX_SIGNATURE_BYTES) {
        throw new TypeError(`the signer must return 1 to ${MAX_SIGNATURE_BYTES} bytes`);
      }
      return encodeMessage({
        type: 'secagg/advertise',
        context: toB64(round.context),
        channelKey: toB64(this.#channel.publicKey),
        maskKey: toB64(this.#mask.publicKey),
        commitment: toB64(commitment),
        signature: toB64(signature),
      });
    });
  }

  /**
   * Phase 1: checks the neighbours' advertised keys (each a neighbour in this round's graph, signed by that
   * site, usable), splits this site's two secrets into Shamir shares for itself and those neighbours, and returns
   * the shares encrypted for each neighbour.
   *
   * @throws SecAggError E_SECAGG_UNKNOWN_SITE, E_SECAGG_SIGNATURE, E_SECAGG_BAD_KEY, E_SECAGG_TOO_FEW, and the
   *   message errors (E_SECAGG_TOO_LARGE, E_SECAGG_MALFORMED, E_SECAGG_CONTEXT).
   */
  receiveKeys(keys: Uint8Array): Uint8Array {
    return this.#step('advertised', 'keys', () => {
      const round = this.#round!;
      const origin = this.#origin('keys');
      const { header } = decodeMessage('keys', keys, { maxHeaderBytes: headerLimits(round.config).keys, expectedContext: round.context, origin });
      const mine = new Set(neighboursOf(round.graph, this.#me));
      const seenKeys = new Set<string>([toB64(this.#channel!.publicKey), toB64(this.#mask!.publicKey)]);
      const neighbours = new Map<number, Neighbour>();
      for (const [i, entry] of header.neighbours.entries()) {
        const index = round.index.get(entry.site);
        if (index === undefined || !mine.has(index)) {
          throw new SecAggError('E_SECAGG_UNKNOWN_SITE', `keys message from the server lists ${entry.site}, which is not a neighbour of ${this.#options.site} in this round`);
        }
        if (neighbours.has(index)) throw new SecAggError('E_SECAGG_MALFORMED', `keys message from the server lists ${entry.site} twice`);
        const channelKey = binary(entry.channelKey, 32, `neighbours.${i}.channelKey`, origin);
        const maskKey = binary(entry.maskKey, 32, `neighbours.${i}.maskKey`, origin);
        const commitment = binary(entry.commitment, 32, `neighbours.${i}.commitment`, origin);
        const signature = binary(entry.signature, undefined, `neighbours.${i}.signature`, origin);
        if (!this.#options.verifier.verify(entry.site, advertiseTranscript(round.context, entry.site, channelKey, maskKey, commitment), signature)) {
          throw new SecAggError('E_SECAGG_SIGNATURE', `the keys advertised for ${entry.site} do not carry its valid signature`);
        }
        for (const k of [entry.channelKey, entry.maskKey]) {
          if (seenKeys.has(k)) throw new SecAggError('E_SECAGG_BAD_KEY', `${entry.site} advertised a key that another participant also uses`);
          seenKeys.add(k);
        }
        const channel = x25519PublicKey(channelKey);
        const mask = x25519PublicKey(maskKey);
        const channelShared = channel === undefined ? undefined : agree(this.#channel!.privateKey, channel);
        const maskShared = mask === undefined ? undefined : agree(this.#mask!.privateKey, mask);
        if (channelShared === undefined || maskShared === undefined) {
          throw new SecAggError('E_SECAGG_BAD_KEY', `${entry.site} advertised a key that is not a usable X25519 public key`);
        }
        neighbours.set(index, { index, name: entry.site, channelShared, maskShared });
      }
      const { threshold } = round.config;
      if (neighbours.size + 1 < threshold) {
        throw new SecAggError('E_SECAGG_TOO_FEW', `only ${neighbours.size} neighbours of ${this.#options.site} advertised keys; the threshold needs ${threshold - 1}`);
      }
      this.#neighbours = neighbours;
      // Shares for the neighbours and for this site itself, at x = index + 1.
      const holders = [this.#me, ...[...neighbours.keys()].sort((a, b) => a - b)];
      const xs = holders.map((h) => h + 1);
      const maskShares = split(this.#maskSeed, threshold, xs);
      const selfShares = split(this.#selfSeed, threshold, xs);
      this.#held.set(this.#me, { maskKey: maskShares[0]!.y, selfMask: selfShares[0]!.y });
      const me = this.#options.site;
      const shares = holders.slice(1).map((h, j) => {
        const n = neighbours.get(h)!;
        const plaintext = new Uint8Array(SHARE_PLAINTEXT_BYTES);
        plaintext.set(fieldToBytes(maskShares[j + 1]!.y), 0);
        plaintext.set(fieldToBytes(selfShares[j + 1]!.y), FIELD_BYTES);
        const key = shareKey(n.channelShared, round.context, me, n.name);
        return { to: n.name, sealed: toB64(seal(key, plaintext, shareAad(round.context, me, n.name))) };
      });
      return encodeMessage({ type: 'secagg/shares', context: toB64(round.context), shares });
    });
  }

  /**
   * Phase 2: decrypts the shares the neighbours sent this site (authenticated, bound to sender, recipient and
   * round), then masks `input` (ring elements, taken mod 2^bits; see encodeUpdate) with this site's self mask
   * and a pairwise mask for each neighbour whose shares arrived, and returns the masked input.
   *
   * @throws SecAggError E_SECAGG_DIMENSION (input length), E_SECAGG_UNKNOWN_SITE, E_SECAGG_TAMPERED,
   *   E_SECAGG_TOO_FEW, and the message errors.
   */
  receiveShares(relayed: Uint8Array, input: Uint32Array): Uint8Array {
    return this.#step('shared', 'shares', () => {
      const round = this.#round!;
      const { config, context } = round;
      if (!(input instanceof Uint32Array) || input.length !== config.length) {
        throw new SecAggError('E_SECAGG_DIMENSION', `the input has ${input?.length} ring elements; the round sums ${config.length} (a Uint32Array)`);
      }
      const origin = this.#origin('shares');
      const { header } = decodeMessage('relayed', relayed, { maxHeaderBytes: headerLimits(config).relayed, expectedContext: context, origin });
      const me = this.#options.site;
      const held = new Map<number, HeldShares>([[this.#me, this.#held.get(this.#me)!]]);
      for (const [i, entry] of header.shares.entries()) {
        const index = round.index.get(entry.from);
        const n = index === undefined ? undefined : this.#neighbours.get(index);
        if (n === undefined) throw new SecAggError('E_SECAGG_UNKNOWN_SITE', `relayed shares come from ${entry.from}, which advertised no keys to ${me}`);
        if (held.has(n.index)) throw new SecAggError('E_SECAGG_MALFORMED', `relayed shares list ${entry.from} twice`);
        const sealed = binary(entry.sealed, undefined, `shares.${i}.sealed`, origin);
        const key = shareKey(n.channelShared, context, n.name, me);
        const plaintext = open(key, sealed, shareAad(context, n.name, me), SHARE_PLAINTEXT_BYTES);
        if (plaintext === undefined) throw new SecAggError('E_SECAGG_TAMPERED', `the share from ${entry.from} to ${me} fails authentication`);
        const maskKey = fieldFromBytes(plaintext.subarray(0, FIELD_BYTES));
        const selfMask = fieldFromBytes(plaintext.subarray(FIELD_BYTES));
        if (maskKey === undefined || selfMask === undefined) throw new SecAggError('E_SECAGG_MALFORMED', `the share from ${entry.from} is not a field element`);
        held.set(n.index, { maskKey, selfMask });
      }
      if (held.size < config.threshold) {
        throw new SecAggError('E_SECAGG_TOO_FEW', `only ${held.size - 1} neighbours of ${me} shared their secrets; the threshold needs ${config.threshold - 1}`);
      }
      this.#held = held;
      const masked = new Uint32Array(input);
      addMask(masked, selfMaskKey(this.#selfSeed, context, me), 1);
      for (const index of held.keys()) {
        if (index === this.#me) continue;
        const n = this.#neighbours.get(index)!;
        const low = Math.min(index, this.#me);
        const key = pairMaskKey(n.maskShared, context, config.sites[low]!, config.sites[low === index ? this.#me : index]!);
        // The lower index adds the pairwise mask, the higher subtracts it: the two cancel in the sum.
        addMask(masked, key, this.#me < index ? 1 : -1);
      }
      if (config.bits < 32) {
        const mask = ringMask(config.bits);
        for (let i = 0; i < masked.length; i++) masked[i] = masked[i]! & mask;
      }
      return encodeMessage({ type: 'secagg/masked', context: toB64(context) }, pack(masked, config.bits));
    });
  }

  /**
   * Phase 3, the consistency check: reads the survivor set the server announces (the sites whose masked inputs
   * it holds), checks it against what this site saw (itself in it, every surviving neighbour one whose shares
   * arrived, enough survivors for the threshold and for the distributed-DP plan), and returns this site's
   * signature over it.
   *
   * @throws SecAggError E_SECAGG_INCONSISTENT, E_SECAGG_TOO_FEW, E_SECAGG_DP_TOO_FEW, E_SECAGG_REPLAY,
   *   E_SECAGG_BOTH_SHARES (a different set after this site revealed its shares), and the message errors.
   */
  receiveSurvivors(survivors: Uint8Array): Uint8Array {
    if (this.#phase === 'signed' || this.#phase === 'revealed') return this.#repeatedSurvivors(survivors);
    return this.#step('masked', 'survivors', () => {
      const round = this.#round!;
      const { config, context } = round;
      const origin = this.#origin('survivors');
      const { bitmap, set } = this.#readSurvivors(survivors, origin);
      if (!set.has(this.#me)) throw new SecAggError('E_SECAGG_INCONSISTENT', `the server's survivor set leaves out ${this.#options.site}, which sent its masked input`);
      for (const n of neighboursOf(round.graph, this.#me)) {
        if (set.has(n) && !this.#held.has(n)) {
          throw new SecAggError('E_SECAGG_INCONSISTENT', `the server counts ${config.sites[n]} as a survivor, but its shares never reached ${this.#options.site}`);
        }
      }
      const noise = config.encoding?.noise ?? null;
      if (noise !== null && set.size < noise.honestSites) {
        throw new SecAggError('E_SECAGG_DP_TOO_FEW', `${set.size} sites survived; the round's noise counts on ${noise.honestSites} honest sites`);
      }
      if (set.size < config.minSurvivors) throw new SecAggError('E_SECAGG_TOO_FEW', `${set.size} sites survived; the round needs ${config.minSurvivors}`);
      this.#survivors = bitmap;
      this.#survivorSet = set;
      const signature = this.#options.signer.sign(survivorsTranscript(context, this.#options.site, bitmap));
      return encodeMessage({ type: 'secagg/consistency', context: toB64(context), signature: toB64(signature) });
    });
  }

  /**
   * Phase 4, unmasking: checks that at least threshold - 1 neighbours signed the very survivor set this site
   * signed (every signature listed must verify), then reveals, for itself and each neighbour whose shares it
   * holds, the self-mask share if that site survived and the mask-key share if it dropped: never both.
   *
   * @throws SecAggError E_SECAGG_INCONSISTENT, E_SECAGG_TOO_FEW, E_SECAGG_REPLAY, and the message errors.
   */
  receiveUnmask(unmask: Uint8Array): Uint8Array {
    if (this.#phase === 'revealed') {
      this.#phase = 'stopped';
      throw new SecAggError('E_SECAGG_REPLAY', `${this.#options.site} already revealed its shares for this round`);
    }
    return this.#step('signed', 'unmask', () => {
      const round = this.#round!;
      const { config, context } = round;
      const origin = this.#origin('unmask');
      const { header } = decodeMessage('unmask', unmask, { maxHeaderBytes: headerLimits(config).unmask, expectedContext: context, origin });
      const mine = new Set(neighboursOf(round.graph, this.#me));
      const signed = new Set<number>();
      for (const [i, entry] of header.signatures.entries()) {
        const index = round.index.get(entry.site);
        if (index === undefined || !mine.has(index) || !this.#survivorSet.has(index)) {
          throw new SecAggError('E_SECAGG_INCONSISTENT', `the unmask request carries a signature of ${entry.site}, which is not a surviving neighbour of ${this.#options.site}`);
        }
        if (signed.has(index)) throw new SecAggError('E_SECAGG_MALFORMED', `the unmask request lists ${entry.site} twice`);
        const signature = binary(entry.signature, undefined, `signatures.${i}.signature`, origin);
        if (!this.#options.verifier.verify(entry.site, survivorsTranscript(context, entry.site, this.#survivors!), signature)) {
          throw new SecAggError('E_SECAGG_INCONSISTENT', `${entry.site} did not sign the survivor set ${this.#options.site} signed: the server shows sites different views`);
        }
        signed.add(index);
      }
      if (signed.size + 1 < config.threshold) {
        throw new SecAggError('E_SECAGG_TOO_FEW', `only ${signed.size} neighbours of ${this.#options.site} confirmed the survivor set; the threshold needs ${config.threshold - 1}`);
      }
      const selfMask: Array<{ of: string; share: string }> = [];
      const maskKey: Array<{ of: string; share: string }> = [];
      for (const [index, shares] of [...this.#held.entries()].sort((a, b) => a[0] - b[0])) {
        const of = config.sites[index]!;
        if (this.#survivorSet.has(index)) {
          selfMask.push({ of, share: toB64(fieldToBytes(shares.selfMask)) });
          this.#revealedSelf.add(index);
        } else {
          maskKey.push({ of, share: toB64(fieldToBytes(shares.maskKey)) });
        }
      }
      this.#forgetSecrets();
      return encodeMessage({ type: 'secagg/reveal', context: toB64(context), selfMask, maskKey });
    });
  }

  // A second survivor set: the same one is a replay; a different one before revealing is an inconsistent
  // view; after revealing, one that flips any neighbour between survived and dropped asks for its other share.
  #repeatedSurvivors(survivors: Uint8Array): never {
    const round = this.#round!;
    const revealed = this.#phase === 'revealed';
    this.#phase = 'stopped';
    const { set } = this.#readSurvivors(survivors, this.#origin('survivors'));
    const flips = [...this.#held.keys()].filter((i) => set.has(i) !== this.#survivorSet.has(i));
    if (flips.length === 0) throw new SecAggError('E_SECAGG_REPLAY', `${this.#options.site} already signed this survivor set`);
    const names = flips.map((i) => round.config.sites[i]).join(', ');
    if (revealed) {
      throw new SecAggError('E_SECAGG_BOTH_SHARES', `the server now counts ${names} the other way: ${this.#options.site} revealed one share of each and refuses the other`);
    }
    throw new SecAggError('E_SECAGG_INCONSISTENT', `the server changed its survivor set for ${names} after ${this.#options.site} signed it`);
  }

  #readSurvivors(survivors: Uint8Array, origin: Origin): { bitmap: Uint8Array; set: Set<number> } {
    const round = this.#round!;
    const { header } = decodeMessage('survivors', survivors, { maxHeaderBytes: headerLimits(round.config).survivors, expectedContext: round.context, origin });
    const bitmap = binary(header.survivors, bitmapSize(round.config.sites.length), 'survivors', origin);
    const set = readBitmap(bitmap, round.config.sites.length);
    if (set === undefined) {
      throw new SecAggError('E_SECAGG_MALFORMED', `survivors message from the server sets bits beyond the ${round.config.sites.length} sites`);
    }
    return { bitmap, set };
  }

  #origin(phase: string): Origin {
    return { who: `from the server to ${this.#options.site}`, phase };
  }

  #forgetSecrets(): void {
    this.#maskSeed = 0n;
    this.#selfSeed = 0n;
    this.#mask = undefined;
  }

  #step<T>(expected: ClientPhase, phase: string, run: () => T): T {
    if (this.#phase !== expected) {
      const was = this.#phase;
      this.abort();
      if (was !== 'stopped' && ORDER.indexOf(was) > ORDER.indexOf(expected)) {
        throw new SecAggError('E_SECAGG_REPLAY', `${this.#options.site} already completed the ${phase} phase of this round`);
      }
      throw new SecAggError('E_SECAGG_PHASE', `${this.#options.site} cannot take a ${phase} message in phase ${was}`);
    }
    try {
      const out = run();
      this.#phase = ORDER[ORDER.indexOf(expected) + 1]!;
      return out;
    } catch (e) {
      this.abort();
      throw e;
    }
  }
}
