import { decodeFrame, encodeFrame, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { SecAggClient } from '../../src/client.js';
import { checkRoundConfig, type RoundConfig } from '../../src/config.js';
import { PROTOCOL } from '../../src/crypto.js';
import { SecAggServer } from '../../src/server.js';
import { testIdentities } from '../../src/testing.js';

/** Site names site-00 .. site-(n-1), sorted as the configuration needs. */
export function siteNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `site-${String(i).padStart(2, '0')}`);
}

/** A ring-only configuration (no encoding). */
export function ringConfig(n: number, overrides: Partial<RoundConfig> = {}): RoundConfig {
  const degree = overrides.degree ?? n - 1;
  const threshold = overrides.threshold ?? Math.floor((degree + 1) / 2) + 1;
  return checkRoundConfig({
    protocol: PROTOCOL,
    job: 'job-1',
    round: 3,
    sites: siteNames(n),
    degree,
    threshold,
    minSurvivors: threshold,
    bits: 16,
    length: 64,
    encoding: null,
    ...overrides,
  });
}

/** The header of a frame as plain JSON, and its payload. */
export function readFrame(bytes: Uint8Array): { header: Record<string, JsonValue>; payload: Uint8Array } {
  const frame = decodeFrame(bytes, z.record(z.string(), z.any()), { maxHeaderBytes: 1 << 24, maxBytes: 1 << 30 });
  return { header: frame.header as Record<string, JsonValue>, payload: frame.payload };
}

/** Re-encodes a frame after `edit` changed its header (tests of tampering). */
export function editFrame(bytes: Uint8Array, edit: (header: Record<string, JsonValue>) => void, payload?: Uint8Array): Uint8Array {
  const frame = readFrame(bytes);
  edit(frame.header);
  return encodeFrame(frame.header, payload ?? frame.payload);
}

/** Flips one bit of a base64url string's decoded bytes. */
export function flipB64(text: string, byte = 0): string {
  const bytes = Buffer.from(text, 'base64url');
  bytes[byte]! ^= 1;
  return bytes.toString('base64url');
}

/**
 * A round run phase by phase, with every message kept, so tests can stop anywhere, alter a message, or deliver
 * it twice.
 */
export class Harness {
  readonly config: RoundConfig;
  readonly identities: ReturnType<typeof testIdentities>;
  readonly server: SecAggServer;
  readonly clients: Map<string, SecAggClient>;
  readonly setup: Uint8Array;
  readonly sent = new Map<string, Map<string, Uint8Array>>();
  readonly received = new Map<string, Map<string, Uint8Array>>();

  constructor(config: RoundConfig, identities = testIdentities(config.sites)) {
    this.config = config;
    this.identities = identities;
    this.server = new SecAggServer(config, { verifier: identities.verifier });
    this.clients = new Map(config.sites.map((site) => [site, this.client(site)]));
    this.setup = this.server.setupMessage();
  }

  /** A fresh client for `site` in this round. */
  client(site: string, job = this.config.job, round = this.config.round): SecAggClient {
    return new SecAggClient({ site, job, round, signer: this.identities.signers.get(site)!, verifier: this.identities.verifier });
  }

  #keep(map: Map<string, Map<string, Uint8Array>>, phase: string, site: string, bytes: Uint8Array): Uint8Array {
    if (!map.has(phase)) map.set(phase, new Map());
    map.get(phase)!.set(site, bytes);
    return bytes;
  }

  /** Phase 0 for every site not in `skip`; returns the keys messages the server sends. */
  keys(skip: readonly string[] = []): Map<string, Uint8Array> {
    for (const [site, c] of this.clients) {
      if (skip.includes(site)) continue;
      this.server.acceptKeys(site, this.#keep(this.sent, 'keys', site, c.start(this.setup)));
    }
    const out = this.server.closeKeys();
    for (const [site, bytes] of out) this.#keep(this.received, 'keys', site, bytes);
    return out;
  }

  shares(keys: Map<string, Uint8Array>, skip: readonly string[] = []): Map<string, Uint8Array> {
    for (const [site, bytes] of keys) {
      if (skip.includes(site)) continue;
      this.server.acceptShares(site, this.#keep(this.sent, 'shares', site, this.clients.get(site)!.receiveKeys(bytes)));
    }
    const out = this.server.closeShares();
    for (const [site, bytes] of out) this.#keep(this.received, 'shares', site, bytes);
    return out;
  }

  masked(relayed: Map<string, Uint8Array>, inputs: ReadonlyMap<string, Uint32Array>, skip: readonly string[] = []): Map<string, Uint8Array> {
    for (const [site, bytes] of relayed) {
      if (skip.includes(site)) continue;
      this.server.acceptMaskedInput(site, this.#keep(this.sent, 'masked', site, this.clients.get(site)!.receiveShares(bytes, inputs.get(site)!)));
    }
    const out = this.server.closeMaskedInputs();
    for (const [site, bytes] of out) this.#keep(this.received, 'survivors', site, bytes);
    return out;
  }

  consistency(survivors: Map<string, Uint8Array>, skip: readonly string[] = []): Map<string, Uint8Array> {
    for (const [site, bytes] of survivors) {
      if (skip.includes(site)) continue;
      this.server.acceptConsistency(site, this.#keep(this.sent, 'consistency', site, this.clients.get(site)!.receiveSurvivors(bytes)));
    }
    const out = this.server.closeConsistency();
    for (const [site, bytes] of out) this.#keep(this.received, 'unmask', site, bytes);
    return out;
  }

  unmask(requests: Map<string, Uint8Array>, skip: readonly string[] = []): void {
    for (const [site, bytes] of requests) {
      if (skip.includes(site)) continue;
      this.server.acceptUnmask(site, this.#keep(this.sent, 'reveal', site, this.clients.get(site)!.receiveUnmask(bytes)));
    }
  }
}

/** Random ring inputs of the round's length, below 2^bits. */
export function randomInputs(config: RoundConfig, seed = 1): Map<string, Uint32Array> {
  let s = seed >>> 0;
  const mask = config.bits === 32 ? 0xffffffff : 2 ** config.bits - 1;
  return new Map(
    config.sites.map((site) => {
      const v = new Uint32Array(config.length);
      for (let i = 0; i < v.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        v[i] = (s & mask) >>> 0;
      }
      return [site, v];
    }),
  );
}

/** The plain sum mod 2^bits of the inputs of `sites`. */
export function plainSum(config: RoundConfig, inputs: ReadonlyMap<string, Uint32Array>, sites: readonly string[]): Uint32Array {
  const sum = new Uint32Array(config.length);
  for (const site of sites) {
    const x = inputs.get(site)!;
    for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! + x[i]!;
  }
  const mask = config.bits === 32 ? 0xffffffff : 2 ** config.bits - 1;
  for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! & mask;
  return sum;
}
