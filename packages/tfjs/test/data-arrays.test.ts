import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeModel, model, tensor } from '@flare/core';
import { expectFlareCode, expectFlareCodeAsync } from '@flare/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadArrays } from '../src/data/arrays.js';
import { parseNpy } from '../src/data/npy.js';

const vector = (f: string): Promise<Buffer> => readFile(new URL(`./vectors/${f}`, import.meta.url));

/** A .npy file with the given header dict text (version 1, padded as numpy pads). */
function npy(header: string, data: Uint8Array): Uint8Array {
  let h = header;
  while ((10 + h.length + 1) % 64 !== 0) h += ' ';
  h += '\n';
  const out = new Uint8Array(10 + h.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, h.length & 0xff, h.length >> 8]);
  out.set(new TextEncoder().encode(h), 10);
  out.set(data, 10 + h.length);
  return out;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-tfjs-arrays-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('parseNpy', () => {
  it('reads files numpy wrote: float32 matrix, int64 and uint8 vectors', async () => {
    const x = parseNpy(await vector('x-f4.npy'), 'x-f4.npy');
    expect(x.shape).toEqual([4, 3]);
    expect([...x.data]).toEqual(Array.from({ length: 12 }, (_, i) => i / 4));
    expect([...parseNpy(await vector('y-i8.npy'), 'y').data]).toEqual([0, 1, 2, 1]);
    expect([...parseNpy(await vector('y-u1.npy'), 'y').data]).toEqual([1, 0, 1, 1]);
  });

  it('accepts the header keys in another order', () => {
    const a = parseNpy(npy("{'shape': (2,), 'fortran_order': False, 'descr': '<i4', }", new Uint8Array(new Int32Array([5, -6]).buffer)), 'a.npy');
    expect([...a.data]).toEqual([5, -6]);
  });

  it('refuses bytes that are not a .npy file, naming the source (E_ML_DATA_FORMAT)', () => {
    expect(expectFlareCode(() => parseNpy(new TextEncoder().encode('a,b\n1,2\n'), 'a.npy'), 'E_ML_DATA_FORMAT').message).toMatch(/^a\.npy is not a \.npy file/);
  });

  it('refuses fortran_order True and big-endian dtypes from real numpy files (E_ML_DATA_FORMAT)', async () => {
    const fortran = await vector('x-f8-fortran.npy');
    expect(expectFlareCode(() => parseNpy(fortran, 'x-f8-fortran.npy'), 'E_ML_DATA_FORMAT').message).toMatch(/fortran_order True/);
    const big = await vector('x-big-endian.npy');
    expect(expectFlareCode(() => parseNpy(big, 'x-big-endian.npy'), 'E_ML_DATA_FORMAT').message).toMatch(/dtype '>f4' is not supported/);
  });

  it('refuses object dtypes, extra header keys, a data section of another size and truncation (E_ML_DATA_FORMAT)', () => {
    const f4 = new Uint8Array(new Float32Array([1, 2]).buffer);
    expectFlareCode(() => parseNpy(npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", f4), 'a'), 'E_ML_DATA_FORMAT');
    expectFlareCode(() => parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1, }", f4), 'a'), 'E_ML_DATA_FORMAT');
    expectFlareCode(() => parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4), 'a'), 'E_ML_DATA_FORMAT');
    expectFlareCode(() => parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4).subarray(0, 20), 'a'), 'E_ML_DATA_FORMAT');
    expectFlareCode(() => parseNpy(npy("__import__('os')", f4), 'a'), 'E_ML_DATA_FORMAT');
  });

  it('refuses a shape beyond what a loader allocates before allocating (E_ML_DATA_TOO_LARGE)', () => {
    const e = expectFlareCode(() => parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }", new Uint8Array(8)), 'huge.npy'), 'E_ML_DATA_TOO_LARGE');
    expect(e.message).toMatch(/^huge\.npy: shape/);
  });
});

describe('loadArrays', () => {
  it('reads features and labels from .npy files', async () => {
    const d = join(dir, 'npy');
    await mkdir(d);
    await copyFile(new URL('./vectors/x-f4.npy', import.meta.url), join(d, 'x.npy'));
    await copyFile(new URL('./vectors/y-i8.npy', import.meta.url), join(d, 'y.npy'));
    const data = await loadArrays(d, { features: 'x', labels: 'y' });
    expect(data.n).toBe(4);
    expect(data.features).toBe(3);
    expect([...data.labels]).toEqual([0, 1, 2, 1]);
  });

  it('reads features and labels from a .safetensors file, flattening image rows', async () => {
    const d = join(dir, 'st');
    await mkdir(d);
    const images = tensor(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), [2, 2, 2]);
    const labels = tensor(BigInt64Array.from([1n, 0n]), [2]);
    await writeFile(join(d, 'data.safetensors'), encodeModel(model(new Map([['images', images], ['labels', labels]]))));
    const data = await loadArrays(d, { features: 'images', labels: 'labels' });
    expect(data.features).toBe(4);
    expect([...data.labels]).toEqual([1, 0]);
    expect([...data.x.subarray(4)]).toEqual([5, 6, 7, 8]);
  });

  it('refuses a missing folder and a missing array (E_ML_DATA_FILE)', async () => {
    await expectFlareCodeAsync(() => loadArrays(join(dir, 'none'), { features: 'x', labels: 'y' }), 'E_ML_DATA_FILE');
    const e = await expectFlareCodeAsync(() => loadArrays(join(dir, 'npy'), { features: 'x', labels: 'z', name: "dataset 'scans'" }), 'E_ML_DATA_FILE');
    expect(e.message).toMatch(/^dataset 'scans': no z\.npy and no \.safetensors file with a tensor 'z'/);
  });

  it('refuses labels that are not one per row, and NaN features naming the row (E_ML_DATA_SHAPE, E_ML_DATA_FORMAT)', async () => {
    const d = join(dir, 'bad');
    await mkdir(d);
    const x = tensor(Float32Array.from([1, 2, 3, Number.NaN, 5, 6]), [3, 2]);
    await writeFile(join(d, 'a.safetensors'), encodeModel(model(new Map([['x', x], ['y', tensor(Float32Array.from([0, 1]), [2])], ['y3', tensor(Float32Array.from([0, 1, 0.5]), [3])]]))));
    await expectFlareCodeAsync(() => loadArrays(d, { features: 'x', labels: 'y' }), 'E_ML_DATA_SHAPE');
    const e = await expectFlareCodeAsync(() => loadArrays(d, { features: 'x', labels: 'y3', task: 'regression' }), 'E_ML_DATA_FORMAT');
    expect(e.message).toMatch(/a\.safetensors:x: row 2, value 2 is not finite/);
  });

  it('refuses a class label that is not a non-negative integer (E_ML_DATA_LABEL)', async () => {
    const d = join(dir, 'frac');
    await mkdir(d);
    await writeFile(join(d, 'a.safetensors'), encodeModel(model(new Map([['x', tensor(Float32Array.from([1, 2]), [2, 1])], ['y', tensor(Float32Array.from([0, 0.5]), [2])]]))));
    await expectFlareCodeAsync(() => loadArrays(d, { features: 'x', labels: 'y' }), 'E_ML_DATA_LABEL');
  });

  it('refuses files over the size limit before reading them (E_ML_DATA_TOO_LARGE)', async () => {
    await expectFlareCodeAsync(() => loadArrays(join(dir, 'npy'), { features: 'x', labels: 'y', maxBytes: 200 }), 'E_ML_DATA_TOO_LARGE');
  });
});
