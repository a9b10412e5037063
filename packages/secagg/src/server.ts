import { SecAggError } from '@flare/core';
import { equalBytes, toB64 } from './bytes.js';
import { openRound, type Round, type RoundConfig } from './config.js';
import { agree, x25519FromSeed, x25519PublicKey } from './crypto.js';
import { adjacent, neighboursOf } from './graph.js';
import { headerLimits } from './limits.js';
import { binary, decodeMessage, encodeMessage, SEALED_SHARE_BYTES, type Origin } from './messages.js';
import type { SecAggVerifier } from './participants.js';
import { addMask } from './prg.js';
import { addPacked, packedBytes, ringMask } from './ring.js';
import { combine, FIELD_BYTES, fieldFromBytes, fieldToBytes, type Share } from './shamir.js';
import { writeBitmap } from './survivors.js';
import { advertiseTranscript, pairMaskKey, selfMaskCommitment, selfMaskKey, survivorsTranscript } from './transcripts.js';

/** Options of {@link SecAggServer}. */
export interface SecAggServerOptions {
  /**
   * Verifies sites' signatures at the server too, so a bad advertisement or consistency signature is refused on
   * arrival (E_SECAGG_SIGNATURE) instead of making honest sites stop later. Sites verify regardless.
   */
  readonly verifier?: SecAggVerifier;
}

/** Where a {@link SecAggServer} is: the phase whose messages it accepts. */
export type ServerPhase = 'keys' | 'shares' | 'masked' | 'consistency' | 'unmask' | 'done' | 'failed';

/** The outcome of a round. */
export interface SecAggResult {
  /** The sum of the surviving sites' inputs in Z_{2^bits} (decodeSum turns an encoded sum back into floats). */
  readonly sum: Uint32Array;
  /** Sites whose inputs are in the sum, in the round's order. */
  readonly summed: readonly string[];
  /** Sites that dropped, by the phase they did not complete. */
  readonly dropped: {
    readonly keys: readonly string[];
    readonly shares: readonly string[];
    readonly maskedInput: readonly string[];
    readonly consistency: readonly string[];
    readonly unmask: readonly string[];
  };
}

interface Advertised {
  readonly channelKey: Uint8Array;
  readonly maskKey: Uint8Array;
  readonly commitment: Uint8Array;
  readonly signature: Uint8Array;
}

/**
 * The server's side of a SecAgg+ round, as a state machine: `accept*` takes one site's message (the site named
 * by the authenticated channel, never by the message), `close*` ends a phase and returns the message for each
 * remaining site, `finish` unmasks the sum. The server relays what it cannot read (encrypted shares), keeps
 * O(length) memory for the inputs (each masked input is added to one running sum on arrival), and removes the
 * masks with the shares the survivors reveal: self masks of the sites in the sum, pairwise masks of the sites
 * that dropped after sharing.
 *
 * A refused message throws and changes nothing: the runtime treats its sender as dropped. A phase that ends with
 * fewer sites than the round needs throws E_SECAGG_TOO_FEW (or E_SECAGG_DP_TOO_FEW) and fails the round.
 *
 * @example
 * ```ts
 * const server = new SecAggServer(config, { verifier });
 * const setup = server.setupMessage();             // to every site
 * for (const [site, bytes] of advertisements) server.acceptKeys(site, bytes);
 * const keys = server.closeKeys();                 // Map site -> bytes
 * // ... acceptShares / closeShares, acceptMaskedInput / closeMaskedInputs,
 * //     acceptConsistency / closeConsistency, acceptUnmask ...
 * const { sum, summed } = server.finish();
 * ```
 */
export class SecAggServer {
  readonly #round: Round;
  readonly #verifier: SecAggVerifier | undefined;
  #phase: ServerPhase = 'keys';
  readonly #advertised = new Map<number, Advertised>();
  /** Every advertised public key, base64url: a repeated key is refused in O(1), not by scanning all sites. */
  readonly #keysSeen = new Set<string>();
  readonly #routes = new Map<number, Map<number, string>>();
  readonly #masked = new Set<number>();
  #sum: Uint32Array;
  #survivorBitmap: Uint8Array | undefined;
  readonly #consistency = new Map<number, string>();
  readonly #selfShares = new Map<number, Share[]>();
  readonly #keyShares = new Map<number, Share[]>();
  readonly #revealed = new Set<number>();

