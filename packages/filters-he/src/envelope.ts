import { createHash } from 'node:crypto';
import { DTYPES, elementCount, HeError, MODEL_LIMITS, type FLModel, type FlatEntry, type JsonValue, type Tensor } from '@flare/core';
import { z } from 'zod';

// How an encrypted model travels as an ordinary FLModel, so that transport, codec and runtime move it
// unchanged: each ciphertext is a uint8 tensor named `flare.he.ct.<i>` (its SEAL serialization), and
// meta['flare.he'] says how the encrypted tensors were packed (a flatten index), under which context and
// parameters, with the SHA-256 of every ciphertext. Tensors left out of encryption stay as they are.

/** The meta key of the HE envelope. */
export const HE_META_KEY = 'flare.he';
/** Prefix of the ciphertext tensors' names. */
export const HE_TENSOR_PREFIX = 'flare.he.ct.';

const Hex32 = z.string().regex(/^[0-9a-f]{32}$/);
const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const Nat = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const EntrySchema = z.tuple([
  z.string().min(1).max(4096),
  z.enum(DTYPES as readonly [string, ...string[]]),
  z.array(Nat).max(MODEL_LIMITS.maxDims),
  Nat,
]);

/** The envelope as it appears in meta (JSON): see {@link HeEnvelope}. */
export const HeEnvelopeSchema = z.strictObject({
  v: z.literal(1),
  scheme: z.literal('ckks'),
  /** Context id (key set). */
  context: Hex32,
  /** Parameter fingerprint. */
  params: Hex64,
  /** Values per ciphertext. */
  slots: z.number().int().positive().max(16384),
  /** Total encrypted values. */
  length: Nat,
  /** Encrypted tensors in packing order: [name, dtype, shape, offset]. */
  tensors: z.array(EntrySchema).max(MODEL_LIMITS.maxTensors),
  /** SHA-256 of each ciphertext tensor's bytes. */
  digests: z.array(Hex64).max(MODEL_LIMITS.maxTensors),
  /** Present on an aggregation result: how many updates, their total weight. */
  aggregate: z.strictObject({ clients: z.number().int().positive(), weight: z.number().positive() }).optional(),
});

/** What meta['flare.he'] holds, parsed and checked against the model it came with. */
export interface HeEnvelope {
  readonly context: string;
  readonly params: string;
  readonly slots: number;
  readonly length: number;
  readonly entries: readonly FlatEntry[];
  readonly digests: readonly string[];
  readonly aggregate?: { readonly clients: number; readonly weight: number };
}

/** An encrypted model taken apart: its envelope, ciphertext bytes in order, and the tensors left in plaintext. */
export interface OpenedModel {
  readonly envelope: HeEnvelope;
  readonly ciphertexts: readonly Uint8Array[];
  readonly plain: ReadonlyMap<string, Tensor>;
}

/** The name of the i-th ciphertext tensor. */
export function ciphertextName(i: number): string {
  return `${HE_TENSOR_PREFIX}${i}`;
}

/** True when the model carries an HE envelope or ciphertext tensors (encrypted, possibly malformed). */
export function isEncryptedModel(m: FLModel): boolean {
  if (Object.hasOwn(m.meta, HE_META_KEY)) return true;
  for (const name of m.params.keys()) if (name.startsWith(HE_TENSOR_PREFIX)) return true;
  return false;
}

/** SHA-256 (hex) of a ciphertext's bytes. */
export function digest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The envelope as meta JSON. */
export function envelopeJson(e: HeEnvelope): JsonValue {
  const out: { [k: string]: JsonValue } = {
    v: 1,
    scheme: 'ckks',
    context: e.context,
    params: e.params,
    slots: e.slots,
    length: e.length,
    tensors: e.entries.map((t) => [t.name, t.dtype, [...t.shape], t.offset]),
    digests: [...e.digests],
  };
  if (e.aggregate !== undefined) out['aggregate'] = { clients: e.aggregate.clients, weight: e.aggregate.weight };
  return out;
}

const bad = (msg: string) => new HeError('E_HE_ENVELOPE', msg);

