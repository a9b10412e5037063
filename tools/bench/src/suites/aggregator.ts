import {
  FedAvgAggregator,
  bulyan,
  coordinateMedian,
  krum,
  trimmedMean,
  type WeightedUpdate,
} from '@flare/aggregator';
import { createHash } from 'node:crypto';
import { BufferArena, META, decodeModel, encodeModel, model, type FLModel } from '@flare/core';
import { paired, time, type Row, type Suite } from '../harness.js';

// 100 float32 updates of 1M parameters (4 tensors of 256K, like a small CNN's layers), 400 MB in all.
// FedAvg (exact double-double accumulation, NaN/overflow checks, per-tensor weights) is timed against one
// plain float64 axpy loop over the same data in the same run. The robust aggregators are timed once each on
// the same updates. Memory: FedAvg fed one update at a time, accumulator bytes and ArrayBuffer high-water.
const SITES = 100;
const PARAMS = 1 << 20;
const TENSORS = 4;
const PER = PARAMS / TENSORS;

function fill(data: Float32Array, seed: number): void {
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0; // Numerical Recipes LCG: deterministic, not crypto
    data[i] = (s / 2 ** 32 - 0.5) * 0.02;
  }
}

function update(seed: number): FLModel {
  const params = Array.from({ length: TENSORS }, (_, t) => {
    const data = new Float32Array(PER);
    fill(data, seed * TENSORS + t + 1);
    return [`layer${t}.weight`, { dtype: 'float32' as const, shape: [PER / 256, 256], data }] as const;
  });
  return model(params, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1 + (seed % 5) });
}

const weightOf = (i: number) => (1 + (i % 7)) * (1 + (i % 5));

