import {
  AggregatorError,
  CodecError,
  ModelError,
  decodeModel,
  encodeModel,
  type FLModel,
  type FloatArray,
  type JsonValue,
  type Tensor,
} from '@flare/core';
import { z } from 'zod';
import { checkSize, fromFloat64, numericData, sameShape, shapeText } from './tensors.js';

/** The server optimizers of the FedOpt family (Reddi et al., "Adaptive federated optimization", ICLR 2021). */
export type ServerOptimizerName = 'fedavgm' | 'fedadagrad' | 'fedadam' | 'fedyogi';

/**
 * A server-side optimizer: treats the round's aggregated update as a pseudo-gradient and moves the global
 * model with it, keeping state (momentum, second moments) between rounds. The state can be saved for a
 * checkpoint (safetensors bytes or JSON) and loaded back.
 */
export interface ServerOptimizer {
  readonly name: ServerOptimizerName;
  /** Steps applied so far (t in the update rules). */
  readonly steps: number;
  /** The hyperparameters, for logs and checkpoints. */
  readonly hyperparameters: Readonly<Record<string, number | string>>;
  /**
   * One server step: returns the new global model (new buffers; neither argument is modified) from the
   * global model and the pseudo-gradient `delta` (the aggregated weight difference, local minus global).
   * Tensors absent from `delta` are copied unchanged; non-float tensors move by `delta` (rounded).
   */
  step(global: FLModel, delta: FLModel): FLModel;
  /** The state as safetensors bytes: tensors `m/<name>` (and `v/<name>`) in float64, meta optimizer and steps. */
  saveState(): Uint8Array;
  /** The state as JSON (float64 values survive JSON exactly). */
  stateToJSON(): JsonValue;
  /**
   * Replaces the state with a saved one (bytes from {@link ServerOptimizer.saveState} or a value from
   * {@link ServerOptimizer.stateToJSON}), checked against `global`'s tensors.
   *
   * @throws AggregatorError E_AGG_STATE when the state is malformed, of another optimizer, or does not fit.
   */
  loadState(state: Uint8Array | unknown, global: FLModel): void;
}

/** The JSON form of a server optimizer's state. */
const StateJson = z.strictObject({
  format: z.literal('flare-ts/optimizer-state'),
  version: z.literal(1),
  optimizer: z.enum(['fedavgm', 'fedadagrad', 'fedadam', 'fedyogi']),
  steps: z.int().min(0),
  tensors: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(4096),
        m: z.array(z.number()),
        v: z.array(z.number()).optional(),
      }),
    )
    .max(1_000_000),
});

const StateMeta = z.strictObject({
  optimizer: z.enum(['fedavgm', 'fedadagrad', 'fedadam', 'fedyogi']),
  steps: z.int().min(0),
});

function isFloat(t: Tensor): boolean {
  return t.data instanceof Float32Array || t.data instanceof Float64Array;
}

function stateError(message: string, cause?: unknown): AggregatorError {
  return new AggregatorError('E_AGG_STATE', message, cause === undefined ? undefined : { cause });
}

/** Checks a hyperparameter: finite and within [min, max] (max exclusive when `open`). */
export function hyper(name: string, value: number, min: number, max: number, open = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (open ? value >= max : value > max)) {
    throw new RangeError(`"${name}" expected a number in [${min}, ${max}${open ? ')' : ']'}, got ${String(value)}`);
  }
  return value;
}

/**
 * What every server optimizer shares (internal base): validation, per-tensor first and second moments in
 * float64, the step counter, saving and loading. Subclasses provide the per-element rule.
 */
export abstract class MomentOptimizer implements ServerOptimizer {
  abstract readonly name: ServerOptimizerName;
  abstract readonly hyperparameters: Readonly<Record<string, number | string>>;
  /** Whether the rule keeps second moments v. */
  protected abstract readonly usesSecondMoment: boolean;
  /** The initial value of v (Reddi et al. allow v_-1 >= tau^2; Flower starts at 0). */
  protected readonly initialV: number = 0;
  #steps = 0;
  #m = new Map<string, Float64Array>();
  #v = new Map<string, Float64Array>();
  #shapes = new Map<string, readonly number[]>();

