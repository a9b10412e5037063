import { describe, expect, it } from 'vitest';
import { loadSiteData, type Email } from '../src/poc/dataset.js';
import { loadSiteDataOffThread } from '../src/poc/site-data-thread.js';

// The worker imports the built module (a worker thread runs JavaScript, not the TypeScript sources vitest reads).
const BUILT = new URL('../dist/poc/dataset.js', import.meta.url);
const corpus: Email[] = Array.from({ length: 600 }, (_, i) => ({ text: `mail ${i} ${i % 3 === 0 ? 'winner prize' : 'meeting notes'}`, label: i % 3 === 0 ? 1 : 0 }));

describe('a poc site loads its data in a worker thread (its event loop stays free at deploy)', () => {
  it('gives the same split and features as the loader on the event loop', async () => {
    const options = { site: 1, sites: 3, features: 32, corpus };
    const off = await loadSiteDataOffThread(options, BUILT);
    const on = loadSiteData(options);
    expect(off.features).toBe(32);
    expect(off.counts).toEqual(on.counts);
    expect(Array.from(off.train.x)).toEqual(Array.from(on.train.x));
    expect(Array.from(off.test.y)).toEqual(Array.from(on.test.y));
  });

  it("refuses with E_ML_DATASET_MISSING, naming the cause, when the loader fails in the worker", async () => {
    await expect(loadSiteDataOffThread({ site: 5, sites: 3, corpus }, BUILT)).rejects.toMatchObject({ code: 'E_ML_DATASET_MISSING', message: expect.stringMatching(/"site" expected 0\.\.2, got 5/) });
    await expect(loadSiteDataOffThread({ site: 0, sites: 3, corpus }, new URL('../dist/poc/no-such-module.js', import.meta.url))).rejects.toMatchObject({ code: 'E_ML_DATASET_MISSING' });
  });
});
