import { isFlareError } from '@flare/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend.js';

function capture(): { lines: string[]; logger: { debug(): void; info(m: string): void; warn(): void; error(): void } } {
  const lines: string[] = [];
  return { lines, logger: { debug() {}, info: (m: string) => lines.push(m), warn() {}, error() {} } };
}

// One file, one process: selectBackend caches the first successful choice, so the refusals come first.
describe('selectBackend', () => {
  it('refuses an unknown FLARE_TF_BACKEND (E_ML_BACKEND_NAME)', async () => {
    const err = await selectBackend({ env: { FLARE_TF_BACKEND: 'cuda' } }).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_ML_BACKEND_NAME')).toBe(true);
  });

  it('refuses a forced backend that is not installed (E_ML_BACKEND_UNAVAILABLE), naming it', async () => {
    // tfjs-node-gpu is an optional peer that is never installed here (its install downloads libtensorflow).
    const err = await selectBackend({ env: { FLARE_TF_BACKEND: 'tensorflow' } }).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_ML_BACKEND_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toContain("'tensorflow'");
  });

  it('without an override skips the missing native binding and loads wasm offline from the package, and logs it', async () => {
    const { lines, logger } = capture();
    const choice = await selectBackend({ env: {}, logger });
    expect(choice.name).toBe('wasm');
    expect(choice.reason).toBe('auto');
    expect(choice.skipped.map((s) => s.name)).toEqual(['tensorflow']);
    expect(tf.getBackend()).toBe('wasm');
    expect(lines).toEqual(['tfjs backend: wasm']);
    // The engine really computes on it.
    expect(Array.from(tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).dataSync())).toEqual([4, 6]);
  });

  it('returns the first choice to later callers (one engine per process)', async () => {
    const again = await selectBackend({ env: { FLARE_TF_BACKEND: 'cpu' } });
    expect(again.name).toBe('wasm');
  });
});
