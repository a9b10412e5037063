import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { SecAggError } from '@flare/core';
import { SecAggClient } from './client.js';
import type { RoundConfig } from './config.js';
import type { SecAggSigner, SecAggVerifier } from './participants.js';
import { SecAggServer, type SecAggResult } from './server.js';

// Test and simulation helpers, exported as @flare/secagg/testing: Ed25519 identities for many sites and a whole
// round run in one process, with dropouts at chosen phases. Not for production: real identities come from the
// sites' startup kits.

/** Ed25519 identities for `sites`: a signer per site and one verifier that knows every public key. */
export function testIdentities(sites: readonly string[]): { signers: Map<string, SecAggSigner>; verifier: SecAggVerifier } {
  const publicKeys = new Map<string, KeyObject>();
  const signers = new Map<string, SecAggSigner>();
  for (const site of sites) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    publicKeys.set(site, publicKey);
    signers.set(site, { sign: (message) => new Uint8Array(sign(null, message, privateKey)) });
  }
  const verifier: SecAggVerifier = {
    verify(site, message, signature) {
      const key = publicKeys.get(site);
      return key !== undefined && verify(null, message, key, signature);
    },
  };
  return { signers, verifier };
}

/** The phases a simulated site can drop out before. */
export type DropPhase = 'keys' | 'shares' | 'maskedInput' | 'consistency' | 'unmask';

/** Options of {@link simulateRound}. */
export interface SimulateRoundOptions {
  readonly config: RoundConfig;
  /** Each site's ring input (length config.length). Sites without an input drop before sending one. */
  readonly inputs: ReadonlyMap<string, Uint32Array>;
  /** Sites that stop before sending their message of a phase. */
  readonly drop?: Partial<Record<DropPhase, readonly string[]>>;
  /** Identities (default: fresh test identities). */
  readonly identities?: { signers: Map<string, SecAggSigner>; verifier: SecAggVerifier };
  /** Called with every message a site sends to the server, by phase (to count bytes or inspect what the server sees). */
  readonly onSend?: (site: string, phase: DropPhase, bytes: Uint8Array) => void;
  /**
   * What a site's refusal does (a SecAggError from its state machine, e.g. too few neighbours left): `throw`
   * (default) ends the simulation with it; `drop` treats the site as dropped, as the runtime does.
   */
  readonly onRefusal?: 'throw' | 'drop';
}

/**
 * Runs one round in this process: every site a {@link SecAggClient}, one {@link SecAggServer}, messages
 * relayed directly. Returns the server's result.
 */
export function simulateRound(options: SimulateRoundOptions): SecAggResult {
  const { config, inputs } = options;
  const identities = options.identities ?? testIdentities(config.sites);
  const dropped = (phase: DropPhase, site: string) => options.drop?.[phase]?.includes(site) === true;
  const server = new SecAggServer(config, { verifier: identities.verifier });
  const clients = new Map(
    config.sites.map((site) => [
      site,
      new SecAggClient({ site, job: config.job, round: config.round, signer: identities.signers.get(site)!, verifier: identities.verifier }),
    ]),
  );
  const setup = server.setupMessage();
  const send = (site: string, phase: DropPhase, make: () => Uint8Array, accept: (site: string, bytes: Uint8Array) => void) => {
    let bytes: Uint8Array;
    try {
      bytes = make();
    } catch (e) {
      if (options.onRefusal === 'drop' && e instanceof SecAggError) return;
      throw e;
    }
    options.onSend?.(site, phase, bytes);
    accept(site, bytes);
  };
  for (const [site, client] of clients) {
    if (dropped('keys', site)) continue;
    send(site, 'keys', () => client.start(setup), (s, b) => server.acceptKeys(s, b));
  }
  for (const [site, bytes] of server.closeKeys()) {
    if (dropped('shares', site)) continue;
    send(site, 'shares', () => clients.get(site)!.receiveKeys(bytes), (s, b) => server.acceptShares(s, b));
  }
  for (const [site, bytes] of server.closeShares()) {
    const input = inputs.get(site);
    if (dropped('maskedInput', site) || input === undefined) continue;
    send(site, 'maskedInput', () => clients.get(site)!.receiveShares(bytes, input), (s, b) => server.acceptMaskedInput(s, b));
  }
  for (const [site, bytes] of server.closeMaskedInputs()) {
    if (dropped('consistency', site)) continue;
    send(site, 'consistency', () => clients.get(site)!.receiveSurvivors(bytes), (s, b) => server.acceptConsistency(s, b));
  }
  for (const [site, bytes] of server.closeConsistency()) {
    if (dropped('unmask', site)) continue;
    send(site, 'unmask', () => clients.get(site)!.receiveUnmask(bytes), (s, b) => server.acceptUnmask(s, b));
  }
  return server.finish();
}
