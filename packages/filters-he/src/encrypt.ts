import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { flatten, HeError, tensor, toNamePattern, type Filter, type FilterContext, type FLModel, type NamePattern, type Tensor } from '@flare/core';
import { engineOf, onContextDispose, type HeContext } from './context.js';
import { ciphertextName, digest, envelopeJson, HE_META_KEY, isEncryptedModel, type HeEnvelope } from './envelope.js';
import { EncryptPool } from './seal/encrypt-pool.js';

/** Options of {@link heEncrypt}. */
export interface HeEncryptOptions {
  /** A client context (it holds the secret key: encryption is symmetric and seeded). */
  readonly context: HeContext;
  /**
   * Which tensors to encrypt: exact names, or a pattern tested against each name (FLARE's `encrypt_layers`), in
   * @flare/core's tensor-name syntax (a string, a RegExp's source, or `compileNamePattern`'s result: JavaScript
   * regular expressions without backreferences and lookaround, matched in linear time). Default: every tensor.
   * Tensors not selected travel in plaintext.
   */
  readonly tensors?: readonly string[] | string | RegExp | NamePattern;
  /**
   * Worker threads to encrypt on (0 to 16, default 0: the calling thread). SEAL's WebAssembly is single-threaded;
   * `workers: 2` on a two-core site roughly halves encryption time. The pool belongs to the context: it starts
   * on first use (each worker sets up SEAL once, about a second) and ends with `context.dispose()`.
   */
  readonly workers?: number;
}

/** Ciphertexts encrypted between two yields to the event loop (about 40 ms of WebAssembly work). */
const BATCH = 8;

/**
 * A filter for a site's task results: packs the model's selected tensors into one vector, splits it into
 * ciphertexts of N/2 values (any tensor size, any model size), and encrypts each with the secret key.
 *
 * Seeded symmetric encryption: SEAL replaces the ciphertext's uniformly random polynomial by the 64-byte seed it
 * was expanded from, halving the upload (about 163 KB instead of 331 KB per 4,096 values with the defaults).
 * RLWE security is unchanged as long as the seed expansion (Blake2xb) behaves as a random function, the same
 * assumption as Kyber's matrix seeds; it needs the secret key, which every client holds in this design.
 *
 * The result is an ordinary FLModel: ciphertexts as uint8 tensors `flare.he.ct.<i>`, an envelope in
 * `meta['flare.he']`, other meta and the plaintext tensors unchanged; the input is not modified.
 *
 * @throws HeError E_HE_ALREADY_ENCRYPTED, E_HE_UNKNOWN_TENSOR, E_HE_NOTHING_SELECTED, E_HE_VALUE_RANGE (NaN,
 *   infinity, or |x| above `context.valueLimit`), E_HE_NO_SECRET_KEY for a server context; ModelError
 *   E_MODEL_NAME_PATTERN for a pattern outside the supported syntax (when the filter is made).
 * @example
 * ```ts
 * const { client } = await generateHeKeys();
 * const sealed = await heEncrypt({ context: client }).apply(update, ctx);
 * ```
 */
