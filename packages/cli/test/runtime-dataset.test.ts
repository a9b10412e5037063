import { describe, expect, it } from 'vitest';
import { featurize, loadSiteData, seeded, spamAssassin, type Email } from '../src/poc/dataset.js';

describe('poc dataset', () => {
  it('seeded() is the Park–Miller minimal standard generator (x_{n+1} = 48271 x_n mod 2^31-1)', () => {
    const r = seeded(1);
    // 48271^1 and 48271^2 mod 2147483647, mapped to [0, 1) as (x - 1) / (m - 1).
    expect(r()).toBeCloseTo((48271 - 1) / 2147483646, 12);
    expect(r()).toBeCloseTo((((48271 * 48271) % 2147483647) - 1) / 2147483646, 12);
  });

  it('featurize gives unit-norm hashed bag-of-words vectors, the same for the same text', () => {
    const a = featurize('Subject: FREE money!!! Click here to claim your FREE prize', 64);
    const b = featurize('Subject: FREE money!!! Click here to claim your FREE prize', 64);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Math.hypot(...a)).toBeCloseTo(1, 6);
    expect(Array.from(featurize('', 8))).toEqual(new Array(8).fill(0));
  });

  it('reads the real SpamAssassin corpus (6,046 e-mails: 4,150 ham, 1,896 spam)', () => {
    const c = spamAssassin()!;
    expect(c).toHaveLength(6046);
    expect(c.filter((e) => e.label === 1)).toHaveLength(1896);
  });

  it('splits non-IID: the first site is mostly ham, the last mostly spam; test shards are disjoint and cover the held-out split', () => {
    const corpus: Email[] = Array.from({ length: 3000 }, (_, i) => ({ text: `mail ${i} ${i % 3 === 0 ? 'winner prize' : 'meeting notes'}`, label: i % 3 === 0 ? 1 : 0 }));
    const sites = [0, 1, 2].map((site) => loadSiteData({ site, sites: 3, features: 32, corpus }));
    const spamShare = sites.map((s) => s.counts.positive / (s.counts.positive + s.counts.negative));
    expect(spamShare[0]).toBeLessThan(spamShare[1]!);
    expect(spamShare[1]).toBeLessThan(spamShare[2]!);
    const trainTotal = sites.reduce((n, s) => n + s.train.y.length, 0);
    const testTotal = sites.reduce((n, s) => n + s.test.y.length, 0);
    expect(testTotal).toBe(600);
    expect(trainTotal).toBe(2400);
    // Every process computes the same split from the fixed seed.
    expect(Array.from(loadSiteData({ site: 1, sites: 3, features: 32, corpus }).train.y)).toEqual(Array.from(sites[1]!.train.y));
  });

  it('rejects a site index outside 0..sites-1 (RangeError)', () => {
    expect(() => loadSiteData({ site: 3, sites: 3, corpus: [] })).toThrow(RangeError);
  });
});
