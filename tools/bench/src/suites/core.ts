import { BufferArena, decodeModel, encodedByteLength, encodeModel, encodeModelInto, model, parseStrictJson, tensor, MODEL_LIMITS } from '@flare/core';
import { paired, time, type Row, type Suite } from '../harness.js';

// Two parts. The codec: a 100 MB float32 model in 50 tensors of 2 MB (sizes of a mid-sized CNN's layers),
// encoded and decoded, against memcpy of the same bytes into a preallocated buffer (the real limit) and against
// allocate-and-copy (what a fresh buffer per message costs), run by run alternately. Strict JSON under
// attack (issue 14 item 7): parseStrictJson against JSON.parse on the same text, run by run alternately,
// on a 15 MiB safetensors header with 1.1 M metadata keys, a 64 KiB frame header and a 20,000-tensor index;
// and how long decodeModel blocks the event loop on the worst header its default limits let through.

const utf8 = new TextEncoder();

/** A safetensors file: 8-byte little-endian header length, the header text, then `data` zero bytes. */
function safetensors(header: string, data = 0): Uint8Array {
  const json = utf8.encode(header);
  const out = new Uint8Array(8 + json.length + data);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

/** The attack of issue 14 item 7: one `__metadata__` map of 1.1 M short entries, about 15 MiB. */
function metadataFlood(): string {
  const parts: string[] = [];
  for (let i = 0; i < 1_100_000; i++) parts.push(`"k${i}":"${i % 10}"`);
  return `{"__metadata__":{${parts.join(',')}},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`;
}

/** A 64 KiB frame header: a login-sized object with a list of small records. */
function frameHeader(): string {
  const items: string[] = [];
  let length = 0;
  for (let i = 0; length < 64 * 1024 - 200; i++) {
    const item = `{"id":${i},"name":"site-${i}","ok":true,"v":1.5e-3}`;
    items.push(item);
    length += item.length + 1;
  }
  return `{"type":"login","nonce":"${'a'.repeat(64)}","list":[${items.join(',')}]}`;
}

/** The index of `n` tensors as a real model has it. */
function tensorIndex(n: number): string {
  const parts = ['"__metadata__":{"format":"pt"}'];
  for (let i = 0, off = 0; i < n; i++, off += 8192) parts.push(`"layer.${i}.weight":{"dtype":"F32","shape":[64,32],"data_offsets":[${off},${off + 8192}]}`);
  return `{${parts.join(',')}}`;
}

/** The worst header the default limits let through to JSON.parse: one object of as many keys as fit in maxHeaderBytes and maxMembers. */
function worstHeader(): string {
  const members = 4 * MODEL_LIMITS.maxTensors + MODEL_LIMITS.maxMetadataEntries;
  const parts: string[] = [];
  let length = 20;
  for (let i = 0; i < members && length < MODEL_LIMITS.maxHeaderBytes - 64; i++) {
    const p = `"${i}":${i % 10}`;
    parts.push(p);
    length += p.length + 1;
  }
  return `{"w":{${parts.join(',')}}}`;
}

const refusedOrThrow = (fn: () => unknown): void => {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof Error && 'code' in e)) throw e;
    return;
  }
  throw new Error('expected a refusal');
};

async function strictJsonRows(): Promise<Row[]> {
  const rows: Row[] = [];
  const vs = (label: string, text: string, runs: number, inner = 1): Promise<void> =>
    paired(
      () => {
        for (let i = 0; i < inner; i++) JSON.parse(text);
      },
      () => {
        for (let i = 0; i < inner; i++) parseStrictJson(text, { maxDepth: 32 });
      },
      { runs },
    ).then((p) => {
      rows.push({
        label: `parseStrictJson, ${label}`,
        value: p.subject.median / inner,
        unit: 'ms',
        baseline: { label: 'JSON.parse on the same text', value: p.baseline.median / inner },
        higherIsBetter: false,
        aim: '>= 0.33x (within 3x)',
      });
      rows.push({ label: `  the same, median of ${runs} paired runs (JSON.parse time / strict time)`, value: p.ratio, unit: 'x', aim: '>= 0.33' });
    });

  const flood = metadataFlood();
  await vs(`${(flood.length / 2 ** 20).toFixed(1)} MiB header with 1.1 M metadata keys`, flood, 3);
  const frame = frameHeader();
  await vs(`${(frame.length / 1024).toFixed(0)} KiB frame header`, frame, 15, 20);
  const index = tensorIndex(20_000);
  await vs(`${(index.length / 2 ** 20).toFixed(1)} MiB index of 20,000 tensors`, index, 7);

  const floodFile = safetensors(flood, 4);
  const refuse = await time(() => refusedOrThrow(() => decodeModel(floodFile)), { minRuns: 3, minMs: 0 });
  rows.push({ label: 'decodeModel refuses the 1.1 M-key header (above maxHeaderBytes, 2 MiB: refused before decoding)', value: refuse.median, unit: 'ms' });
  const floodUnder16 = await time(() => refusedOrThrow(() => decodeModel(floodFile, { maxHeaderBytes: 16 * 2 ** 20 })), { minRuns: 3, minMs: 0 });
  rows.push({ label: '  the same with maxHeaderBytes raised to 16 MiB (refused at the member limit, 4 x maxTensors + maxMetadataEntries)', value: floodUnder16.median, unit: 'ms' });
  const worst = worstHeader();
  const worstFile = safetensors(worst, 4);
  const block = await time(() => refusedOrThrow(() => decodeModel(worstFile)), { minRuns: 5, minMs: 0 });
  rows.push({
    label: `decodeModel on the worst header the default limits admit (${(worst.length / 2 ** 20).toFixed(1)} MiB, ${(worst.match(/:/g) ?? []).length} keys in one object): event loop blocked`,
    value: block.median,
    unit: 'ms',
  });
  return rows;
}

