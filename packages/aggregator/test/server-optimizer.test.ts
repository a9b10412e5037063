import { decodeModel, encodeModel, model, type FLModel, type JsonValue } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { FedAdagrad, FedAdam, FedAvgM, FedYogi, type ServerOptimizer } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, gaussian, rng, sameBits, values, vec } from './fixtures.js';

const makers: Record<string, () => ServerOptimizer> = {
  fedavgm: () => new FedAvgM({ eta: 0.7, momentum: 0.9 }),
  fedadagrad: () => new FedAdagrad({ eta: 0.05, beta1: 0.3 }),
  fedadam: () => new FedAdam({ eta: 0.01, biasCorrection: 'adam' }),
  fedyogi: () => new FedYogi({ eta: 0.02 }),
};

function deltas(seed: number, rounds: number): FLModel[] {
  const g = gaussian(rng(seed));
  return Array.from({ length: rounds }, () => f32({ a: Array.from({ length: 64 }, g), b: Array.from({ length: 8 }, g) }));
}

describe('server optimizer state (checkpoints)', () => {
  for (const [name, make] of Object.entries(makers)) {
    for (const form of ['safetensors', 'json'] as const) {
      it(`${name}: resuming from a ${form} checkpoint continues bit for bit`, () => {
        const ds = deltas(name.length, 5);
        const initial = f32({ a: Array(64).fill(0.5), b: Array(8).fill(-1) }, 'full');
        const straight = make();
        let x = initial;
        for (const d of ds) x = straight.step(x, d);

        const first = make();
        let y = initial;
        for (const d of ds.slice(0, 2)) y = first.step(y, d);
        const saved: Uint8Array | JsonValue = form === 'safetensors' ? first.saveState() : JSON.parse(JSON.stringify(first.stateToJSON()));
        const resumed = make();
        resumed.loadState(saved, y);
        expect(resumed.steps).toBe(2);
        for (const d of ds.slice(2)) y = resumed.step(y, d);
        expect(sameBits(x, y)).toBe(true);
      });
    }
  }

  it('saves a safetensors file any reader can open: m/<name>, v/<name> in float64, optimizer and steps in meta', () => {
    const adam = new FedAdam();
    adam.step(f32({ w: [1, 2] }, 'full'), f32({ w: [0.5, -0.5] }));
    const decoded = decodeModel(adam.saveState());
    expect([...decoded.params.keys()].sort()).toEqual(['m/w', 'v/w']);
    expect(decoded.params.get('m/w')).toMatchObject({ dtype: 'float64', shape: [2] });
    expect(decoded.meta).toEqual({ optimizer: 'fedadam', steps: 1 });
  });

  it('refuses a checkpoint of another optimizer, or one that does not fit the model (E_AGG_STATE)', () => {
    const global = f32({ w: [1, 2] }, 'full');
    const adam = new FedAdam();
    adam.step(global, f32({ w: [1, 1] }));
    const bytes = adam.saveState();
    const json = adam.stateToJSON() as Record<string, JsonValue>;
    expectFlareCode(() => new FedYogi().loadState(bytes, global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAvgM().loadState(json, global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState(bytes, f32({ w: [1, 2, 3] }, 'full')), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState(bytes, f32({ other: [1, 2] }, 'full')), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState(bytes.subarray(0, bytes.length - 3), global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState({ ...json, extra: 1 }, global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState({ ...json, steps: -1 }, global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState({ ...json, tensors: [{ name: 'w', m: [0, 0] }] }, global), 'E_AGG_STATE'); // no v
    expectFlareCode(() => new FedAdam().loadState({ ...json, tensors: [{ name: 'w', m: ['0', 0], v: [0, 0] }] }, global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState({ ...json, tensors: [{ name: 'w', m: [0], v: [0] }] }, global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState('not a state', global), 'E_AGG_STATE');
  });

  it('refuses forged safetensors state: wrong dtype, unknown tensor, m missing (E_AGG_STATE)', () => {
    const global = vec([1, 2], 'full');
    const meta = { optimizer: 'fedadam', steps: 1 };
    const forged = (params: Record<string, { dtype: 'float32' | 'float64'; data: Float32Array | Float64Array }>) =>
      encodeModel(model(Object.fromEntries(Object.entries(params).map(([k, t]) => [k, { ...t, shape: [2] }])), 'full', meta));
    const ok = { dtype: 'float64' as const, data: new Float64Array(2) };
    expectFlareCode(() => new FedAdam().loadState(forged({ 'm/w': { dtype: 'float32', data: new Float32Array(2) }, 'v/w': ok }), global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState(forged({ 'm/w': ok, 'v/w': ok, 'x/w': ok }), global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState(forged({ 'v/w': ok }), global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAvgM().loadState(encodeModel(model({ 'm/w': { ...ok, shape: [2] }, 'v/w': { ...ok, shape: [2] } }, 'full', { optimizer: 'fedavgm', steps: 0 })), global), 'E_AGG_STATE');
    expectFlareCode(() => new FedAdam().loadState(encodeModel(model({ 'm/w': { ...ok, shape: [2] } }, 'full', {})), global), 'E_AGG_STATE');
  });

  it('keeps its state when a checkpoint is refused', () => {
    const global = vec([0], 'full');
    const adam = new FedAdam({ eta: 1, tau: 0 });
    adam.step(global, vec([1]));
    const before = adam.saveState();
    expect(() => adam.loadState({ format: 'flare-ts/optimizer-state', version: 1, optimizer: 'fedadam', steps: 9, tensors: [{ name: 'nope', m: [1], v: [1] }] }, global)).toThrow();
    expect(adam.saveState()).toEqual(before);
  });
});

describe('server optimizer step', () => {
  it('copies tensors the update lacks, moves integer tensors by the update, and modifies neither input', () => {
    const global = model(
      {
        w: { dtype: 'float32', shape: [2], data: Float32Array.of(1, 2) },
        frozen: { dtype: 'float32', shape: [1], data: Float32Array.of(7) },
        n: { dtype: 'int32', shape: [1], data: Int32Array.of(10) },
      },
      'full',
    );
    const delta = model({ w: { dtype: 'float32', shape: [2], data: Float32Array.of(1, 1) }, n: { dtype: 'float64', shape: [1], data: Float64Array.of(2.5) } }, 'diff');
    const next = new FedAvgM().step(global, delta);
    expect(values(next, 'w')).toEqual([2, 3]);
    expect(values(next, 'frozen')).toEqual([7]);
    expect(next.params.get('frozen')!.data).not.toBe(global.params.get('frozen')!.data);
    expect(values(next, 'n')).toEqual([12]); // 12.5 rounded half to even
    expect(values(global, 'w')).toEqual([1, 2]);
    expect(next.kind).toBe('full');
  });

  it('refuses an update with unknown or misshapen tensors (E_MODEL_MISMATCH) or non-finite values (E_AGG_NONFINITE), state untouched', () => {
    const opt = new FedAdam();
    const global = f32({ w: [1, 2] }, 'full');
    expectFlareCode(() => opt.step(global, f32({ x: [1, 2] })), 'E_MODEL_MISMATCH');
    expectFlareCode(() => opt.step(global, f32({ w: [1] })), 'E_MODEL_MISMATCH');
    expectFlareCode(() => opt.step(global, f32({ w: [1, Number.NaN] })), 'E_AGG_NONFINITE');
    expect(opt.steps).toBe(0);
  });
});
