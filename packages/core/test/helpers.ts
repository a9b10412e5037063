import fc from 'fast-check';
import { tensor, type DType, type FLModel, type Tensor } from '../src/index.js';

/** Builds a safetensors file byte by byte from a header object and a data section, as the format describes. */
export function safetensorsFile(header: unknown, data: Uint8Array = new Uint8Array(0), pad = 0): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header) + ' '.repeat(pad));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const dims = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 });

const f32 = fc.float({ noNaN: true }).map(Math.fround);

function tensorArb(dtype: DType): fc.Arbitrary<Tensor> {
  return dims.chain((shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const list = <T>(a: fc.Arbitrary<T>) => fc.array(a, { minLength: n, maxLength: n });
    switch (dtype) {
      case 'float32':
        return list(f32).map((v) => tensor(Float32Array.from(v), shape));
      case 'float64':
        return list(fc.double({ noNaN: true })).map((v) => tensor(Float64Array.from(v), shape));
      case 'int32':
        return list(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })).map((v) => tensor(Int32Array.from(v), shape));
      case 'int64':
        return list(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })).map((v) => tensor(BigInt64Array.from(v), shape));
      case 'uint8':
        return list(fc.integer({ min: 0, max: 255 })).map((v) => tensor(Uint8Array.from(v), shape));
      case 'bool':
        return list(fc.boolean()).map((v) => tensor(Uint8Array.from(v, Number), shape, 'bool'));
      case 'float16':
        // values exactly representable in binary16, so the roundtrip is exact
        return list(fc.integer({ min: -2048, max: 2048 })).map((v) => tensor(Float32Array.from(v, (x) => x / 8), shape, 'float16'));
      case 'bfloat16':
        return list(fc.integer({ min: -128, max: 128 })).map((v) => tensor(Float32Array.from(v, (x) => x * 4), shape, 'bfloat16'));
    }
  });
}

const name = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !['__metadata__', '__proto__', 'constructor', 'prototype'].includes(s));

/** Random models: up to 6 tensors of any supported dtype, meta and metrics. */
export const modelArb: fc.Arbitrary<FLModel> = fc
  .record({
    tensors: fc.uniqueArray(
      fc.tuple(name, fc.constantFrom<DType>('float32', 'float64', 'int32', 'int64', 'uint8', 'bool', 'float16', 'bfloat16')),
      { maxLength: 6, selector: ([n]) => n },
    ),
    kind: fc.constantFrom<'full' | 'diff'>('full', 'diff'),
    steps: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }),
    loss: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: undefined }),
  })
  .chain(({ tensors, kind, steps, loss }) =>
    fc.tuple(...tensors.map(([, d]) => tensorArb(d))).map((ts) => {
      const m: FLModel = {
        params: new Map(ts.map((t, i) => [tensors[i]![0], t])),
        kind,
        meta: steps === undefined ? {} : { NUM_STEPS_CURRENT_ROUND: steps, note: 'x' },
      };
      if (loss !== undefined) m.metrics = { loss };
      return m;
    }),
  );

/** Exact equality of two models: names, dtypes, shapes, element values (bit for bit, -0 != 0), kind, meta. */
export function sameModel(a: FLModel, b: FLModel): boolean {
  if (a.kind !== b.kind || a.params.size !== b.params.size) return false;
  if (JSON.stringify(a.meta) !== JSON.stringify(b.meta) || JSON.stringify(a.metrics) !== JSON.stringify(b.metrics)) return false;
  for (const [n, t] of a.params) {
    const o = b.params.get(n);
    if (!o || o.dtype !== t.dtype || o.shape.join() !== t.shape.join() || o.data.length !== t.data.length) return false;
    for (let i = 0; i < t.data.length; i++) if (!Object.is(t.data[i], o.data[i])) return false;
  }
  return true;
}
