import { decodeModel, encodeModel, model, tensor, type FLModel } from '@flare/core';
import { generateHeKeys, HeAggregator, heDecrypt, heEncrypt, heWasmHeapBytes } from '@flare/filters-he';
import type { Row, Suite } from '../harness.js';

// CKKS (N = 8192, primes [60, 40, 40, 60], scale 2^40) on a 1M-parameter float32 update in 4 tensors,
// against the same steps in plaintext in the same run: safetensors encode (client), decode + weighted
// accumulate (server, per client), encode + decode of the mean (download). The reference figures
// (node-seal, same parameters, measured before this package existed): 3.35 s and 81 MB per client per 1M
// parameters with public-key encryption, 2.1 s and 40 MB with seeded encryption.
//
// Environment: FLARE_BENCH_HE_CLIENTS (round and precision, default 10), FLARE_BENCH_HE_SOAK (encrypt /
// aggregate / decrypt cycles, default 1,000), FLARE_BENCH_HE_FULL=1 (the figures: 100 clients and
// 10,000 cycles, several minutes).
const PARAMS = 1_000_000;
const full = process.env['FLARE_BENCH_HE_FULL'] === '1';
const CLIENTS = Number(process.env['FLARE_BENCH_HE_CLIENTS'] ?? (full ? 100 : 10));
const SOAK = Number(process.env['FLARE_BENCH_HE_SOAK'] ?? (full ? 10_000 : 1_000));
const ctx = { site: 'bench', job: 'bench', round: 0 };

/** A deterministic 1M-parameter update with values in [-1, 1] (xorshift32; benchmark data only). */
function update(seed: number): FLModel {
  let s = (seed * 2654435761) >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 4294967296) * 2 - 1;
  };
  const sizes = [600_000, 300_000, 99_000, 1_000];
  return model(
    sizes.map((n, i) => [`layer${i}.weight`, tensor(Float32Array.from({ length: n }, next))] as const),
    'diff',
  );
}

async function ms<T>(fn: () => T | Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const out = await fn();
  return [out, performance.now() - t0];
}

/** Plaintext FedAvg accumulate in float64 (the server's work without HE). */
function accumulate(sum: Float64Array, m: FLModel, weight: number): void {
  let at = 0;
  for (const t of m.params.values()) {
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) sum[at + i] = sum[at + i]! + weight * d[i]!;
    at += d.length;
  }
}

