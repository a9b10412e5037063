import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cloneModel, CodecError, decodeModel, encodeModel, encodeModelParts, model, tensor, type CodecErrorCode } from '../src/index.js';
import { modelArb, safetensorsFile, sameModel } from './helpers.js';
import { expectFlareCode } from '../src/testing/index.js';

const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

describe('encodeModel / decodeModel', () => {
  it('roundtrips random models of every dtype exactly (property)', () => {
    fc.assert(
      fc.property(modelArb, (m) => {
        expect(sameModel(decodeModel(encodeModel(m)), m)).toBe(true);
      }),
      { numRuns: 300, seed: 2026120515 },
    );
  });

  it('writes a valid safetensors file: 8-byte LE length, JSON header padded to 8, contiguous data', () => {
    const bytes = encodeModel(model({ a: tensor(new Float32Array([1, 2])), b: tensor(new Float64Array([3])) }, 'diff'));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    // widest dtype first, so every tensor is aligned to its element size
    expect(header.b).toEqual({ dtype: 'F64', shape: [1], data_offsets: [0, 8] });
    expect(header.a).toEqual({ dtype: 'F32', shape: [2], data_offsets: [8, 16] });
    expect(header.__metadata__['flare.kind']).toBe('diff');
    expect(bytes.length).toBe(8 + n + 16);
  });

  it('returns zero-copy views of aligned data', () => {
    const bytes = encodeModel(model({ w: tensor(new Float32Array([1, 2, 3])) }));
    const t = decodeModel(bytes).params.get('w')!;
    expect(t.data.buffer).toBe(bytes.buffer);
  });

  it('copies misaligned data instead of failing', () => {
    const file = safetensorsFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32(1.5, -2), 1);
    const t = decodeModel(file).params.get('w')!;
    expect([...t.data]).toEqual([1.5, -2]);
  });

  it('encodeModelParts concatenates to encodeModel and shares tensor memory', () => {
    const data = new Float32Array([1, 2, 3, 4]);
    const m = model({ w: tensor(data, [2, 2]) });
    const { parts, byteLength } = encodeModelParts(m);
    expect(parts[1]!.buffer).toBe(data.buffer);
    const joined = Buffer.concat(parts.map((p) => Buffer.from(p)));
    expect(joined.length).toBe(byteLength);
    expect(Buffer.from(encodeModel(m)).equals(joined)).toBe(true);
  });
});

describe('interop with files written by other safetensors writers', () => {
  it('decodes a hand-built file with F16/BF16/I64/BOOL, foreign metadata and scalars', () => {
    // Bytes laid out by hand following https://github.com/huggingface/safetensors#format
    const data = new Uint8Array([
      ...new Uint8Array(BigInt64Array.of(-5n, 7n).buffer), // i64 [0,16)
      0x00, 0x3c, 0x00, 0xc0, // f16 1.0, -2.0 [16,20)
      0x80, 0x3f, 0x40, 0xc0, // bf16 1.0, -3.0 [20,24)
      1, 0, // bool [24,26)
    ]);
    const header = {
      __metadata__: { format: 'pt', source: 'torch' },
      ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] },
      h: { dtype: 'F16', shape: [2], data_offsets: [16, 20] },
      b: { dtype: 'BF16', shape: [1, 2], data_offsets: [20, 24] },
      mask: { dtype: 'BOOL', shape: [2], data_offsets: [24, 26] },
      empty: { dtype: 'F32', shape: [0, 3], data_offsets: [26, 26] },
    };
    const m = decodeModel(safetensorsFile(header, data));
    expect(m.kind).toBe('full');
    expect(m.meta).toEqual({ source: 'torch' });
    expect([...m.params.get('ids')!.data]).toEqual([-5n, 7n]);
    expect(m.params.get('h')).toMatchObject({ dtype: 'float16', shape: [2] });
    expect([...m.params.get('h')!.data]).toEqual([1, -2]);
    expect([...m.params.get('b')!.data]).toEqual([1, -3]);
    expect(m.params.get('mask')!.dtype).toBe('bool');
    expect(m.params.get('empty')!.data.length).toBe(0);
  });

  it('accepts a scalar (shape []) and trailing whitespace padding in the header', () => {
    const m = decodeModel(safetensorsFile({ s: { dtype: 'F64', shape: [], data_offsets: [0, 8] } }, new Uint8Array(Float64Array.of(2.5).buffer), 7));
    expect(m.params.get('s')!.shape).toEqual([]);
    expect(m.params.get('s')!.data[0]).toBe(2.5);
  });
});

