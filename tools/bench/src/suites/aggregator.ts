import {
  FedAvgAggregator,
  bulyan,
  coordinateMedian,
  krum,
  trimmedMean,
  type WeightedUpdate,
} from '@flare/aggregator';
import { META, model, type FLModel } from '@flare/core';
import { time, type Row, type Suite } from '../harness.js';

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
    const fedAvg = () => {
      const agg = new FedAvgAggregator({ kind: 'diff', useSteps: false });
      for (let s = 0; s < SITES; s++) agg.accept(updates[s]!, { from: `site-${s}`, weight: weightOf(s) });
      return agg.result();
    };
    // Baseline and subject alternate run by run, so load from other processes on this shared machine falls
    // on both alike; the medians are compared.
    const pair = { base: [] as number[], subject: [] as number[] };
    axpy();
    fedAvg();
    for (let r = 0; r < 15; r++) {
      let t0 = performance.now();
      axpy();
      pair.base.push(performance.now() - t0);
      t0 = performance.now();
      fedAvg();
      pair.subject.push(performance.now() - t0);
    }
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
    const axpyMs = med(pair.base);
    const fedavgMs = med(pair.subject);
    // The median of per-pair ratios is steadier than the ratio of medians when the machine's load drifts.
    const pairRatio = med(pair.base.map((b, i) => b / pair.subject[i]!));

    const list: WeightedUpdate[] = updates.map((m, i) => ({ model: m, from: `site-${i}` }));
    const once = { warmup: 0, minRuns: 1, minMs: 0 };
    const median = await time(() => coordinateMedian(list), once);
    const trimmed = await time(() => trimmedMean(list, { beta: 0.1 }), once);
    const krumT = await time(() => krum(list, { f: 10 }), once);
    const bulyanT = await time(() => bulyan(list, { f: 10 }), once);

    // Memory: updates arrive one at a time into the same caller buffer, as from a decoder that reuses it.
    const modelBytes = PARAMS * 4;
    const incoming = update(0);
    const base = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const agg = new FedAvgAggregator({ kind: 'diff' });
    for (let s = 0; s < SITES; s++) {
      for (const [t, tensor] of [...incoming.params.values()].entries()) fill(tensor.data as Float32Array, s * TENSORS + t + 1);
      agg.accept(incoming, { from: `site-${s}`, weight: weightOf(s) });
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    }
    agg.result();
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    const mb = (b: number) => b / 2 ** 20;

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
      { label: `FedAvg accumulator (float32 model = ${mb(modelBytes).toFixed(0)} MiB)`, value: mb(agg.accumulatorBytes), unit: 'MiB' },
      { label: 'FedAvg ArrayBuffer high-water over 100 streamed updates (accumulator + result)', value: mb(peak), unit: 'MiB' },
    ];
  },
};