  get steps(): number {
    return this.#steps;
  }

  /** Writes the moved values of one tensor into `out` and updates m (and v) in place; `t` is the 1-based step. */
  protected abstract apply(x: FloatArray, d: FloatArray, m: Float64Array, v: Float64Array | undefined, out: FloatArray, t: number): void;

  step(global: FLModel, delta: FLModel): FLModel {
    if (!(global?.params instanceof Map) || !(delta?.params instanceof Map)) throw new TypeError('step: expected two models');
    // Check everything before touching the state.
    const deltas = new Map<string, FloatArray>();
    for (const [name, d] of delta.params) {
      const g = global.params.get(name);
      if (g === undefined) throw new ModelError('E_MODEL_MISMATCH', `the update has a tensor "${name}" the global model does not have`);
      checkSize(name, d);
      if (!sameShape(g.shape, d.shape)) throw new ModelError('E_MODEL_MISMATCH', `tensor "${name}" is ${shapeText(d.shape)} in the update, ${shapeText(g.shape)} in the global model`);
      const values = numericData(name, d);
      for (let i = 0; i < values.length; i++) {
        const x = values[i]!;
        if (x - x !== 0) throw new AggregatorError('E_AGG_NONFINITE', `the aggregated update of "${name}" is not finite`);
      }
      deltas.set(name, values);
    }
    const t = this.#steps + 1;
    const params = new Map<string, Tensor>();
    for (const [name, g] of global.params) {
      const d = deltas.get(name);
      if (d === undefined) {
        params.set(name, { dtype: g.dtype, shape: g.shape, data: g.data.slice() });
        continue;
      }
      if (!isFloat(g)) {
        const x = numericData(name, g);
        const moved = new Float64Array(x.length);
        for (let i = 0; i < x.length; i++) moved[i] = x[i]! + d[i]!;
        params.set(name, { dtype: g.dtype, shape: g.shape, data: fromFloat64(g.dtype, moved) });
        continue;
      }
      const x = g.data as FloatArray;
      let m = this.#m.get(name);
      if (m === undefined) {
        m = new Float64Array(x.length);
        this.#m.set(name, m);
        this.#shapes.set(name, Object.freeze([...g.shape]));
      }
      let v: Float64Array | undefined;
      if (this.usesSecondMoment) {
        v = this.#v.get(name);
        if (v === undefined) this.#v.set(name, (v = new Float64Array(x.length).fill(this.initialV)));
      }
      const out = x instanceof Float32Array ? new Float32Array(x.length) : new Float64Array(x.length);
      this.apply(x, d, m, v, out, t);
      params.set(name, { dtype: g.dtype, shape: g.shape, data: out });
    }
    this.#steps = t;
    return { params, kind: 'full', meta: { ...global.meta } };
  }