describe('refuses malformed input before allocating (E_CODEC_*)', () => {
  const ok = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const eight = f32(1, 2);
  const lying = new Uint8Array(16);
  new DataView(lying.buffer).setBigUint64(0, 2n ** 62n, true);
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 1000n, true);

  const cases: Array<[string, () => Uint8Array, CodecErrorCode, object?]> = [
    ['empty input', () => new Uint8Array(0), 'E_CODEC_TRUNCATED'],
    ['7 bytes', () => new Uint8Array(7), 'E_CODEC_TRUNCATED'],
    ['header length beyond the data', () => huge, 'E_CODEC_TRUNCATED'],
    ['header length of 2^62 (lying length)', () => lying, 'E_CODEC_TOO_LARGE'],
    ['header over the configured limit', () => safetensorsFile(ok, eight), 'E_CODEC_TOO_LARGE', { maxHeaderBytes: 10 }],
    ['data over the configured limit', () => safetensorsFile(ok, eight), 'E_CODEC_TOO_LARGE', { maxBytes: 4 }],
    ['truncated data section', () => safetensorsFile(ok, f32(1)), 'E_CODEC_BOUNDS'],
    ['not JSON', () => safetensorsFile('x').map((b, i) => (i === 8 ? 0x7b : b)), 'E_CODEC_HEADER_JSON'],
    ['header is an array', () => safetensorsFile([1]), 'E_CODEC_HEADER_JSON'],
    ['invalid UTF-8', () => { const f = safetensorsFile({ a: 1 }); f[10] = 0xff; return f; }, 'E_CODEC_HEADER_JSON'],
    ['entry with an extra key', () => safetensorsFile({ w: { ...ok.w, extra: 1 } }, eight), 'E_CODEC_HEADER_JSON'],
    ['unknown dtype', () => safetensorsFile({ w: { ...ok.w, dtype: 'F8_E4M3' } }, eight), 'E_CODEC_DTYPE'],
    ['negative dimension', () => safetensorsFile({ w: { ...ok.w, shape: [-2] } }, eight), 'E_CODEC_SHAPE'],
    ['fractional dimension', () => safetensorsFile({ w: { ...ok.w, shape: [1.5] } }, eight), 'E_CODEC_SHAPE'],
    ['too many dimensions', () => safetensorsFile({ w: { ...ok.w, shape: new Array(17).fill(1) } }, eight), 'E_CODEC_SHAPE'],
    ['element count overflow', () => safetensorsFile({ w: { ...ok.w, shape: [2 ** 30, 2 ** 30, 2 ** 30] } }, eight), 'E_CODEC_SHAPE'],
    ['offsets out of bounds', () => safetensorsFile({ w: { ...ok.w, data_offsets: [0, 80] } }, eight), 'E_CODEC_BOUNDS'],
    ['offsets reversed', () => safetensorsFile({ w: { ...ok.w, data_offsets: [8, 0] } }, eight), 'E_CODEC_BOUNDS'],
    ['offsets not integers', () => safetensorsFile({ w: { ...ok.w, data_offsets: [0, '8'] } }, eight), 'E_CODEC_BOUNDS'],
    ['shape x dtype differs from the byte range', () => safetensorsFile({ w: { ...ok.w, shape: [3] } }, eight), 'E_CODEC_SIZE_MISMATCH'],
    [
      'overlapping tensors',
      () => safetensorsFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, eight),
      'E_CODEC_LAYOUT',
    ],
    ['a hole before the first tensor', () => safetensorsFile({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, eight), 'E_CODEC_LAYOUT'],
    ['unused trailing data', () => safetensorsFile({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, eight), 'E_CODEC_LAYOUT'],
    ['duplicate tensor names', () => { const f = safetensorsFile({ w: ok.w, v: ok.w }, eight); const s = new TextDecoder().decode(f).replace('"v"', '"w"'); return new TextEncoder().encode(s); }, 'E_CODEC_DUPLICATE'],
    ['a tensor named __proto__', () => safetensorsFile(JSON.parse('{"__proto__": {"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'), eight), 'E_CODEC_FORBIDDEN_KEY'],
    ['a tensor named constructor', () => safetensorsFile({ constructor: ok.w }, eight), 'E_CODEC_FORBIDDEN_KEY'],
    ['too many tensors', () => safetensorsFile(ok, eight), 'E_CODEC_TOO_MANY_TENSORS', { maxTensors: 0 }],
    ['metadata that is not a string map', () => safetensorsFile({ __metadata__: { a: 1 }, ...ok }, eight), 'E_CODEC_METADATA'],
    ['an unknown model kind', () => safetensorsFile({ __metadata__: { 'flare.kind': 'weights' }, ...ok }, eight), 'E_CODEC_METADATA'],
    ['flare.meta that is not JSON', () => safetensorsFile({ __metadata__: { 'flare.meta': '{' }, ...ok }, eight), 'E_CODEC_METADATA'],
    ['flare.meta with a __proto__ key', () => safetensorsFile({ __metadata__: { 'flare.meta': '{"__proto__":{"x":1}}' }, ...ok }, eight), 'E_CODEC_FORBIDDEN_KEY'],
    ['flare.metrics not numbers', () => safetensorsFile({ __metadata__: { 'flare.metrics': '{"a":"b"}' }, ...ok }, eight), 'E_CODEC_METADATA'],
    ['nesting deeper than 8 in the header', () => safetensorsFile({ w: { ...ok.w, shape: JSON.parse('['.repeat(20) + ']'.repeat(20)) } }, eight), 'E_CODEC_HEADER_JSON'],
    ['more __metadata__ entries than maxMetadataEntries', () => safetensorsFile({ __metadata__: { a: '1', b: '2', c: '3' }, ...ok }, eight), 'E_CODEC_TOO_LARGE', { maxMetadataEntries: 2 }],
    ['more members than the limits allow (4 per tensor + the metadata entries)', () => safetensorsFile({ __metadata__: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, 'v'])), ...ok }, eight), 'E_CODEC_TOO_LARGE', { maxTensors: 1, maxMetadataEntries: 4 }],
    ['a header above the 2 MiB default (a flood of metadata keys)', () => safetensorsFile({ __metadata__: Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`k${i}`, `${i}`])), ...ok }, eight), 'E_CODEC_TOO_LARGE'],
  ];
  it.each(cases)('%s', (_title, bytes, code, limits) => {
    expectFlareCode(() => decodeModel(bytes(), limits), code);
  });

  it('refuses to encode a tensor named __metadata__ or __proto__ (E_CODEC_FORBIDDEN_KEY)', () => {
    for (const n of ['__metadata__', '__proto__']) {
      expectFlareCode(() => encodeModel(model(new Map([[n, tensor(new Float32Array(1))]]))), 'E_CODEC_FORBIDDEN_KEY');
    }
  });

  it('never lets wire names reach an object prototype', () => {
    const m = decodeModel(safetensorsFile({ __metadata__: { 'flare.meta': '{"a":{"b":1}}' }, ...ok }, eight));
    expect(({} as Record<string, unknown>)['b']).toBeUndefined();
    expect(m.params instanceof Map).toBe(true);
  });
});