export const suite: Suite = {
  name: 'aggregator',
  description: `aggregation of ${SITES} float32 updates of ${PARAMS / 2 ** 20}M parameters: FedAvg vs a plain axpy loop; robust aggregators; FedAvg memory`,
  async run(): Promise<Row[]> {
    const updates = Array.from({ length: SITES }, (_, i) => update(i));
    const arrays = updates.map((u) => [...u.params.values()].map((t) => t.data as Float32Array));

    const acc = Array.from({ length: TENSORS }, () => new Float64Array(PER));
    const axpy = () => {
      for (const a of acc) a.fill(0);
      for (let s = 0; s < SITES; s++) {
        const w = weightOf(s);
        const xs = arrays[s]!;
        for (let t = 0; t < TENSORS; t++) {
          const x = xs[t]!;
          const y = acc[t]!;
          for (let i = 0; i < PER; i++) y[i] = y[i]! + w * x[i]!;
        }
      }
    };
    // One aggregator for the whole job, as a server keeps it: its accumulators are reused round after round.
    const agg = new FedAvgAggregator({ kind: 'diff', useSteps: false });
    let round = 0;
    const fedAvg = () => {
      const r = round++;
      agg.beginRound(r);
      for (let s = 0; s < SITES; s++) agg.accept(updates[s]!, { from: `site-${s}`, weight: weightOf(s), round: r });
      return agg.result();
    };
    // A fresh aggregator per round (its accumulators allocated anew each time).
    const fedAvgFresh = () => {
      const fresh = new FedAvgAggregator({ kind: 'diff', useSteps: false });
      for (let s = 0; s < SITES; s++) fresh.accept(updates[s]!, { from: `site-${s}`, weight: weightOf(s) });
      return fresh.result();
    };
    // Baseline and subject alternate run by run, so load from other processes on this shared machine falls on both alike.
    const p = await paired(axpy, fedAvg, { runs: 15 });
    const pFresh = await paired(axpy, fedAvgFresh, { runs: 5 });
    const axpyMs = p.baseline.median;
    const fedavgMs = p.subject.median;
    const pairRatio = p.ratio;

    const list: WeightedUpdate[] = updates.map((m, i) => ({ model: m, from: `site-${i}` }));
    const once = { warmup: 0, minRuns: 1, minMs: 0 };
    const median = await time(() => coordinateMedian(list), once);
    const trimmed = await time(() => trimmedMean(list, { beta: 0.1 }), once);
    const krumT = await time(() => krum(list, { f: 10 }), once);
    const bulyanT = await time(() => bulyan(list, { f: 10 }), once);

    // The round's model path as the runtime can run it, round after round: each update arrives as bytes, copied
    // from a "socket" buffer into an arena (the receive), is hashed (the verify: the MAC covers the payload's
    // SHA-256), decoded as views of the arena (no copy), accumulated, and the arena reset; the round's result
    // is added in place to the global model (resultInto). Memory is sampled after every update.
    const mb = (b: number) => b / 2 ** 20;
    const wire = updates.slice(0, 10).map((u) => encodeModel(u));
    const pathAgg = new FedAvgAggregator({ kind: 'diff' });
    const arena = new BufferArena();
    const global = model([...updates[0]!.params].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, data: new Float32Array(t.data.length) }] as const), 'full');
    let sampled = 0;
    const runRound = (r: number, sample: (bytes: number) => void) => {
      pathAgg.beginRound(r);
      for (let s = 0; s < SITES; s++) {
        const message = wire[s % wire.length]!;
        const bytes = arena.alloc(message.length);
        bytes.set(message);
        createHash('sha256').update(bytes).digest();
        pathAgg.accept(decodeModel(bytes, {}, { arena }), { from: `site-${s}`, weight: weightOf(s), round: r });
        arena.reset();
        sample(process.memoryUsage().arrayBuffers);
      }
      pathAgg.resultInto(global, { add: true });
    };
    runRound(0, () => undefined);
    const afterFirst = process.memoryUsage().arrayBuffers;
    const reservedAfterFirst = pathAgg.reservedBytes + arena.capacity;
    let peak = afterFirst;
    for (let r = 1; r <= 4; r++) runRound(r, (bytes) => (peak = Math.max(peak, bytes)));
    sampled = peak - afterFirst;
    const reservedGrowth = pathAgg.reservedBytes + arena.capacity - reservedAfterFirst;
    const modelBytes = PARAMS * 4;

    const label = `${SITES} x ${PARAMS / 2 ** 20}M`;
    return [
      {
        label: `FedAvg ${label} (exact, checked, streaming)`,
        value: fedavgMs,
        unit: 'ms',
        baseline: { label: 'plain float64 axpy loop', value: axpyMs },
        higherIsBetter: false,
        aim: '>= 0.8x',
      },
      { label: 'FedAvg speed relative to the axpy loop, median of 15 paired runs', value: pairRatio, unit: 'x', aim: '>= 0.8' },
      { label: `coordinate median ${label}`, value: median.median, unit: 'ms', baseline: { label: 'plain axpy loop', value: axpyMs }, higherIsBetter: false },
      { label: `trimmed mean beta 0.1 ${label}`, value: trimmed.median, unit: 'ms', baseline: { label: 'plain axpy loop', value: axpyMs }, higherIsBetter: false },
      { label: `Krum f = 10 ${label}`, value: krumT.median, unit: 'ms', baseline: { label: 'plain axpy loop', value: axpyMs }, higherIsBetter: false },
      { label: `Bulyan f = 10 ${label}`, value: bulyanT.median, unit: 'ms', baseline: { label: 'plain axpy loop', value: axpyMs }, higherIsBetter: false },
      { label: 'FedAvg with a fresh aggregator each round (accumulators allocated anew)', value: pFresh.subject.median, unit: 'ms', baseline: { label: 'plain float64 axpy loop', value: pFresh.baseline.median }, higherIsBetter: false },
      { label: `FedAvg accumulators (float32 model = ${mb(modelBytes).toFixed(0)} MiB; WebAssembly SIMD kernels ${process.env['FLARE_AGGREGATOR_WASM'] === '0' ? 'off' : 'on'})`, value: mb(pathAgg.accumulatorBytes), unit: 'MiB' },
      { label: `model path (receive into an arena, hash, decode as views, accumulate, resultInto): memory reserved after round 1`, value: mb(reservedAfterFirst), unit: 'MiB' },
      { label: '  rounds 2-5: memory the arena and the accumulators reserved beyond round 1', value: mb(reservedGrowth), unit: 'MiB', aim: '0' },
      { label: `  rounds 2-5: ArrayBuffer high-water above the level after round 1 (sampled after each of ${SITES * 4} updates)`, value: mb(sampled), unit: 'MiB', aim: '< one model' },
    ];
  },
};