  saveState(): Uint8Array {
    const params = new Map<string, Tensor>();
    for (const name of [...this.#m.keys()].sort()) {
      const shape = this.#shapes.get(name)!;
      params.set(`m/${name}`, { dtype: 'float64', shape, data: this.#m.get(name)! });
      const v = this.#v.get(name);
      if (v !== undefined) params.set(`v/${name}`, { dtype: 'float64', shape, data: v });
    }
    return encodeModel({ params, kind: 'full', meta: { optimizer: this.name, steps: this.#steps } });
  }

  stateToJSON(): JsonValue {
    return {
      format: 'flare-ts/optimizer-state',
      version: 1,
      optimizer: this.name,
      steps: this.#steps,
      tensors: [...this.#m.keys()].sort().map((name) => {
        const entry: { [key: string]: JsonValue } = { name, m: Array.from(this.#m.get(name)!) };
        const v = this.#v.get(name);
        if (v !== undefined) entry['v'] = Array.from(v);
        return entry;
      }),
    };
  }

  loadState(state: Uint8Array | unknown, global: FLModel): void {
    const entries = state instanceof Uint8Array ? this.#fromBytes(state) : this.#fromJson(state);
    const m = new Map<string, Float64Array>();
    const v = new Map<string, Float64Array>();
    const shapes = new Map<string, readonly number[]>();
    for (const e of entries.tensors) {
      const g = global.params.get(e.name);
      if (g === undefined || !isFloat(g)) throw stateError(`the checkpoint has state for "${e.name}", which is not a float tensor of the model`);
      if (m.has(e.name)) throw stateError(`the checkpoint lists "${e.name}" twice`);
      if (e.shape !== undefined && !sameShape(e.shape, g.shape)) throw stateError(`the checkpoint's "${e.name}" is ${shapeText(e.shape)}, the model's ${shapeText(g.shape)}`);
      if (e.m.length !== g.data.length || (e.v !== undefined && e.v.length !== g.data.length)) {
        throw stateError(`the checkpoint's "${e.name}" has the wrong number of values`);
      }
      if (this.usesSecondMoment !== (e.v !== undefined)) {
        throw stateError(`the checkpoint's "${e.name}" ${this.usesSecondMoment ? 'lacks' : 'has'} second moments (v) for ${this.name}`);
      }
      m.set(e.name, e.m);
      if (e.v !== undefined) v.set(e.name, e.v);
      shapes.set(e.name, Object.freeze([...g.shape]));
    }
    this.#m = m;
    this.#v = v;
    this.#shapes = shapes;
    this.#steps = entries.steps;
  }

  #checkName(optimizer: string): void {
    if (optimizer !== this.name) throw stateError(`the checkpoint is of ${optimizer}, not ${this.name}`);
  }

  #fromBytes(bytes: Uint8Array): StateEntries {
    let decoded: FLModel;
    try {
      decoded = decodeModel(bytes);
    } catch (e) {
      if (e instanceof CodecError) throw stateError('the checkpoint is not a valid safetensors file', e);
      throw e;
    }
    const meta = StateMeta.safeParse(decoded.meta);
    if (!meta.success) throw stateError('the checkpoint lacks the optimizer name and step count');
    this.#checkName(meta.data.optimizer);
    const byName = new Map<string, { shape?: readonly number[]; m?: Float64Array; v?: Float64Array }>();
    for (const [key, t] of decoded.params) {
      const slash = key.indexOf('/');
      const part = key.slice(0, slash);
      const name = key.slice(slash + 1);
      if (slash < 0 || (part !== 'm' && part !== 'v') || name.length === 0) throw stateError(`the checkpoint has an unexpected tensor "${key}"`);
      if (t.dtype !== 'float64' || !(t.data instanceof Float64Array)) throw stateError(`the checkpoint's "${key}" is not float64`);
      const e = byName.get(name) ?? {};
      if (e.shape !== undefined && !sameShape(e.shape, t.shape)) throw stateError(`the checkpoint's m and v of "${name}" differ in shape`);
      e.shape = t.shape;
      // Copy: decoded tensors may be views into the caller's buffer.
      e[part] = t.data.slice();
      byName.set(name, e);
    }
    const tensors: StateEntry[] = [];
    for (const [name, e] of byName) {
      if (e.m === undefined) throw stateError(`the checkpoint has v but no m for "${name}"`);
      tensors.push({ name, shape: e.shape!, m: e.m, ...(e.v === undefined ? {} : { v: e.v }) });
    }
    return { steps: meta.data.steps, tensors };
  }

  #fromJson(value: unknown): StateEntries {
    const parsed = StateJson.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw stateError(`the checkpoint JSON is malformed at ${issue === undefined ? '(root)' : issue.path.join('.') || '(root)'}`);
    }
    this.#checkName(parsed.data.optimizer);
    return {
      steps: parsed.data.steps,
      tensors: parsed.data.tensors.map((e) => ({
        name: e.name,
        m: Float64Array.from(e.m),
        ...(e.v === undefined ? {} : { v: Float64Array.from(e.v) }),
      })),
    };
  }
}

interface StateEntry {
  readonly name: string;
  readonly shape?: readonly number[];
  readonly m: Float64Array;
  readonly v?: Float64Array;
}

interface StateEntries {
  readonly steps: number;
  readonly tensors: readonly StateEntry[];
}
