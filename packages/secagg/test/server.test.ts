import type { JsonValue } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { toB64 } from '../src/bytes.js';
import { fieldToBytes, SHARE_PRIME } from '../src/shamir.js';
import { SecAggServer } from '../src/server.js';
import { editFrame, flipB64, Harness, plainSum, randomInputs, readFrame, ringConfig } from './helpers/harness.js';

const code = (c: string) => expect.objectContaining({ code: c });

describe('SecAggServer refuses what it must not accept', () => {
  it('refuses a site not in the round (E_SECAGG_UNKNOWN_SITE), a second advertisement (E_SECAGG_REPLAY) and a bad signature (E_SECAGG_SIGNATURE)', () => {
    const h = new Harness(ringConfig(4));
    const adv = h.clients.get('site-00')!.start(h.setup);
    expect(() => h.server.acceptKeys('site-99', adv)).toThrow(code('E_SECAGG_UNKNOWN_SITE'));
    // Another site relaying site-00's advertisement as its own: the signature binds the name.
    expect(() => h.server.acceptKeys('site-01', adv)).toThrow(code('E_SECAGG_SIGNATURE'));
    h.server.acceptKeys('site-00', adv);
    expect(() => h.server.acceptKeys('site-00', adv)).toThrow(code('E_SECAGG_REPLAY'));
    const forged = editFrame(h.clients.get('site-02')!.start(h.setup), (header) => {
      header.commitment = flipB64(header.commitment as string);
    });
    expect(() => h.server.acceptKeys('site-02', forged)).toThrow(code('E_SECAGG_SIGNATURE'));
  });

  it('refuses keys another site already advertised (E_SECAGG_BAD_KEY)', () => {
    const config = ringConfig(4);
    const h = new Harness(config);
    const first = h.clients.get('site-00')!.start(h.setup);
    h.server.acceptKeys('site-00', first);
    const server = new SecAggServer(config); // no verifier: the key check alone
    server.acceptKeys('site-00', first);
    const copy = editFrame(h.clients.get('site-01')!.start(h.setup), (header) => {
      header.maskKey = readFrame(first).header.maskKey!;
    });
    expect(() => server.acceptKeys('site-01', copy)).toThrow(code('E_SECAGG_BAD_KEY'));
  });

  it('refuses messages of another phase (E_SECAGG_PHASE) and messages from another round (E_SECAGG_CONTEXT)', () => {
    const h = new Harness(ringConfig(4));
    const other = new Harness(ringConfig(4, { round: 9 }), h.identities);
    const advOther = other.clients.get('site-00')!.start(other.setup);
    expect(() => h.server.acceptKeys('site-00', advOther)).toThrow(code('E_SECAGG_CONTEXT'));
    expect(() => h.server.acceptShares('site-00', advOther)).toThrow(code('E_SECAGG_PHASE'));
    expect(() => h.server.finish()).toThrow(code('E_SECAGG_PHASE'));
  });

  it('refuses shares addressed to a non-neighbour (E_SECAGG_UNKNOWN_SITE) or missing a neighbour (E_SECAGG_MALFORMED)', () => {
    const config = ringConfig(6, { degree: 2, threshold: 2, minSurvivors: 2 });
    const h = new Harness(config);
    const keys = h.keys();
    const shares = h.clients.get('site-00')!.receiveKeys(keys.get('site-00')!);
    const stranger = config.sites.find((s) => s !== 'site-00' && !(readFrame(shares).header.shares as Array<{ to: string }>).some((x) => x.to === s))!;
    const misrouted = editFrame(shares, (header) => {
      (header.shares as Array<{ to: string }>)[0]!.to = stranger;
    });
    expect(() => h.server.acceptShares('site-00', misrouted)).toThrow(code('E_SECAGG_UNKNOWN_SITE'));
    const missing = editFrame(shares, (header) => {
      header.shares = (header.shares as JsonValue[]).slice(1);
    });
    expect(() => h.server.acceptShares('site-00', missing)).toThrow(code('E_SECAGG_MALFORMED'));
    h.server.acceptShares('site-00', shares);
  });

  it('refuses a masked input that is truncated (E_SECAGG_MALFORMED), oversized (E_SECAGG_TOO_LARGE) or replayed (E_SECAGG_REPLAY), and the sum stays right', () => {
    const config = ringConfig(4, { bits: 12, length: 40 });
    const h = new Harness(config);
    const inputs = randomInputs(config);
    const relayed = h.shares(h.keys());
    const masked = new Map([...relayed].map(([site, bytes]) => [site, h.clients.get(site)!.receiveShares(bytes, inputs.get(site)!)]));
    const one = masked.get('site-00')!;
    expect(() => h.server.acceptMaskedInput('site-00', one.subarray(0, one.length - 1))).toThrow(code('E_SECAGG_MALFORMED'));
    const big = new Uint8Array(one.length + 64);
    big.set(one);
    expect(() => h.server.acceptMaskedInput('site-00', big)).toThrow(code('E_SECAGG_TOO_LARGE'));
    for (const [site, bytes] of masked) h.server.acceptMaskedInput(site, bytes);
    expect(() => h.server.acceptMaskedInput('site-00', one)).toThrow(code('E_SECAGG_REPLAY'));
    h.unmask(h.consistency(h.server.closeMaskedInputs()));
    expect(h.server.finish().sum).toEqual(plainSum(config, inputs, config.sites));
  });

  it('refuses a reveal of the share the survivor set does not call for (E_SECAGG_MALFORMED) or of a site the sender does not hold (E_SECAGG_UNKNOWN_SITE)', () => {
    const config = ringConfig(5, { threshold: 3, minSurvivors: 3 });
    const h = new Harness(config);
    const requests = h.consistency(h.masked(h.shares(h.keys()), randomInputs(config)));
    const reveal = h.clients.get('site-00')!.receiveUnmask(requests.get('site-00')!);
    const wrongKind = editFrame(reveal, (header) => {
      const self = header.selfMask as Array<{ of: string; share: string }>;
      header.maskKey = [self[1]!];
      header.selfMask = [self[0]!, ...self.slice(2)];
    });
    expect(() => h.server.acceptUnmask('site-00', wrongKind)).toThrow(code('E_SECAGG_MALFORMED'));
    const foreign = editFrame(reveal, (header) => {
      (header.selfMask as Array<{ of: string }>)[1]!.of = 'site-99';
    });
    expect(() => h.server.acceptUnmask('site-00', foreign)).toThrow(code('E_SECAGG_UNKNOWN_SITE'));
    h.server.acceptUnmask('site-00', reveal);
    expect(() => h.server.acceptUnmask('site-00', reveal)).toThrow(code('E_SECAGG_REPLAY'));
  });

  it('outvotes one false share when more than t arrive, and fails on a false share it cannot outvote (E_SECAGG_SHARE_INVALID) instead of producing a wrong sum', () => {
    for (const holders of [5, 3]) {
      const config = ringConfig(5, { threshold: 3, minSurvivors: 3 });
      const h = new Harness(config);
      const inputs = randomInputs(config);
      const requests = h.consistency(h.masked(h.shares(h.keys()), inputs));
      for (const [site, bytes] of requests) {
        let reveal = h.clients.get(site)!.receiveUnmask(bytes);
        // site-00 lies about the first share the server uses (its own self-mask share, x = 1). With all five
        // holders revealing, the other four outvote it; with only three, the lie cannot be outvoted.
        if (site === 'site-00') {
          reveal = editFrame(reveal, (header) => {
            (header.selfMask as Array<{ share: string }>)[0]!.share = toB64(fieldToBytes(SHARE_PRIME - 5n));
          });
        }
        if (holders === 3 && (site === 'site-03' || site === 'site-04')) continue;
        h.server.acceptUnmask(site, reveal);
      }
      if (holders === 5) expect(h.server.finish().sum).toEqual(plainSum(config, inputs, config.sites));
      else expect(() => h.server.finish()).toThrow(code('E_SECAGG_SHARE_INVALID'));
    }
  });

  it('fails the round when too few sites remain at the end of a phase (E_SECAGG_TOO_FEW)', () => {
    const h = new Harness(ringConfig(5, { threshold: 4, minSurvivors: 4 }));
    for (const site of ['site-00', 'site-01', 'site-02']) h.server.acceptKeys(site, h.clients.get(site)!.start(h.setup));
    expect(() => h.server.closeKeys()).toThrow(code('E_SECAGG_TOO_FEW'));
    expect(h.server.phase).toBe('failed');
  });
});

describe('SecAggServer and distributed DP', () => {
  it('fails the round before unmasking when fewer masked inputs arrive than the noise counts on (E_SECAGG_DP_TOO_FEW)', () => {
    const base = ringConfig(6, { threshold: 4, minSurvivors: 4, length: 8 });
    const config = { ...base, encoding: { dimension: 8, clip: 1, granularity: 1e-3, rotation: 'none' as const, beta: 0, noise: { stddev: 100, honestSites: 6 } } };
    const h = new Harness(config);
    expect(() => h.masked(h.shares(h.keys()), randomInputs(config), ['site-05'])).toThrow(code('E_SECAGG_DP_TOO_FEW'));
    expect(h.server.phase).toBe('failed');
  });
});