export function heEncrypt(options: HeEncryptOptions): Filter {
  const { context, tensors, workers = 0 } = options;
  engineOf(context);
  if (!Number.isInteger(workers) || workers < 0 || workers > 16) throw new RangeError(`"workers" expected an integer from 0 to 16, got ${workers}`);
  if (!context.hasSecretKey) {
    throw new HeError('E_HE_NO_SECRET_KEY', 'he-encrypt needs a client context: seeded encryption uses the secret key');
  }
  const names = Array.isArray(tensors) ? new Set<string>(tensors as readonly string[]) : undefined;
  const pattern = tensors === undefined || names !== undefined ? undefined : toNamePattern(tensors as string | RegExp | NamePattern);
  return {
    name: 'he-encrypt',
    async apply(model: FLModel, ctx: FilterContext): Promise<FLModel> {
      // A result without tensors carries metrics only (a validation result): there is nothing to encrypt.
      if (model.params.size === 0) return model;
      const started = performance.now();
      const engine = engineOf(context);
      if (isEncryptedModel(model)) throw new HeError('E_HE_ALREADY_ENCRYPTED', 'the model already carries ciphertexts');
      if (names !== undefined) {
        for (const n of names) if (!model.params.has(n)) throw new HeError('E_HE_UNKNOWN_TENSOR', `tensor "${n}" is not in the model`);
      }
      const select = (name: string): boolean => (names !== undefined ? names.has(name) : pattern !== undefined ? pattern.test(name) : true);
      const chosen = [...model.params.keys()].filter(select);
      if (chosen.length === 0) {
        throw new HeError('E_HE_NOTHING_SELECTED', pattern ? `no tensor name matches /${pattern.source}/` : 'the model has no tensors to encrypt');
      }
      const flat = flatten(model, { dtype: 'float64', select });
      const { index } = flat;
      // dtype 'float64' was asked for; the check keeps the compiler (and a future core) honest.
      if (!(flat.vector instanceof Float64Array)) throw new TypeError('flatten returned a float32 vector');
      const vector = flat.vector;
      checkRange(vector, index.entries, context.valueLimit);
      if (vector.length === 0) throw new HeError('E_HE_NOTHING_SELECTED', 'the selected tensors hold no values');

      const count = Math.ceil(vector.length / context.slots);
      const chunk = (i: number) => vector.subarray(i * context.slots, Math.min(vector.length, (i + 1) * context.slots));
      let cts: Uint8Array[] = [];
      if (workers > 0) {
        const pool = poolOf(context, workers);
        cts = await Promise.all(Array.from({ length: count }, (_, i) => pool.encrypt(chunk(i))));
        ctx.signal?.throwIfAborted();
      } else {
        for (let i = 0; i < count; i++) {
          if (i > 0 && i % BATCH === 0) {
            await yieldToLoop();
            ctx.signal?.throwIfAborted();
            engineOf(context);
          }
          cts.push(engine.encrypt(chunk(i)));
        }
      }

      const envelope: HeEnvelope = {
        context: context.id,
        params: context.fingerprint,
        slots: context.slots,
        length: vector.length,
        entries: index.entries,
        digests: cts.map(digest),
      };
      const params = new Map<string, Tensor>();
      for (const [name, t] of model.params) if (!select(name)) params.set(name, t);
      cts.forEach((bytes, i) => params.set(ciphertextName(i), tensor(bytes, [bytes.length], 'uint8')));
      const out: FLModel = { params, kind: model.kind, meta: { ...model.meta, [HE_META_KEY]: envelopeJson(envelope) } };
      if (model.metrics !== undefined) out.metrics = { ...model.metrics };
      const bytes = cts.reduce((a, c) => a + c.length, 0);
      ctx.audit?.({
        action: 'he_encrypted',
        msg: `encrypted ${chosen.length} tensors (${vector.length} values) into ${count} ciphertexts`,
        data: { tensors: chosen.length, values: vector.length, ciphertexts: count, bytes, ms: Math.round(performance.now() - started) },
      });
      return out;
    },
  };
}

const pools = new WeakMap<HeContext, Map<number, EncryptPool>>();

/** The context's worker pool of `size` workers, started on first use and closed with the context. */
function poolOf(context: HeContext, size: number): EncryptPool {
  let bySize = pools.get(context);
  if (bySize === undefined) {
    const created = new Map<number, EncryptPool>();
    bySize = created;
    pools.set(context, created);
    onContextDispose(context, () => {
      for (const p of created.values()) p.close();
      created.clear();
    });
  }
  let pool = bySize.get(size);
  if (pool?.broken) {
    pool.close();
    pool = undefined;
  }
  if (pool === undefined) {
    const key = engineOf(context).exportSecretKey();
    try {
      pool = new EncryptPool(context.params, key, size);
    } finally {
      key.fill(0);
    }
    bySize.set(size, pool);
  }
  return pool;
}

function checkRange(vector: Float64Array, entries: readonly { name: string; offset: number }[], limit: number): void {
  for (let i = 0; i < vector.length; i++) {
    const x = vector[i]!;
    if (!(Math.abs(x) <= limit)) {
      const entry = [...entries].reverse().find((e) => e.offset <= i)!;
      const what = Number.isFinite(x) ? `|${x}| exceeds ${limit}` : `${x} is not finite`;
      throw new HeError('E_HE_VALUE_RANGE', `tensor "${entry.name}" element ${i - entry.offset}: ${what}`);
    }
  }
}
