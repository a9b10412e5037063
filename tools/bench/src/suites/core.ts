import { decodeModel, encodeModel, model, tensor } from '@flare/core';
import { time, type Suite } from '../harness.js';

// A 100 MB float32 model in 50 tensors of 2 MB (sizes of a mid-sized CNN's layers), encoded and decoded,
// against a plain Buffer copy of the same bytes in the same run.
export const suite: Suite = {
  name: 'core',
  description: 'safetensors codec: encode+decode of a 100 MB model vs a plain Buffer copy of the same bytes',
  async run() {
    const tensors = 50;
    const per = (100 * 2 ** 20) / 4 / tensors;
    const m = model(
      Array.from({ length: tensors }, (_, i) => [`layer${i}.weight`, tensor(new Float32Array(per).map((_, j) => (j % 97) / 97), [per / 256, 256])] as const),
    );
    const bytes = encodeModel(m);
    const mb = bytes.length / 1e6;
    const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const copy = await time(() => Buffer.from(source), { minRuns: 10 });
    const encode = await time(() => encodeModel(m), { minRuns: 10 });
    const decode = await time(() => decodeModel(bytes), { minRuns: 10 });
    const both = await time(() => decodeModel(encodeModel(m)), { minRuns: 10 });
    // The same file one byte into a buffer: no tensor is aligned, so decoding must copy every byte.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const misaligned = shifted.subarray(1);
    const decodeCopy = await time(() => decodeModel(misaligned), { minRuns: 10 });
    const rate = (ms: number) => mb / (ms / 1000);
    const baseline = { label: 'Buffer copy', value: rate(copy.median) };
    return [
      { label: `encode+decode ${mb.toFixed(0)} MB`, value: rate(both.median), unit: 'MB/s', baseline, higherIsBetter: true },
      { label: 'encode (one copy into a single buffer)', value: rate(encode.median), unit: 'MB/s', baseline, higherIsBetter: true },
      { label: 'decode, aligned input (zero-copy views)', value: rate(decode.median), unit: 'MB/s', baseline, higherIsBetter: true, aim: '>= 0.5x' },
      { label: 'decode, misaligned input (copies every tensor)', value: rate(decodeCopy.median), unit: 'MB/s', baseline, higherIsBetter: true, aim: '>= 0.5x' },
    ];
  },
};
