import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MlError, decodeModel, type Tensor } from '@flare/core';
import { DEFAULT_MAX_DATA_BYTES } from './csv.js';
import { parseNpy } from './npy.js';
import { readBounded } from './read-bounded.js';
import type { LabelTask, TabularData } from './tabular.js';

/** Options of {@link loadArrays}. */
export interface ArrayFolderOptions {
  /** The features array: `<features>.npy` in the folder, or a tensor of that name in one of its .safetensors files. */
  readonly features: string;
  /** The labels array, found the same way: shape `[n]` or `[n, 1]`. */
  readonly labels: string;
  /** How labels are read (default classification: non-negative integer class indices). */
  readonly task?: LabelTask;
  /** Largest total of the files read, in bytes (default 256 MiB). */
  readonly maxBytes?: number;
  /** How messages name the source (default: the folder's path). */
  readonly name?: string;
}

const ARRAY_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

interface Found {
  readonly shape: readonly number[];
  readonly data: Float32Array;
  readonly where: string;
}

/**
 * Reads features and labels from a folder of `.npy` files (`<name>.npy`, see {@link parseNpy}) or
 * `.safetensors` files (a tensor of that name in exactly one of them). Features of shape `[n, ...]` become `n`
 * rows of the remaining dimensions flattened (an image network starts with a reshape layer).
 *
 * @throws MlError E_ML_DATA_FILE (no folder, an array not found or found twice), E_ML_DATA_TOO_LARGE,
 *   E_ML_DATA_FORMAT (a file that does not parse, a value that is not finite: its row named),
 *   E_ML_DATA_SHAPE (row counts disagree, labels not one per row), E_ML_DATA_LABEL (a class index that is not
 *   a non-negative integer).
 * @example
 * ```ts
 * const data = await loadArrays('/data/scans', { features: 'x', labels: 'y' });
 * ```
 */
export async function loadArrays(dir: string, o: ArrayFolderOptions): Promise<TabularData> {
  const name = o.name ?? dir;
  for (const a of [o.features, o.labels]) if (!ARRAY_NAME.test(a)) throw new RangeError(`array names are 1-128 letters, digits, _ . - (not starting with . or -), got ${JSON.stringify(a.slice(0, 64))}`);
  let entries: string[];
  try {
    entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
  } catch (e) {
    throw new MlError('E_ML_DATA_FILE', `${name} cannot be read as a folder (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
  }
  let budget = o.maxBytes ?? DEFAULT_MAX_DATA_BYTES;
  const read = async (file: string): Promise<Buffer> => {
    const b = await readBounded(join(dir, file), budget, `${name}/${file}`);
    budget -= b.length;
    return b;
  };
  const safetensors = entries.filter((e) => e.endsWith('.safetensors'));
  let decoded: Array<{ file: string; params: ReadonlyMap<string, Tensor> }> | undefined;
  const find = async (array: string): Promise<Found> => {
    if (entries.includes(`${array}.npy`)) {
      const where = `${name}/${array}.npy`;
      const a = parseNpy(await read(`${array}.npy`), where);
      return { shape: a.shape, data: a.data, where };
    }
    decoded ??= await Promise.all(
      safetensors.map(async (file) => {
        const bytes = await read(file);
        try {
          return { file, params: decodeModel(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).params };
        } catch (e) {
          throw new MlError('E_ML_DATA_FORMAT', `${name}/${file} is not a valid safetensors file (${e instanceof Error ? e.message.slice(0, 200) : 'invalid'})`, { cause: e });
        }
      }),
    );
    const hits = decoded.filter((d) => d.params.has(array));
    if (hits.length !== 1) {
      throw new MlError('E_ML_DATA_FILE', `${name}: ${hits.length === 0 ? `no ${array}.npy and no .safetensors file with a tensor '${array}'` : `tensor '${array}' is in ${hits.length} .safetensors files (${hits.map((h) => h.file).join(', ')})`}`);
    }
    const t = hits[0]!.params.get(array)!;
    const where = `${name}/${hits[0]!.file}:${array}`;
    if (t.dtype === 'int64') return { shape: t.shape, data: Float32Array.from(t.data as BigInt64Array, Number), where };
    if (t.dtype === 'float32' || t.dtype === 'float16' || t.dtype === 'bfloat16') return { shape: t.shape, data: t.data as Float32Array, where };
    if (t.dtype === 'float64') return { shape: t.shape, data: Float32Array.from(t.data as Float64Array), where };
    return { shape: t.shape, data: Float32Array.from(t.data as Int32Array | Uint8Array), where };
  };
  const fx = await find(o.features);
  const fy = await find(o.labels);
  const n = fx.shape[0];
  if (fx.shape.length < 2 || n === undefined || n === 0) throw new MlError('E_ML_DATA_SHAPE', `${fx.where}: features need shape [rows, features...], got [${fx.shape.join(', ')}]`);
  const features = fx.data.length / n;
  if (features < 1) throw new MlError('E_ML_DATA_SHAPE', `${fx.where}: no feature values per row (shape [${fx.shape.join(', ')}])`);
  const labelShapeOk = fy.shape[0] === n && (fy.shape.length === 1 || (fy.shape.length === 2 && fy.shape[1] === 1));
  if (!labelShapeOk) throw new MlError('E_ML_DATA_SHAPE', `${fy.where}: labels need shape [${n}] or [${n}, 1] (one per row of ${o.features}), got [${fy.shape.join(', ')}]`);
  for (let i = 0; i < fx.data.length; i++) {
    if (!Number.isFinite(fx.data[i]!)) throw new MlError('E_ML_DATA_FORMAT', `${fx.where}: row ${Math.floor(i / features) + 1}, value ${(i % features) + 1} is not finite`);
  }
  const task = o.task ?? 'classification';
  for (let i = 0; i < n; i++) {
    const v = fy.data[i]!;
    if (!Number.isFinite(v)) throw new MlError('E_ML_DATA_FORMAT', `${fy.where}: row ${i + 1} is not finite`);
    if (task === 'classification' && !(Number.isInteger(v) && v >= 0)) throw new MlError('E_ML_DATA_LABEL', `${fy.where}: row ${i + 1} is not a class index (a non-negative integer)`);
  }
  return { x: fx.data, labels: fy.data, features, n };
}
