import { encodeFrame, type JsonValue } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { toB64 } from '../src/bytes.js';
import { SecAggClient } from '../src/client.js';
import { checkRoundConfig, contextDigest } from '../src/config.js';
import { advertiseTranscript, survivorsTranscript } from '../src/transcripts.js';
import { editFrame, flipB64, Harness, randomInputs, readFrame, ringConfig } from './helpers/harness.js';

const code = (c: string) => expect.objectContaining({ code: c });

/** A harness after `phase`, with the messages each site received. */
function upTo(phase: 'keys' | 'shares' | 'survivors' | 'unmask', n = 5, threshold = 4) {
  const config = ringConfig(n, { threshold, minSurvivors: threshold });
  const h = new Harness(config);
  const inputs = randomInputs(config);
  const keys = h.keys();
  if (phase === 'keys') return { h, config, inputs, msg: keys };
  const relayed = h.shares(keys);
  if (phase === 'shares') return { h, config, inputs, msg: relayed };
  const survivors = h.masked(relayed, inputs);
  if (phase === 'survivors') return { h, config, inputs, msg: survivors };
  return { h, config, inputs, msg: h.consistency(survivors) };
}

describe('SecAggClient refuses what it must not accept', () => {
  describe('setup', () => {
    it('refuses a configuration for another job or round (E_SECAGG_CONTEXT)', () => {
      const h = new Harness(ringConfig(4));
      expect(() => h.client('site-00', 'job-1', 4).start(h.setup)).toThrow(code('E_SECAGG_CONTEXT'));
      expect(() => h.client('site-00', 'job-2', 3).start(h.setup)).toThrow(code('E_SECAGG_CONTEXT'));
    });

    it('refuses a round it is not part of, and a configuration that breaks a protocol rule (E_SECAGG_CONFIG)', () => {
      const h = new Harness(ringConfig(4));
      expect(() => h.client('site-99').start(h.setup)).toThrow(code('E_SECAGG_CONFIG'));
      const weak = editFrame(h.setup, (header) => {
        (header.config as { threshold: number }).threshold = 2; // 2t <= k + 1: a server could collect both shares
        (header.config as { minSurvivors: number }).minSurvivors = 2;
      });
      expect(() => h.client('site-00').start(weak)).toThrow(code('E_SECAGG_CONFIG'));
      const unsorted = editFrame(h.setup, (header) => (header.config as { sites: string[] }).sites.reverse());
      expect(() => h.client('site-00').start(unsorted)).toThrow(code('E_SECAGG_CONFIG'));
    });

    it('refuses a truncated setup (E_SECAGG_MALFORMED) and one larger than any round (E_SECAGG_TOO_LARGE)', () => {
      const h = new Harness(ringConfig(4));
      expect(() => h.client('site-00').start(h.setup.subarray(0, h.setup.length - 3))).toThrow(code('E_SECAGG_MALFORMED'));
      expect(() => h.client('site-00').start(new Uint8Array(5 * 1024 * 1024))).toThrow(code('E_SECAGG_TOO_LARGE'));
    });

    it('lets the site refuse a round by its own rules before it makes any key', () => {
      const h = new Harness(ringConfig(4));
      const refuse = new Error('threshold below this site\'s policy');
      const picky = new SecAggClient({
        site: 'site-00', job: 'job-1', round: 3, signer: h.identities.signers.get('site-00')!, verifier: h.identities.verifier,
        accept: () => { throw refuse; },
      });
      expect(() => picky.start(h.setup)).toThrow(refuse);
      expect(picky.phase).toBe('stopped');
    });
  });

  describe('keys', () => {
    it('refuses keys whose signature does not verify (E_SECAGG_SIGNATURE)', () => {
      const { h, msg } = upTo('keys');
      const tampered = editFrame(msg.get('site-00')!, (header) => {
        const entry = (header.neighbours as Array<{ maskKey: string }>)[0]!;
        entry.maskKey = flipB64(entry.maskKey, 5);
      });
      expect(() => h.clients.get('site-00')!.receiveKeys(tampered)).toThrow(code('E_SECAGG_SIGNATURE'));
    });

    it('refuses a listed site that is not a neighbour in this round (E_SECAGG_UNKNOWN_SITE)', () => {
      const { h, msg } = upTo('keys');
      const foreign = editFrame(msg.get('site-00')!, (header) => {
        (header.neighbours as Array<{ site: string }>)[0]!.site = 'site-77';
      });
      expect(() => h.clients.get('site-00')!.receiveKeys(foreign)).toThrow(code('E_SECAGG_UNKNOWN_SITE'));
    });

    it('refuses a low-order key even when its owner signed it, and a key two sites share (E_SECAGG_BAD_KEY)', () => {
      const { h, msg, config } = upTo('keys');
      const context = contextDigest(config);
      const resign = (header: Record<string, unknown>, mutate: (e: Record<string, string>) => void) => {
        const entry = (header.neighbours as Array<Record<string, string>>)[0]!;
        mutate(entry);
        const b = (s: string) => new Uint8Array(Buffer.from(s, 'base64url'));
        const signature = h.identities.signers.get(entry.site!)!.sign(advertiseTranscript(context, entry.site!, b(entry.channelKey!), b(entry.maskKey!), b(entry.commitment!)));
        entry.signature = toB64(signature);
      };
      const lowOrder = editFrame(msg.get('site-00')!, (header) => resign(header, (e) => (e.maskKey = toB64(new Uint8Array(32)))));
      expect(() => h.clients.get('site-00')!.receiveKeys(lowOrder)).toThrow(code('E_SECAGG_BAD_KEY'));
      const copied = editFrame(msg.get('site-01')!, (header) =>
        resign(header, (e) => {
          e.maskKey = (header.neighbours as Array<Record<string, string>>)[1]!.maskKey!;
        }),
      );
      expect(() => h.clients.get('site-01')!.receiveKeys(copied)).toThrow(code('E_SECAGG_BAD_KEY'));
    });

    it('refuses to share with fewer neighbours than the threshold needs (E_SECAGG_TOO_FEW)', () => {
      const { h, msg } = upTo('keys');
      const few = editFrame(msg.get('site-00')!, (header) => {
        header.neighbours = (header.neighbours as JsonValue[]).slice(0, 2);
      });
      expect(() => h.clients.get('site-00')!.receiveKeys(few)).toThrow(code('E_SECAGG_TOO_FEW'));
    });

    it('refuses keys from another round (E_SECAGG_CONTEXT) and a replayed keys message (E_SECAGG_REPLAY)', () => {
      const { h, msg } = upTo('keys');
      const otherRound = editFrame(msg.get('site-00')!, (header) => {
        header.context = toB64(contextDigest(ringConfig(5, { threshold: 4, minSurvivors: 4, round: 2 })));
      });
      expect(() => h.clients.get('site-00')!.receiveKeys(otherRound)).toThrow(code('E_SECAGG_CONTEXT'));
      h.clients.get('site-01')!.receiveKeys(msg.get('site-01')!);
      expect(() => h.clients.get('site-01')!.receiveKeys(msg.get('site-01')!)).toThrow(code('E_SECAGG_REPLAY'));
    });

    it('refuses a keys message far larger than the round allows, unread (E_SECAGG_TOO_LARGE)', () => {
      const { h, msg } = upTo('keys');
      const padded = editFrame(msg.get('site-00')!, (header) => {
        header.padding = 'x'.repeat(200_000);
      });
      expect(() => h.clients.get('site-00')!.receiveKeys(padded)).toThrow(code('E_SECAGG_TOO_LARGE'));
    });

    it('refuses a header with an unknown field (E_SECAGG_MALFORMED) and then refuses everything (E_SECAGG_PHASE)', () => {
      const { h, msg } = upTo('keys');
      const extra = editFrame(msg.get('site-00')!, (header) => {
        header.note = 'hi';
      });
      const client = h.clients.get('site-00')!;
      expect(() => client.receiveKeys(extra)).toThrow(code('E_SECAGG_MALFORMED'));
      expect(client.phase).toBe('stopped');
      expect(() => client.receiveKeys(msg.get('site-00')!)).toThrow(code('E_SECAGG_PHASE'));
    });
  });

  describe('shares', () => {
    it('refuses a share altered by the server (E_SECAGG_TAMPERED)', () => {
      const { h, msg, inputs } = upTo('shares');
      const tampered = editFrame(msg.get('site-00')!, (header) => {
        const s = (header.shares as Array<{ sealed: string }>)[0]!;
        s.sealed = flipB64(s.sealed, 30);
      });
      expect(() => h.clients.get('site-00')!.receiveShares(tampered, inputs.get('site-00')!)).toThrow(code('E_SECAGG_TAMPERED'));
    });

    it('refuses a share rerouted to another recipient or relabelled with another sender (E_SECAGG_TAMPERED)', () => {
      const { h, msg, inputs } = upTo('shares');
      // The share site-01 received from site-02, delivered to site-00 as if site-02 had sent it to site-00.
      const toOne = readFrame(msg.get('site-01')!).header.shares as Array<{ from: string; sealed: string }>;
      const stolen = toOne.find((s) => s.from === 'site-02')!;
      const rerouted = editFrame(msg.get('site-00')!, (header) => {
        for (const s of header.shares as Array<{ from: string; sealed: string }>) if (s.from === 'site-02') s.sealed = stolen.sealed;
      });
      expect(() => h.clients.get('site-00')!.receiveShares(rerouted, inputs.get('site-00')!)).toThrow(code('E_SECAGG_TAMPERED'));
      const swapped = editFrame(msg.get('site-03')!, (header) => {
        const list = header.shares as Array<{ from: string }>;
        [list[0]!.from, list[1]!.from] = [list[1]!.from, list[0]!.from];
      });
      expect(() => h.clients.get('site-03')!.receiveShares(swapped, inputs.get('site-03')!)).toThrow(code('E_SECAGG_TAMPERED'));
    });

    it('refuses a truncated share (E_SECAGG_MALFORMED) and an input of the wrong length (E_SECAGG_DIMENSION)', () => {
      const { h, msg, inputs } = upTo('shares');
      const short = editFrame(msg.get('site-00')!, (header) => {
        const s = (header.shares as Array<{ sealed: string }>)[0]!;
        s.sealed = s.sealed.slice(0, -4);
      });
      expect(() => h.clients.get('site-00')!.receiveShares(short, inputs.get('site-00')!)).toThrow(code('E_SECAGG_MALFORMED'));
      expect(() => h.clients.get('site-01')!.receiveShares(msg.get('site-01')!, new Uint32Array(3))).toThrow(code('E_SECAGG_DIMENSION'));
    });
  });

  describe('consistency check', () => {
    it('refuses a survivor set without itself, or with a neighbour whose shares never arrived (E_SECAGG_INCONSISTENT)', () => {
      const config = ringConfig(5, { threshold: 3, minSurvivors: 3, degree: 4 });
      const h = new Harness(config);
      const inputs = randomInputs(config);
      // site-04's shares reach nobody: the server drops it at the share phase, then claims it survived.
      const survivors = h.masked(h.shares(h.keys(), ['site-04']), inputs);
      const withGhost = editFrame(survivors.get('site-00')!, (header) => {
        header.survivors = toB64(Uint8Array.of(0b11111));
      });
      expect(() => h.clients.get('site-00')!.receiveSurvivors(withGhost)).toThrow(code('E_SECAGG_INCONSISTENT'));
      const withoutMe = editFrame(survivors.get('site-01')!, (header) => {
        header.survivors = toB64(Uint8Array.of(0b01101));
      });
      expect(() => h.clients.get('site-01')!.receiveSurvivors(withoutMe)).toThrow(code('E_SECAGG_INCONSISTENT'));
    });

    it('refuses a bitmap with bits past the last site (E_SECAGG_MALFORMED)', () => {
      const { h, msg } = upTo('survivors');
      const extra = editFrame(msg.get('site-00')!, (header) => {
        header.survivors = toB64(Uint8Array.of(0xff));
      });
      expect(() => h.clients.get('site-00')!.receiveSurvivors(extra)).toThrow(code('E_SECAGG_MALFORMED'));
    });
  });

  describe('unmasking', () => {
    it('refuses when a neighbour signed a different survivor set than this site (E_SECAGG_INCONSISTENT)', () => {
      const { h, msg, config } = upTo('unmask');
      const context = contextDigest(config);
      // The server showed site-01 a set without site-04 and got its signature over it.
      const otherView = h.identities.signers.get('site-01')!.sign(survivorsTranscript(context, 'site-01', Uint8Array.of(0b01111)));
      const forged = editFrame(msg.get('site-00')!, (header) => {
        for (const s of header.signatures as Array<{ site: string; signature: string }>) if (s.site === 'site-01') s.signature = toB64(otherView);
      });
      expect(() => h.clients.get('site-00')!.receiveUnmask(forged)).toThrow(code('E_SECAGG_INCONSISTENT'));
    });

    it('refuses to unmask with fewer confirmations than the threshold (E_SECAGG_TOO_FEW)', () => {
      const { h, msg } = upTo('unmask');
      const few = editFrame(msg.get('site-00')!, (header) => {
        header.signatures = (header.signatures as JsonValue[]).slice(0, 1);
      });
      expect(() => h.clients.get('site-00')!.receiveUnmask(few)).toThrow(code('E_SECAGG_TOO_FEW'));
    });

    it('reveals once: a second unmask request is refused (E_SECAGG_REPLAY)', () => {
      const { h, msg } = upTo('unmask');
      const client = h.clients.get('site-02')!;
      client.receiveUnmask(msg.get('site-02')!);
      expect(() => client.receiveUnmask(msg.get('site-02')!)).toThrow(code('E_SECAGG_REPLAY'));
    });

    it('never reveals both shares of a site: a survivor set that flips a site after the reveal is refused (E_SECAGG_BOTH_SHARES)', () => {
      const config = ringConfig(5, { threshold: 3, minSurvivors: 3 });
      const h = new Harness(config);
      const inputs = randomInputs(config);
      const survivors = h.masked(h.shares(h.keys()), inputs);
      const requests = h.consistency(survivors);
      const client = h.clients.get('site-00')!;
      const reveal = readFrame(client.receiveUnmask(requests.get('site-00')!)).header;
      // site-00 revealed site-03's self-mask share (site-03 survived). Now the server claims site-03 dropped,
      // to get its mask-key share too and strip site-03's update of every mask.
      expect((reveal.selfMask as Array<{ of: string }>).map((e) => e.of)).toContain('site-03');
      expect(reveal.maskKey).toEqual([]);
      const flipped = editFrame(survivors.get('site-00')!, (header) => {
        header.survivors = toB64(Uint8Array.of(0b10111));
      });
      expect(() => client.receiveSurvivors(flipped)).toThrow(code('E_SECAGG_BOTH_SHARES'));
      expect(client.phase).toBe('stopped');
    });

    it('refuses a changed survivor set after signing, before revealing (E_SECAGG_INCONSISTENT), and the same one again (E_SECAGG_REPLAY)', () => {
      const { h, msg } = upTo('survivors', 5, 3);
      const a = h.clients.get('site-00')!;
      a.receiveSurvivors(msg.get('site-00')!);
      const changed = editFrame(msg.get('site-00')!, (header) => {
        header.survivors = toB64(Uint8Array.of(0b01111));
      });
      expect(() => a.receiveSurvivors(changed)).toThrow(code('E_SECAGG_INCONSISTENT'));
      const b = h.clients.get('site-01')!;
      b.receiveSurvivors(msg.get('site-01')!);
      expect(() => b.receiveSurvivors(msg.get('site-01')!)).toThrow(code('E_SECAGG_REPLAY'));
    });

    it('refuses a message of a later phase out of order (E_SECAGG_PHASE)', () => {
      const { h, msg } = upTo('survivors');
      const fresh = h.client('site-00');
      expect(() => fresh.receiveSurvivors(msg.get('site-00')!)).toThrow(code('E_SECAGG_PHASE'));
      expect(() => fresh.receiveUnmask(encodeFrame({ type: 'secagg/unmask' }))).toThrow(code('E_SECAGG_PHASE'));
    });
  });
});

describe('SecAggClient and distributed DP', () => {
  it('refuses to sign a survivor set smaller than the honest sites the noise counts on (E_SECAGG_DP_TOO_FEW)', () => {
    const base = ringConfig(6, { threshold: 4, minSurvivors: 4, length: 8 });
    const config = checkRoundConfig({
      ...base,
      encoding: { dimension: 8, clip: 1, granularity: 1e-3, rotation: 'none', beta: 0, noise: { stddev: 100, honestSites: 5 } },
    });
    const h = new Harness(config);
    const inputs = randomInputs(config);
    const survivors = h.masked(h.shares(h.keys()), inputs);
    // The server claims only four survivors: the sum would carry the noise of four sites, not five.
    const fewer = editFrame(survivors.get('site-00')!, (header) => {
      header.survivors = toB64(Uint8Array.of(0b001111));
    });
    expect(() => h.clients.get('site-00')!.receiveSurvivors(fewer)).toThrow(code('E_SECAGG_DP_TOO_FEW'));
  });
});