/**
 * Reads and checks the envelope of an encrypted model: schema, packing index (contiguous, sizes matching
 * shapes, unique names), one uint8 ciphertext tensor per digest and no other `flare.he.ct.*` tensor, and no
 * encrypted name also present in plaintext. Digests are not verified here (see {@link verifyDigests}).
 *
 * @throws HeError E_HE_NOT_ENCRYPTED when the model has no envelope; E_HE_ENVELOPE when it is malformed.
 */
export function openEncryptedModel(m: FLModel): OpenedModel {
  if (!Object.hasOwn(m.meta, HE_META_KEY)) {
    throw new HeError('E_HE_NOT_ENCRYPTED', 'the model carries no HE envelope: it is a plain model');
  }
  const parsed = HeEnvelopeSchema.safeParse(m.meta[HE_META_KEY]);
  if (!parsed.success) throw bad(`meta['${HE_META_KEY}']: ${z.prettifyError(parsed.error).replace(/\s+/g, ' ')}`);
  const raw = parsed.data;
  const count = Math.ceil(raw.length / raw.slots);
  if (raw.length === 0 || raw.digests.length !== count) {
    throw bad(`${raw.length} values in ${raw.slots}-value ciphertexts need ${count} ciphertexts, the envelope lists ${raw.digests.length}`);
  }
  const entries: FlatEntry[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const [name, dtype, shape, at] of raw.tensors) {
    if (names.has(name)) throw bad(`tensor "${name}" is packed twice`);
    if (name.startsWith(HE_TENSOR_PREFIX)) throw bad(`tensor "${name}" uses the reserved prefix ${HE_TENSOR_PREFIX}`);
    names.add(name);
    const n = elementCount(shape);
    if (!Number.isSafeInteger(n) || at !== offset) throw bad(`tensor "${name}" is not packed contiguously (offset ${at}, expected ${offset})`);
    entries.push({ name, dtype: dtype as FlatEntry['dtype'], shape: Object.freeze([...shape]), offset: at });
    offset += n;
  }
  if (offset !== raw.length) throw bad(`packed tensors hold ${offset} values, the envelope says ${raw.length}`);
  const ciphertexts: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const t = m.params.get(ciphertextName(i));
    if (t === undefined) throw bad(`ciphertext tensor ${ciphertextName(i)} is missing`);
    if (t.dtype !== 'uint8' || t.shape.length !== 1 || !(t.data instanceof Uint8Array)) throw bad(`${ciphertextName(i)} is not a 1-D uint8 tensor`);
    ciphertexts.push(t.data);
  }
  const plain = new Map<string, Tensor>();
  for (const [name, t] of m.params) {
    if (name.startsWith(HE_TENSOR_PREFIX)) {
      const i = Number(name.slice(HE_TENSOR_PREFIX.length));
      if (!(Number.isInteger(i) && i >= 0 && i < count && ciphertextName(i) === name)) throw bad(`unexpected tensor ${name}`);
      continue;
    }
    if (names.has(name)) throw bad(`tensor "${name}" is both encrypted and in plaintext`);
    plain.set(name, t);
  }
  const envelope: HeEnvelope = {
    context: raw.context,
    params: raw.params,
    slots: raw.slots,
    length: raw.length,
    entries,
    digests: raw.digests,
    ...(raw.aggregate === undefined ? {} : { aggregate: raw.aggregate }),
  };
  return { envelope, ciphertexts, plain };
}

/** Checks each ciphertext against its digest. @throws HeError E_HE_CIPHERTEXT_TAMPERED naming the first that differs. */
export function verifyDigests(opened: OpenedModel): void {
  opened.ciphertexts.forEach((bytes, i) => {
    if (digest(bytes) !== opened.envelope.digests[i]) {
      throw new HeError('E_HE_CIPHERTEXT_TAMPERED', `ciphertext ${i} does not match the SHA-256 digest in its envelope`);
    }
  });
}

/** True when two envelopes pack the same tensors the same way (names, dtypes, shapes, order, slots). */
export function samePacking(a: HeEnvelope, b: HeEnvelope): boolean {
  if (a.slots !== b.slots || a.length !== b.length || a.entries.length !== b.entries.length) return false;
  return a.entries.every((e, i) => {
    const f = b.entries[i]!;
    return e.name === f.name && e.dtype === f.dtype && e.offset === f.offset && e.shape.length === f.shape.length && e.shape.every((d, j) => d === f.shape[j]);
  });
}