  /**
   * @throws SecAggError E_SECAGG_CONFIG when `config` breaks a protocol rule.
   */
  constructor(config: RoundConfig, options: SecAggServerOptions = {}) {
    this.#round = openRound(config);
    this.#verifier = options.verifier;
    this.#sum = new Uint32Array(this.#round.config.length);
  }

  /** The phase whose messages the server accepts now. */
  get phase(): ServerPhase {
    return this.#phase;
  }

  /** The checked configuration. */
  get config(): RoundConfig {
    return this.#round.config;
  }

  /** The setup message every site receives first (the same bytes for all). */
  setupMessage(): Uint8Array {
    return encodeMessage({ type: 'secagg/setup', config: this.#round.config });
  }

  /**
   * A site's key advertisement.
   *
   * @throws SecAggError E_SECAGG_PHASE, E_SECAGG_UNKNOWN_SITE, E_SECAGG_REPLAY, E_SECAGG_SIGNATURE (with a
   *   verifier), E_SECAGG_BAD_KEY, and the message errors.
   */
  acceptKeys(site: string, advertise: Uint8Array): void {
    const i = this.#expect('keys', site, 'keys');
    if (this.#advertised.has(i)) throw this.#replay(site, 'keys');
    const origin = this.#origin(site, 'keys');
    const { header } = decodeMessage('advertise', advertise, { maxHeaderBytes: headerLimits(this.#round.config).advertise, expectedContext: this.#round.context, origin });
    const entry: Advertised = {
      channelKey: binary(header.channelKey, 32, 'channelKey', origin),
      maskKey: binary(header.maskKey, 32, 'maskKey', origin),
      commitment: binary(header.commitment, 32, 'commitment', origin),
      signature: binary(header.signature, undefined, 'signature', origin),
    };
    if (x25519PublicKey(entry.channelKey) === undefined || x25519PublicKey(entry.maskKey) === undefined || equalBytes(entry.channelKey, entry.maskKey)) {
      throw new SecAggError('E_SECAGG_BAD_KEY', `${site} advertised keys that are not two distinct X25519 public keys`);
    }
    if (this.#keysSeen.has(header.channelKey) || this.#keysSeen.has(header.maskKey)) {
      throw new SecAggError('E_SECAGG_BAD_KEY', `${site} advertised a key another site already uses`);
    }
    const transcript = advertiseTranscript(this.#round.context, site, entry.channelKey, entry.maskKey, entry.commitment);
    if (this.#verifier !== undefined && !this.#verifier.verify(site, transcript, entry.signature)) {
      throw new SecAggError('E_SECAGG_SIGNATURE', `the keys ${site} advertised do not carry its valid signature`);
    }
    this.#advertised.set(i, entry);
    this.#keysSeen.add(header.channelKey).add(header.maskKey);
  }

  /**
   * Ends the key phase: each site that advertised gets its neighbours' advertisements.
   *
   * @throws SecAggError E_SECAGG_TOO_FEW.
   */
  closeKeys(): Map<string, Uint8Array> {
    this.#close('keys', this.#advertised.size);
    const { config, graph, context } = this.#round;
    const out = new Map<string, Uint8Array>();
    for (const i of this.#advertised.keys()) {
      const neighbours = neighboursOf(graph, i)
        .filter((j) => this.#advertised.has(j))
        .map((j) => {
          const a = this.#advertised.get(j)!;
          return { site: config.sites[j]!, channelKey: toB64(a.channelKey), maskKey: toB64(a.maskKey), commitment: toB64(a.commitment), signature: toB64(a.signature) };
        });
      out.set(config.sites[i]!, encodeMessage({ type: 'secagg/keys', context: toB64(context), neighbours }));
    }
    this.#phase = 'shares';
    return out;
  }

  /**
   * A site's encrypted shares, one for each neighbour that advertised (exactly those).
   *
   * @throws SecAggError E_SECAGG_PHASE, E_SECAGG_UNKNOWN_SITE, E_SECAGG_REPLAY, and the message errors.
   */
  acceptShares(site: string, shares: Uint8Array): void {
    const i = this.#expect('shares', site, 'shares');
    if (!this.#advertised.has(i)) throw new SecAggError('E_SECAGG_PHASE', `${site} sent shares but advertised no keys in this round`);
    if (this.#routes.has(i)) throw this.#replay(site, 'shares');
    const { config, graph, context } = this.#round;
    const origin = this.#origin(site, 'shares');
    const { header } = decodeMessage('shares', shares, { maxHeaderBytes: headerLimits(config).shares, expectedContext: context, origin });
    const routes = new Map<number, string>();
    for (const [k, entry] of header.shares.entries()) {
      const j = this.#round.index.get(entry.to);
      if (j === undefined || !adjacent(graph, i, j) || !this.#advertised.has(j)) {
        throw new SecAggError('E_SECAGG_UNKNOWN_SITE', `${site} addressed a share to ${entry.to}, which is not one of its neighbours that advertised keys`);
      }
      if (routes.has(j)) throw new SecAggError('E_SECAGG_MALFORMED', `${site} addressed two shares to ${entry.to}`);
      binary(entry.sealed, SEALED_SHARE_BYTES, `shares.${k}.sealed`, origin);
      routes.set(j, entry.sealed);
    }
    const expected = neighboursOf(graph, i).filter((j) => this.#advertised.has(j)).length;
    if (routes.size !== expected) {
      throw new SecAggError('E_SECAGG_MALFORMED', `${site} sent ${routes.size} shares; it has ${expected} neighbours that advertised keys`);
    }
    this.#routes.set(i, routes);
  }

  /**
   * Ends the share phase: each site that shared gets the shares addressed to it by the other sites that shared.
   *
   * @throws SecAggError E_SECAGG_TOO_FEW.
   */
  closeShares(): Map<string, Uint8Array> {
    this.#close('shares', this.#routes.size);
    const { config, context } = this.#round;
    const inbox = new Map<number, Array<{ from: string; sealed: string }>>();
    for (const i of this.#routes.keys()) inbox.set(i, []);
    for (const [from, routes] of this.#routes) {
      for (const [to, sealed] of routes) inbox.get(to)?.push({ from: config.sites[from]!, sealed });
    }
    const out = new Map<string, Uint8Array>();
    for (const [to, shares] of inbox) out.set(config.sites[to]!, encodeMessage({ type: 'secagg/relayed-shares', context: toB64(context), shares }));
    this.#phase = 'masked';
    return out;
  }

  /**
   * A site's masked input, added to the running sum at once.
   *
   * @throws SecAggError E_SECAGG_PHASE, E_SECAGG_UNKNOWN_SITE, E_SECAGG_REPLAY, and the message errors
   *   (a payload of any other length than the round's is E_SECAGG_MALFORMED or E_SECAGG_TOO_LARGE).
   */
  acceptMaskedInput(site: string, masked: Uint8Array): void {
    const i = this.#expect('masked', site, 'masked input');
    if (!this.#routes.has(i)) throw new SecAggError('E_SECAGG_PHASE', `${site} sent a masked input but shared no keys in this round`);
    if (this.#masked.has(i)) throw this.#replay(site, 'masked input');
    const { config, context } = this.#round;
    const origin = this.#origin(site, 'masked input');
    const bytes = packedBytes(config.length, config.bits);
    const { payload } = decodeMessage('masked', masked, { maxHeaderBytes: headerLimits(config).masked, maxPayloadBytes: bytes, expectedContext: context, origin });
    // addPacked checks the length and the padding before it adds anything: a refused input leaves the sum as it was.
    if (!addPacked(this.#sum, payload, config.bits)) {
      throw new SecAggError('E_SECAGG_MALFORMED', `the masked input ${origin.who} has ${payload.length} bytes; the round's is ${bytes} bytes of ${config.bits}-bit elements with zero padding`);
    }
    this.#masked.add(i);
  }

  /**
   * Ends the masked-input phase: each site whose input is in the sum gets the survivor set to sign.
   *
   * @throws SecAggError E_SECAGG_TOO_FEW, E_SECAGG_DP_TOO_FEW.
   */
  closeMaskedInputs(): Map<string, Uint8Array> {
    const noise = this.#round.config.encoding?.noise ?? null;
    if (this.#phase === 'masked' && noise !== null && this.#masked.size < noise.honestSites) {
      this.#phase = 'failed';
      throw new SecAggError('E_SECAGG_DP_TOO_FEW', `${this.#masked.size} masked inputs arrived; the round's noise counts on ${noise.honestSites} honest sites`);
    }
    this.#close('masked', this.#masked.size);
    const { config, context } = this.#round;
    this.#survivorBitmap = writeBitmap(this.#masked, config.sites.length);
    const message = encodeMessage({ type: 'secagg/survivors', context: toB64(context), survivors: toB64(this.#survivorBitmap) });
    const out = new Map<string, Uint8Array>();
    for (const i of this.#masked) out.set(config.sites[i]!, message);
    this.#phase = 'consistency';
    return out;
  }

  /**
   * A site's signature over the survivor set.
   *
   * @throws SecAggError E_SECAGG_PHASE, E_SECAGG_UNKNOWN_SITE, E_SECAGG_REPLAY, E_SECAGG_SIGNATURE (with a
   *   verifier), and the message errors.
   */
  acceptConsistency(site: string, consistency: Uint8Array): void {
    const i = this.#expect('consistency', site, 'consistency');
    if (!this.#masked.has(i)) throw new SecAggError('E_SECAGG_PHASE', `${site} signed a survivor set it is not in`);
    if (this.#consistency.has(i)) throw this.#replay(site, 'consistency');
    const { config, context } = this.#round;
    const origin = this.#origin(site, 'consistency');
    const { header } = decodeMessage('consistency', consistency, { maxHeaderBytes: headerLimits(config).consistency, expectedContext: context, origin });
    const signature = binary(header.signature, undefined, 'signature', origin);
    if (this.#verifier !== undefined && !this.#verifier.verify(site, survivorsTranscript(context, site, this.#survivorBitmap!), signature)) {
      throw new SecAggError('E_SECAGG_SIGNATURE', `${site}'s consistency signature does not verify over the survivor set`);
    }
    this.#consistency.set(i, header.signature);
  }

  /**
   * Ends the consistency check: each site that signed gets its surviving neighbours' signatures.
   *
   * @throws SecAggError E_SECAGG_TOO_FEW.
   */
  closeConsistency(): Map<string, Uint8Array> {
    this.#close('consistency', this.#consistency.size, this.#round.config.threshold);
    const { config, graph, context } = this.#round;
    const out = new Map<string, Uint8Array>();
    for (const i of this.#consistency.keys()) {
      const signatures = neighboursOf(graph, i)
        .filter((j) => this.#consistency.has(j))
        .map((j) => ({ site: config.sites[j]!, signature: this.#consistency.get(j)! }));
      out.set(config.sites[i]!, encodeMessage({ type: 'secagg/unmask', context: toB64(context), signatures }));
    }
    this.#phase = 'unmask';
    return out;
  }

  /**
   * A site's revealed shares: for itself and each neighbour whose shares it received, the self-mask share of
   * a survivor or the mask-key share of a site that dropped, exactly as the survivor set implies.
   *
   * @throws SecAggError E_SECAGG_PHASE, E_SECAGG_UNKNOWN_SITE, E_SECAGG_REPLAY, E_SECAGG_MALFORMED (shares that
   *   do not match the survivor set), and the message errors.
   */
  acceptUnmask(site: string, reveal: Uint8Array): void {
    const i = this.#expect('unmask', site, 'unmask');
    if (!this.#consistency.has(i)) throw new SecAggError('E_SECAGG_PHASE', `${site} revealed shares but did not sign the survivor set`);
    if (this.#revealed.has(i)) throw this.#replay(site, 'unmask');
    const { config, graph, context } = this.#round;
    const origin = this.#origin(site, 'unmask');
    const { header } = decodeMessage('reveal', reveal, { maxHeaderBytes: headerLimits(config).reveal, expectedContext: context, origin });
    // Exactly the shares this site holds: its own and those of its neighbours that shared with it.
    const holds = new Set([i, ...neighboursOf(graph, i).filter((j) => this.#routes.get(j)?.has(i) === true)]);
    const parse = (entries: ReadonlyArray<{ of: string; share: string }>, survived: boolean, field: string): Array<[number, Share]> =>
      entries.map((entry, k) => {
        const of = this.#round.index.get(entry.of);
        if (of === undefined || !holds.has(of)) throw new SecAggError('E_SECAGG_UNKNOWN_SITE', `${site} revealed a share of ${entry.of}, which it does not hold`);
        if (this.#masked.has(of) !== survived) {
          throw new SecAggError('E_SECAGG_MALFORMED', `${site} revealed the ${field} share of ${entry.of}, which the survivor set does not call for`);
        }
        const y = fieldFromBytes(binary(entry.share, FIELD_BYTES, `${field}.${k}.share`, origin));
        if (y === undefined) throw new SecAggError('E_SECAGG_MALFORMED', `${site} revealed a share of ${entry.of} that is not a field element`);
        return [of, { x: i + 1, y }];
      });
    const selfShares = parse(header.selfMask, true, 'selfMask');
    const keyShares = parse(header.maskKey, false, 'maskKey');
    const covered = new Set([...selfShares, ...keyShares].map(([of]) => of));
    if (covered.size !== selfShares.length + keyShares.length || covered.size !== holds.size) {
      throw new SecAggError('E_SECAGG_MALFORMED', `${site} revealed ${selfShares.length + keyShares.length} shares; it holds one each of ${holds.size} sites`);
    }
    for (const [of, share] of selfShares) push(this.#selfShares, of, share);
    for (const [of, share] of keyShares) push(this.#keyShares, of, share);
    this.#revealed.add(i);
  }

  /**
   * Unmasks the sum: rebuilds each summed site's self-mask seed and each dropped site's mask key from at least
   * `threshold` shares, checks them against what the site committed to, and removes their masks.
   *
   * @throws SecAggError E_SECAGG_BELOW_THRESHOLD, E_SECAGG_SHARE_INVALID, E_SECAGG_PHASE.
   */
  finish(): SecAggResult {
    if (this.#phase !== 'unmask') throw new SecAggError('E_SECAGG_PHASE', `the round cannot finish in phase ${this.#phase}`);
    const { config, graph, context } = this.#round;
    this.#phase = 'failed';
    const sum = this.#sum;
    for (const u of this.#masked) {
      const name = config.sites[u]!;
      const commitment = this.#advertised.get(u)!.commitment;
      const seed = this.#rebuild(this.#selfShares.get(u) ?? [], name, 'self-mask seed', (v) => equalBytes(selfMaskCommitment(v, context, name), commitment));
      addMask(sum, selfMaskKey(seed, context, name), -1);
    }
    for (const u of this.#routes.keys()) {
      if (this.#masked.has(u)) continue;
      const name = config.sites[u]!;
      const advertised = this.#advertised.get(u)!.maskKey;
      const seed = this.#rebuild(this.#keyShares.get(u) ?? [], name, 'mask-key seed', (v) =>
        equalBytes(x25519FromSeed(fieldToBytes(v), context, name, 'mask').publicKey, advertised),
      );
      const key = x25519FromSeed(fieldToBytes(seed), context, name, 'mask');
      // Every summed neighbour w of u received u's shares (u shared with all its neighbours that advertised), so
      // w added its pairwise mask with u: remove it.
      for (const w of neighboursOf(graph, u)) {
        if (!this.#masked.has(w)) continue;
        const shared = agree(key.privateKey, x25519PublicKey(this.#advertised.get(w)!.maskKey)!)!;
        const low = Math.min(u, w);
        addMask(sum, pairMaskKey(shared, context, config.sites[low]!, config.sites[low === u ? w : u]!), w < u ? -1 : 1);
      }
    }
    if (config.bits < 32) {
      const mask = ringMask(config.bits);
      for (let k = 0; k < sum.length; k++) sum[k] = sum[k]! & mask;
    }
    const names = (set: Iterable<number>): string[] => [...set].sort((a, b) => a - b).map((k) => config.sites[k]!);
    const all = config.sites.map((_, k) => k);
    const result: SecAggResult = {
      sum,
      summed: names(this.#masked),
      dropped: {
        keys: names(all.filter((k) => !this.#advertised.has(k))),
        shares: names([...this.#advertised.keys()].filter((k) => !this.#routes.has(k))),
        maskedInput: names([...this.#routes.keys()].filter((k) => !this.#masked.has(k))),
        consistency: names([...this.#masked].filter((k) => !this.#consistency.has(k))),
        unmask: names([...this.#consistency.keys()].filter((k) => !this.#revealed.has(k))),
      },
    };
    this.#sum = new Uint32Array(0);
    this.#phase = 'done';
    return result;
  }

  /**
   * The secret behind `shares`, checked against what the site committed to (`valid`): from the first t shares;
   * if that fails and more than t arrived, from each set that leaves one share out, so one false share among
   * them is outvoted (a false share beyond the first t is never used). Shares beyond t are not otherwise
   * checked: the commitment decides, at one field inversion per attempt.
   */
  #rebuild(shares: readonly Share[], site: string, what: string, valid: (secret: bigint) => boolean): bigint {
    const t = this.#round.config.threshold;
    if (shares.length < t) {
      throw new SecAggError('E_SECAGG_BELOW_THRESHOLD', `${shares.length} shares of ${site}'s ${what} arrived; ${t} are needed`);
    }
    const first = combine(shares.slice(0, t));
    if (valid(first)) return first;
    if (shares.length > t) {
      for (let skip = 0; skip < t; skip++) {
        const secret = combine([...shares.slice(0, skip), ...shares.slice(skip + 1, t + 1)]);
        if (valid(secret)) return secret;
      }
    }
    throw new SecAggError('E_SECAGG_SHARE_INVALID', `the ${what} rebuilt for ${site} does not match what it committed to: a revealed share was false`);
  }

  #expect(phase: ServerPhase, site: string, what: string): number {
    if (this.#phase !== phase) throw new SecAggError('E_SECAGG_PHASE', `${what} message from ${site} arrived while the round is in phase ${this.#phase}`);
    const i = this.#round.index.get(site);
    if (i === undefined) throw new SecAggError('E_SECAGG_UNKNOWN_SITE', `${what} message from ${site}, which is not in the round`);
    return i;
  }

  #replay(site: string, what: string): SecAggError {
    return new SecAggError('E_SECAGG_REPLAY', `${site} already sent its ${what} message in this round`);
  }

  #close(phase: ServerPhase, count: number, needed = this.#round.config.minSurvivors): void {
    if (this.#phase !== phase) throw new SecAggError('E_SECAGG_PHASE', `the ${phase} phase cannot end in phase ${this.#phase}`);
    if (count < needed) {
      this.#phase = 'failed';
      throw new SecAggError('E_SECAGG_TOO_FEW', `${count} sites completed the ${phase} phase; the round needs ${needed}`);
    }
  }

  #origin(site: string, phase: string): Origin {
    return { who: `from ${site}`, phase };
  }
}

function push(map: Map<number, Share[]>, key: number, share: Share): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [share]);
  else list.push(share);
}