describe('hostile sizes: only CodecError, never RangeError (issue 14 item 7)', () => {
  const big = { maxHeaderBytes: 64 * 2 ** 20 };
  const ok = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
  const four = new Uint8Array(4);
  /** A file whose header is `text` exactly (not necessarily JSON), followed by `data` zero bytes. */
  const raw = (text: string, data = 0): Uint8Array => {
    const json = new TextEncoder().encode(text);
    const out = new Uint8Array(8 + json.length + data);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    return out;
  };
  it.each([
    ['a 10 M-character dtype', () => safetensorsFile({ w: { ...ok, dtype: 'F'.repeat(10_000_000) } }, four), 'E_CODEC_DTYPE'],
    ['a 10 M-character tensor name, twice', () => {
      const name = 'n'.repeat(10_000_000);
      return raw(`{"${name}":${JSON.stringify(ok)},"${name}":${JSON.stringify(ok)}}`, 4);
    }, 'E_CODEC_DUPLICATE'],
    ['a 10 M-character metadata string holding 5 M nested arrays', () => safetensorsFile({ __metadata__: { 'flare.meta': '['.repeat(5_000_000) + ']'.repeat(5_000_000) }, w: ok }, four), 'E_CODEC_METADATA'],
    ['10 M-character string left open', () => raw(`{"w":"${'x'.repeat(10_000_000)}`), 'E_CODEC_HEADER_JSON'],
  ] as Array<[string, () => Uint8Array, CodecErrorCode]>)('%s', (_title, bytes, code) => {
    expectFlareCode(() => decodeModel(bytes(), big), code);
  });

  it('fuzz: headers of long strings and deep nesting in every field only ever throw CodecError', () => {
    const hostile = fc.oneof(
      fc.nat(12).map((k) => 'x'.repeat(10 ** (k % 7))),
      fc.integer({ min: 1, max: 2000 }).map((d) => JSON.parse('['.repeat(d) + ']'.repeat(d)) as unknown),
      fc.nat(2000).map((d) => '['.repeat(d)),
      fc.jsonValue({ maxDepth: 3 }),
    );
    fc.assert(
      fc.property(fc.constantFrom('dtype', 'shape', 'data_offsets', 'meta', 'metrics', 'kind', 'name'), hostile, (field, v) => {
        const entry: Record<string, unknown> = { ...ok };
        let header: Record<string, unknown> = { w: entry };
        if (field === 'dtype' || field === 'shape' || field === 'data_offsets') entry[field] = v;
        else if (field === 'name') header = { [typeof v === 'string' ? v : JSON.stringify(v)]: entry };
        else header = { __metadata__: { [`flare.${field}`]: typeof v === 'string' ? v : JSON.stringify(v) }, w: entry };
        try {
          decodeModel(safetensorsFile(header, four), big);
        } catch (e) {
          expect(e).toBeInstanceOf(CodecError);
        }
      }),
      { numRuns: 300, seed: 2026120516 },
    );
  });
});