async function codecRows(): Promise<Row[]> {
  const tensors = 50;
  const per = (100 * 2 ** 20) / 4 / tensors;
  const m = model(
    Array.from({ length: tensors }, (_, i) => [`layer${i}.weight`, tensor(new Float32Array(per).map((_, j) => (j % 97) / 97), [per / 256, 256])] as const),
  );
  const size = encodedByteLength(m);
  const mb = size / 1e6;
  const rate = (ms: number) => mb / (ms / 1000);
  const source = encodeModel(m);
  // Baselines: copying the same bytes into a buffer that already exists (what moving a model costs at best),
  // and into a new one (what it costs when every message gets fresh memory: page faults dominate on a VM).
  const target = new Uint8Array(size);
  const arena = new BufferArena();
  const memcpy = () => target.set(source);
  const allocCopy = () => new Uint8Array(source);
  const intoPreallocated = () => {
    encodeModelInto(m, target);
    return decodeModel(target);
  };
  const allocating = () => decodeModel(encodeModel(m));
  const shifted = new Uint8Array(size + 1);
  shifted.set(source, 1);
  const misaligned = shifted.subarray(1);
  const decodeIntoArena = () => {
    arena.reset();
    return decodeModel(misaligned, {}, { arena });
  };
  const fresh = await paired(memcpy, intoPreallocated, { runs: 9 });
  const alloc = await paired(allocCopy, allocating, { runs: 5 });
  const arenaPair = await paired(memcpy, decodeIntoArena, { runs: 9 });
  const copyNew = await paired(memcpy, () => decodeModel(misaligned), { runs: 5 });
  const memcpyRow = { label: 'memcpy into a preallocated buffer', value: rate(fresh.baseline.median) };
  const allocRow = { label: 'allocate and copy', value: rate(alloc.baseline.median) };
  return [
    { label: `encode+decode ${mb.toFixed(0)} MB into a preallocated buffer (encodeModelInto, decode as views)`, value: rate(fresh.subject.median), unit: 'MB/s', baseline: memcpyRow, higherIsBetter: true, aim: '>= 0.5x' },
    { label: `  the same, median of ${fresh.baseline.runs} paired runs (memcpy time / encode+decode time)`, value: fresh.ratio, unit: 'x', aim: '>= 0.5' },
    { label: 'encode+decode allocating (encodeModel: a new buffer per message)', value: rate(alloc.subject.median), unit: 'MB/s', baseline: allocRow, higherIsBetter: true },
    { label: '  allocate-and-copy against memcpy into a preallocated buffer', value: rate(alloc.baseline.median), unit: 'MB/s', baseline: memcpyRow, higherIsBetter: true },
    { label: 'decode misaligned input into a BufferArena (copies every tensor, no new memory)', value: rate(arenaPair.subject.median), unit: 'MB/s', baseline: memcpyRow, higherIsBetter: true, aim: '>= 0.5x' },
    { label: 'decode misaligned input without an arena (copies into new memory)', value: rate(copyNew.subject.median), unit: 'MB/s', baseline: memcpyRow, higherIsBetter: true },
  ];
}

export const suite: Suite = {
  name: 'core',
  description: 'safetensors codec (100 MB model) vs memcpy into a preallocated buffer and allocate-and-copy; strict JSON vs JSON.parse on hostile and ordinary headers',
  async run() {
    const wanted = process.env['FLARE_BENCH_CORE'];
    return [...(wanted === 'json' ? [] : await codecRows()), ...(wanted === 'codec' ? [] : await strictJsonRows())];
  },
};
