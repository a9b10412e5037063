import { ModelError } from './errors/areas.js';
import type { FLModel } from './model.js';
import { elementCount, type DType } from './tensor.js';

/** One tensor of a {@link ModelManifest}: what an update's tensor of that name must be. */
export interface ManifestEntry {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/**
 * The tensors a model has (names, dtypes, shapes), without their values: what every update of a round must
 * match. Make it from the round's global model with {@link manifestOf}.
 */
export type ModelManifest = ReadonlyMap<string, ManifestEntry>;

/** The manifest of `m` (tensors for which `skip(name)` is true are left out). Shapes are copied and frozen. */
export function manifestOf(m: FLModel, skip?: (name: string) => boolean): ModelManifest {
  const out = new Map<string, ManifestEntry>();
  for (const [name, t] of m.params) if (skip?.(name) !== true) out.set(name, { dtype: t.dtype, shape: Object.freeze([...t.shape]) });
  return out;
}

/** Options of {@link checkUpdateAgainst}. */
export interface ManifestCheckOptions {
  /** Who sent the update (named in the error). */
  readonly from?: string;
  /** Accept an update that lacks some of the manifest's tensors (FedAvg averages each tensor over the sites that sent it). Default false. */
  readonly partial?: boolean;
  /** Tensors neither checked nor required (e.g. the aggregator's `exclude`). */
  readonly skip?: (name: string) => boolean;
}

const quoted = (name: string): string => JSON.stringify(name.length > 128 ? `${name.slice(0, 128)}…` : name);
const shapeText = (s: readonly number[]): string => `[${s.join(', ')}]`;

/**
 * Checks that an update has exactly the manifest's tensors, each with the manifest's dtype and shape, and
 * data of the shape's size: a tensor the manifest lacks, another dtype (float64 for a float32 tensor), another
 * shape, or (unless `partial`) a missing tensor is refused. Call it before an aggregator sees the update, with
 * the manifest of the round's global model, so that one site's malformed update is refused alone instead of
 * becoming the template the others are compared with. Reads names and shapes only, never the values.
 *
 * @throws ModelError E_MODEL_MISMATCH naming the tensor, the site and what differs.
 * @example
 * ```ts
 * const manifest = manifestOf(globalModel);
 * checkUpdateAgainst(manifest, update, { from: site });
 * aggregator.accept(update, { from: site, round });
 * ```
 */
export function checkUpdateAgainst(manifest: ModelManifest, update: FLModel, options: ManifestCheckOptions = {}): void {
  const who = options.from === undefined ? 'the update' : `the update of ${quoted(options.from)}`;
  if (!(update?.params instanceof Map)) throw new ModelError('E_MODEL_MISMATCH', `${who} has no tensor map`);
  const skip = options.skip;
  let matched = 0;
  for (const [name, t] of update.params) {
    if (skip?.(name) === true) continue;
    const want = manifest.get(name);
    if (want === undefined) throw new ModelError('E_MODEL_MISMATCH', `${who}: tensor ${quoted(name)} is not in the global model`);
    if (t.dtype !== want.dtype) throw new ModelError('E_MODEL_MISMATCH', `${who}: tensor ${quoted(name)} is ${String(t.dtype)}, the global model's is ${want.dtype}`);
    const shape = t.shape;
    if (!Array.isArray(shape) || shape.length !== want.shape.length || !shape.every((d, i) => d === want.shape[i])) {
      throw new ModelError('E_MODEL_MISMATCH', `${who}: tensor ${quoted(name)} has shape ${Array.isArray(shape) ? shapeText(shape) : 'none'}, the global model's is ${shapeText(want.shape)}`);
    }
    if (t.data?.length !== elementCount(want.shape)) {
      throw new ModelError('E_MODEL_MISMATCH', `${who}: tensor ${quoted(name)} holds ${String(t.data?.length)} values for shape ${shapeText(want.shape)}`);
    }
    matched++;
  }
  if (options.partial === true) return;
  let required = manifest.size;
  if (skip !== undefined) for (const name of manifest.keys()) if (skip(name)) required--;
  if (matched === required) return;
  for (const name of manifest.keys()) {
    if (skip?.(name) !== true && !update.params.has(name)) throw new ModelError('E_MODEL_MISMATCH', `${who}: tensor ${quoted(name)} of the global model is missing`);
  }
}