describe('fuzz', () => {
  it('10,000 mutated model files only ever throw CodecError', () => {
    const seed = encodeModel(
      model({ w: tensor(new Float32Array([1, 2, 3, 4]), [2, 2]), b: tensor(new Float64Array([5])), n: tensor(BigInt64Array.of(7n)) }, 'diff', {
        NUM_STEPS_CURRENT_ROUND: 3,
      }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'insert')), { minLength: 1, maxLength: 6 }),
        (edits) => {
          let bytes = seed.slice();
          for (const [at, value, op] of edits) {
            const i = at % (bytes.length + 1);
            if (op === 'set' && i < bytes.length) bytes[i] = value;
            else if (op === 'cut') bytes = bytes.subarray(0, i);
            else bytes = Uint8Array.from([...bytes.subarray(0, i), value, ...bytes.subarray(i)]);
          }
          try {
            decodeModel(bytes);
          } catch (e) {
            expect(e).toBeInstanceOf(CodecError);
          }
        },
      ),
      { numRuns: 10_000, seed: 2026120517 },
    );
  });
});

describe('input held in a Node Buffer (what sockets deliver)', () => {
  it('decodes misaligned tensors from the right bytes and never aliases other bytes of the buffer', () => {
    const file = encodeModel(model({ w: tensor(new Float32Array([1, 2, 3])), u: tensor(Uint8Array.of(5, 6)) }));
    // The file at an odd offset inside a larger Buffer, with other data before it, as in a socket read buffer.
    const pool = Buffer.alloc(file.length + 33, 0xee);
    pool.set(file, 33);
    const view = pool.subarray(33);
    const m = decodeModel(view);
    expect([...m.params.get('w')!.data]).toEqual([1, 2, 3]);
    expect([...m.params.get('u')!.data]).toEqual([5, 6]);
    pool.fill(0); // later traffic overwrites the socket buffer: the misaligned copy must not change
    expect([...m.params.get('w')!.data]).toEqual([1, 2, 3]);
    expect(Buffer.isBuffer(m.params.get('u')!.data)).toBe(false);
  });

  it('cloneModel copies even Buffer-backed tensors', () => {
    const data = Buffer.from([1, 2, 3]);
    const c = cloneModel(model({ u: tensor(data) }));
    data[0] = 9;
    expect([...c.params.get('u')!.data]).toEqual([1, 2, 3]);
  });
});
