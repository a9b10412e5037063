import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend.js';

describe('selectBackend with FLARE_TF_BACKEND', () => {
  it('FLARE_TF_BACKEND=cpu wins over options.prefer and is reported as the reason', async () => {
    const choice = await selectBackend({ env: { FLARE_TF_BACKEND: ' cpu ' }, prefer: 'wasm' });
    expect(choice).toEqual({ name: 'cpu', reason: 'FLARE_TF_BACKEND', skipped: [] });
    expect(tf.getBackend()).toBe('cpu');
  });
});
