import { describe, expect, it } from 'vitest';
import { checkRoundConfig, contextDigest, ringLength } from '../src/config.js';
import { ringConfig } from './helpers/harness.js';

const refused = (field: string) => expect.objectContaining({ code: 'E_SECAGG_CONFIG', message: expect.stringContaining(field) });

describe('round configuration', () => {
  const good = ringConfig(6);

  it('accepts a valid configuration and binds everything to one digest', () => {
    expect(checkRoundConfig(good)).toEqual(good);
    expect(contextDigest(good)).toEqual(contextDigest({ ...good }));
    expect(contextDigest({ ...good, minSurvivors: good.minSurvivors + 1 })).not.toEqual(contextDigest(good));
  });

  it.each([
    ['sites', { sites: ['b', 'a', 'c', 'd', 'e', 'f'] }],
    ['sites', { sites: ['a', 'a', 'c', 'd', 'e', 'f'] }],
    ['sites', { sites: ['a b', 'c', 'd', 'e', 'f', 'g'] }],
    ['degree', { degree: 3 }],
    ['degree', { degree: 6 }],
    ['threshold', { threshold: 3 }],
    ['threshold', { threshold: 7 }],
    ['minSurvivors', { minSurvivors: 3 }],
    ['bits', { bits: 33 }],
    ['protocol', { protocol: 'flare-secagg/0' }],
    ['extra', { extra: 1 }],
  ])('refuses a bad %s (E_SECAGG_CONFIG)', (field, patch) => {
    expect(() => checkRoundConfig({ ...good, ...patch })).toThrow(field === 'extra' ? expect.objectContaining({ code: 'E_SECAGG_CONFIG' }) : refused(field));
  });

  it('refuses a ring length that does not fit the encoding, and noise counted on more sites than the round has', () => {
    const encoding = { dimension: 100, clip: 1, granularity: 1e-4, rotation: 'hadamard' as const, beta: 0.5, noise: null };
    expect(ringLength(100, 'hadamard')).toBe(128);
    expect(() => checkRoundConfig({ ...good, length: 100, encoding })).toThrow(refused('length'));
    checkRoundConfig({ ...good, length: 128, encoding });
    expect(() => checkRoundConfig({ ...good, length: 128, encoding: { ...encoding, noise: { stddev: 10, honestSites: 7 } } })).toThrow(refused('honestSites'));
    expect(() => checkRoundConfig({ ...good, length: 128, encoding: { ...encoding, noise: { stddev: 0.4, honestSites: 3 } } })).toThrow(refused('stddev'));
  });
});