export const suite: Suite = {
  name: 'he',
  description: `CKKS on node-seal (N = 8192, [60, 40, 40, 60], 2^40): 1M-parameter update, ${CLIENTS} clients, vs the same round in plaintext`,
  async run(): Promise<Row[]> {
    const { client, server } = await generateHeKeys();
    const enc = heEncrypt({ context: client });
    const dec = heDecrypt({ context: client });
    const weights = Array.from({ length: CLIENTS }, (_, k) => 1 + (k % 7));
    const total = weights.reduce((a, b) => a + b, 0);
    const rate = (t: number) => PARAMS / (t / 1000);

    // Plaintext round, per step.
    const m0 = update(0);
    await enc.apply(m0, ctx); // warm-up: JIT, SEAL and zstd instances
    const [plainBytes, tPlainEncode] = await ms(() => encodeModel(m0));
    const sum = new Float64Array(PARAMS);
    const [, tPlainAccept] = await ms(() => accumulate(sum, decodeModel(plainBytes), 1));
    const [meanBytes, tPlainResult] = await ms(() => encodeModel(m0));
    const [, tPlainDecode] = await ms(() => decodeModel(meanBytes));

    // The same encryption on two worker threads (after the pool has started).
    const pooled = heEncrypt({ context: client, workers: 2 });
    await pooled.apply(model({ w: tensor(new Float32Array(8)) }), ctx);
    const [, tPooled] = await ms(async () => encodeModel(await pooled.apply(m0, ctx)));

    // Encrypted round: every client encrypts (timed on the first), the server accepts each, one result,
    // a client decrypts. The reference mean is accumulated in float64 as updates are made.
    const agg = new HeAggregator({ context: server });
    const reference = new Float64Array(PARAMS);
    let tEncrypt = 0;
    let tAccept = 0;
    let uploadBytes = 0;
    for (let k = 0; k < CLIENTS; k++) {
      const m = update(k);
      accumulate(reference, m, weights[k]! / total);
      const [wire, t1] = await ms(async () => encodeModel(await enc.apply(m, ctx)));
      const [, t2] = await ms(() => agg.accept(decodeModel(wire), { from: `site-${k}`, weight: weights[k]! }));
      if (k === 0) {
        tEncrypt = t1;
        uploadBytes = wire.length;
      }
      tAccept += t2;
    }
    const [resultWire, tResult] = await ms(() => encodeModel(agg.result()));
    const [mean, tDecrypt] = await ms(() => dec.apply(decodeModel(resultWire), ctx));
    let maxErr = 0;
    let at = 0;
    for (const t of mean.params.values()) {
      const d = t.data as Float32Array;
      for (let i = 0; i < d.length; i++) maxErr = Math.max(maxErr, Math.abs(d[i]! - reference[at + i]!));
      at += d.length;
    }
    agg.dispose();
    const acceptPerClient = tAccept / CLIENTS;

    // Soak: encrypt / aggregate / decrypt cycles on one ciphertext; the heap after warm-up must not grow.
    const small = model({ w: tensor(Float32Array.from({ length: 4096 }, (_, i) => Math.sin(i))) });
    const soakAgg = new HeAggregator({ context: server });
    const cycle = async (i: number) => {
      soakAgg.reset();
      soakAgg.accept(await enc.apply(small, ctx), { from: 'a', weight: 1 + (i % 5) });
      await dec.apply(soakAgg.result(), ctx);
    };
    for (let i = 0; i < 50; i++) await cycle(i);
    const heapWarm = heWasmHeapBytes() ?? Number.NaN;
    const [, tSoak] = await ms(async () => {
      for (let i = 0; i < SOAK; i++) await cycle(i);
    });
    const heapGrowth = (heWasmHeapBytes() ?? Number.NaN) - heapWarm;
    soakAgg.dispose();
    client.dispose();
    server.dispose();

    const plainRound = tPlainEncode + tPlainAccept * CLIENTS + tPlainResult + tPlainDecode;
    const heRound = tEncrypt + tAccept + tResult + tDecrypt;
    return [
      { label: 'encrypt 1M params (client, seeded + zstd + codec)', value: rate(tEncrypt), unit: 'params/s', baseline: { label: 'plaintext encode', value: rate(tPlainEncode) }, higherIsBetter: true },
      { label: 'encrypt 1M params on 2 worker threads (client)', value: rate(tPooled), unit: 'params/s', baseline: { label: 'encrypt on the calling thread', value: rate(tEncrypt) }, higherIsBetter: true },
      { label: 'aggregate per client 1M params (server, codec + validate + weight + add)', value: rate(acceptPerClient), unit: 'params/s', baseline: { label: 'plaintext decode + accumulate', value: rate(tPlainAccept) }, higherIsBetter: true },
      { label: `finish the mean of ${CLIENTS} (server: rescale, divide, serialize)`, value: tResult, unit: 'ms', baseline: { label: 'plaintext encode of the mean', value: tPlainResult }, higherIsBetter: false },
      { label: 'decrypt 1M params (client, codec + validate + decrypt)', value: rate(tDecrypt), unit: 'params/s', baseline: { label: 'plaintext decode', value: rate(tPlainDecode) }, higherIsBetter: true },
      { label: 'upload bytes per parameter', value: uploadBytes / PARAMS, unit: 'B/param', baseline: { label: 'plaintext float32', value: plainBytes.length / PARAMS }, higherIsBetter: false },
      { label: 'download bytes per parameter (the mean)', value: resultWire.length / PARAMS, unit: 'B/param', baseline: { label: 'plaintext float32', value: meanBytes.length / PARAMS }, higherIsBetter: false },
      { label: 'client encrypt time per 1M params (calling thread)', value: tEncrypt / 1000, unit: 's', baseline: { label: 'issue reference, seeded', value: 2.1 }, higherIsBetter: false, aim: '< 2.1 s (public-key reference 3.35 s)' },
      { label: 'client encrypt time per 1M params (2 worker threads)', value: tPooled / 1000, unit: 's', baseline: { label: 'issue reference, seeded', value: 2.1 }, higherIsBetter: false, aim: '< 2.1 s' },
      { label: 'client upload per 1M params', value: uploadBytes / 1e6, unit: 'MB', baseline: { label: 'issue reference, seeded', value: 40 }, higherIsBetter: false, aim: '< 40 MB (public-key reference 81 MB)' },
      { label: `whole round, ${CLIENTS} clients in parallel (critical path: 1 encrypt, ${CLIENTS} accepts, mean, 1 decrypt)`, value: heRound, unit: 'ms', baseline: { label: 'same round in plaintext', value: plainRound }, higherIsBetter: false },
      { label: `precision: mean of ${CLIENTS} weighted 1M-param updates in [-1, 1], max abs error`, value: maxErr, unit: '', aim: '< 1e-6' },
      { label: `soak: WASM heap growth over ${SOAK} encrypt/aggregate/decrypt cycles after warm-up (${(tSoak / SOAK).toFixed(1)} ms/cycle)`, value: heapGrowth, unit: 'bytes', aim: '0' },
    ];
  },
};
