import { flatten, FlareError, HeError, tensor, type FLModel, type JsonValue, type Tensor } from '@flare/core';
import { engineOf, type HeContext } from './context.js';
import { toDtype } from './dtype.js';
import { ciphertextName, digest, envelopeJson, HE_META_KEY, isEncryptedModel, openEncryptedModel, samePacking, type HeEnvelope } from './envelope.js';
import type { Ct } from './seal/engine.js';
import { checkCiphertexts, checkContext } from './validate.js';

/**
 * The server's global-model update for encrypted diffs: `base + diff`, where `diff` is an encrypted aggregate
 * (from {@link HeAggregator}) and `base` is the previous global model, plain (the job's initial model) or
 * encrypted (an earlier result of this function). The result is encrypted, of kind 'full', with `base`'s meta
 * (without its envelope). No secret key is needed: a plain base is encoded and added as plaintext.
 *
 * Encrypted bases must match the diff's level and scale, which holds for the default parameters (every
 * aggregate comes back to scale 2^40 at the last level); with one rescaling prime, aggregate scales depend
 * on the round's total weight and two of them generally cannot be added (E_HE_SCALE_MISMATCH): send full
 * models instead of diffs there.
 *
 * @throws HeError E_HE_NOT_ENCRYPTED (plain diff), E_HE_LAYOUT_MISMATCH (tensors differ), E_HE_SCALE_MISMATCH,
 *   E_HE_VALUE_RANGE (plain base beyond the value limit), and the checks of {@link heDecrypt}.
 */
export function heAddDiff(context: HeContext, base: FLModel, diff: FLModel): FLModel {
  const engine = engineOf(context);
  const d = openEncryptedModel(diff);
  checkContext(d, context);
  const dChecked = checkCiphertexts(d, engine);
  const mismatch = (what: string) => new HeError('E_HE_LAYOUT_MISMATCH', `global model and diff: ${what}`);
  const names = new Set(d.envelope.entries.map((e) => e.name));

  let plainBase: ReadonlyMap<string, Tensor>;
  let addCiphertexts: (i: number, acc: Ct) => void;
  if (isEncryptedModel(base)) {
    const b = openEncryptedModel(base);
    checkContext(b, context);
    if (!samePacking(b.envelope, d.envelope)) throw mismatch('the encrypted tensors differ');
    const bChecked = checkCiphertexts(b, engine);
    plainBase = b.plain;
    addCiphertexts = (i, acc) => {
      const c = bChecked[i]!;
      if (c.level !== dChecked[i]!.level || c.scale !== dChecked[i]!.scale) {
        throw new HeError('E_HE_SCALE_MISMATCH', `ciphertext ${i}: level or scale of the global model (${c.scale}) differs from the diff's (${dChecked[i]!.scale})`);
      }
      const ct = engine.load(c);
      try {
        engine.add(acc, ct);
      } finally {
        ct.delete();
      }
    };
  } else {
    for (const e of d.envelope.entries) {
      const t = base.params.get(e.name);
      if (t === undefined || t.shape.length !== e.shape.length || t.shape.some((x, j) => x !== e.shape[j])) throw mismatch(`tensor "${e.name}" is missing or has another shape`);
    }
    const flat = flatten(base, { dtype: 'float64', select: (name) => names.has(name) });
    const order = flat.index.entries.map((e) => e.name);
    if (order.some((n, i) => n !== d.envelope.entries[i]!.name)) {
      // Same tensors, other order: pack the base in the diff's order.
      const reordered = new Map<string, Tensor>();
      for (const e of d.envelope.entries) reordered.set(e.name, base.params.get(e.name)!);
      return heAddDiff(context, { ...base, params: new Map([...reordered, ...[...base.params].filter(([n]) => !names.has(n))]) }, diff);
    }
    const vector = flat.vector;
    for (let i = 0; i < vector.length; i++) {
      if (!(Math.abs(vector[i]!) <= context.valueLimit)) throw new HeError('E_HE_VALUE_RANGE', `global model value ${vector[i]} is outside ±${context.valueLimit}`);
    }
    plainBase = new Map([...base.params].filter(([n]) => !names.has(n)));
    addCiphertexts = (i, acc) => {
      const start = i * d.envelope.slots;
      const values = Float64Array.from(vector.subarray(start, Math.min(vector.length, start + d.envelope.slots)));
      const pt = engine.encode(values, acc.scale, acc.level);
      try {
        engine.addPlain(acc, pt);
      } finally {
        pt.delete();
      }
    };
  }

  const diffPlain = d.plain;
  if (plainBase.size !== diffPlain.size) throw mismatch('they leave different tensors in plaintext');
  const params = new Map<string, Tensor>();
  for (const [name, t] of diffPlain) {
    const b = plainBase.get(name);
    if (b === undefined || b.data.length !== t.data.length) throw mismatch(`plaintext tensor "${name}" is missing or has another size`);
    const sum = new Float64Array(t.data.length);
    for (let j = 0; j < sum.length; j++) sum[j] = Number(b.data[j]) + Number(t.data[j]);
    params.set(name, tensor(toDtype(sum, b.dtype), b.shape, b.dtype));
  }

  const cts: Uint8Array[] = [];
  try {
    dChecked.forEach((c, i) => {
      const acc = engine.load(c);
      try {
        addCiphertexts(i, acc);
        cts.push(engine.save(acc));
      } finally {
        acc.delete();
      }
    });
  } catch (e) {
    if (e instanceof FlareError) throw e;
    throw new HeError('E_HE_ENGINE', 'adding the diff to the global model failed', { cause: e });
  }
  cts.forEach((bytes, i) => params.set(ciphertextName(i), tensor(bytes, [bytes.length], 'uint8')));
  const envelope: HeEnvelope = {
    context: d.envelope.context,
    params: d.envelope.params,
    slots: d.envelope.slots,
    length: d.envelope.length,
    entries: d.envelope.entries,
    digests: cts.map(digest),
  };
  const meta: Record<string, JsonValue> = { ...base.meta, [HE_META_KEY]: envelopeJson(envelope) };
  return { params, kind: 'full', meta };
}
