import { compileNamePattern, FlareError, NAME_PATTERN_LIMITS, type Filter, type FilterContext, type FilterEnv, type FilterFactory, type FLModel } from '@flare/core';
import { z } from 'zod';
import type { HeContext } from './context.js';
import { heDecrypt } from './decrypt.js';
import { heEncrypt } from './encrypt.js';
import { loadHeContextFromKit } from './kit.js';

/** Where registered HE filters get their context: a client kit folder (loaded on first use), or a context. */
export type HeContextSource = { readonly kitDir: string } | { readonly context: HeContext };

const TensorNames = z.array(z.string().min(1).max(4096)).min(1).max(100_000);
// Job definitions may come from a submitter: patterns use @flare/core's linear-time tensor-name matcher (no
// backtracking, so no pattern can stall the site), and one outside its syntax is refused when the job loads.
const TensorPattern = z
  .string()
  .min(1)
  .max(NAME_PATTERN_LIMITS.maxSource)
  .superRefine((source, ctx) => {
    try {
      compileNamePattern(source);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: e instanceof FlareError ? `${e.code}: ${e.message}` : 'not a valid tensor-name pattern' });
    }
  });
const Selection = z.union([TensorNames, TensorPattern]);

/**
 * Args of the registered `he-encrypt` filter (privacy.json or a job): `tensors` is a list of exact names or a
 * tensor-name pattern (@flare/core's `compileNamePattern` syntax); `encrypt_layers` is FLARE's name for the same setting. Omit both to encrypt
 * every tensor. `workers` (0 to 16, default 0) encrypts on that many worker threads.
 */
export const HeEncryptArgs = z
  .strictObject({ tensors: Selection.optional(), encrypt_layers: Selection.optional(), workers: z.number().int().min(0).max(16).optional() })
  .refine((a) => a.tensors === undefined || a.encrypt_layers === undefined, 'give tensors or encrypt_layers, not both');
/** Parsed `he-encrypt` args. */
export type HeEncryptArgs = z.infer<typeof HeEncryptArgs>;

/** Args of the registered `he-decrypt` filter. */
export const HeDecryptArgs = z.strictObject({ require_encrypted: z.boolean().optional() });
/** Parsed `he-decrypt` args. */
export type HeDecryptArgs = z.infer<typeof HeDecryptArgs>;

/** One context per source, loaded once, shared by the encrypt and decrypt filters made from it. */
const loaded = new WeakMap<object, Promise<HeContext>>();
function contextFrom(source: HeContextSource): Promise<HeContext> {
  if ('context' in source) return Promise.resolve(source.context);
  let p = loaded.get(source);
  if (p === undefined) {
    p = loadHeContextFromKit(source.kitDir, 'client');
    loaded.set(source, p);
    p.catch(() => loaded.delete(source));
  }
  return p;
}

/** A filter whose real work waits for the context (the registry's `create` is synchronous). */
function deferred(name: string, make: (context: HeContext) => Filter, source: HeContextSource): Filter {
  let inner: Promise<Filter> | undefined;
  return {
    name,
    async apply(model: FLModel, ctx: FilterContext): Promise<FLModel> {
      inner ??= contextFrom(source).then(make);
      inner.catch(() => (inner = undefined));
      return (await inner).apply(model, ctx);
    },
  };
}

/**
 * The `he-encrypt` filter factory for a site's filter registry (task results, on the way out). The site's
 * context comes from `source`: its kit folder (`startup/client_context.seal`, loaded on first use) or a
 * context already loaded.
 *
 * @example
 * ```ts
 * registry.set('he-encrypt', heEncryptFactory({ kitDir }));
 * // privacy.json: { "task_result_filters": [{ "name": "he-encrypt", "args": { "tensors": "^fc\\." } }] }
 * ```
 */
export function heEncryptFactory(source: HeContextSource): FilterFactory<HeEncryptArgs> {
  return {
    name: 'he-encrypt',
    args: HeEncryptArgs,
    create(args: HeEncryptArgs, _env: FilterEnv): Filter {
      const selection = args.tensors ?? args.encrypt_layers;
      const tensors = selection === undefined ? undefined : typeof selection === 'string' ? compileNamePattern(selection) : selection;
      const workers = args.workers ?? 0;
      return deferred('he-encrypt', (context) => heEncrypt({ context, workers, ...(tensors === undefined ? {} : { tensors }) }), source);
    },
  };
}

/** The `he-decrypt` filter factory (task data, on the way in), with its context from `source`. */
export function heDecryptFactory(source: HeContextSource): FilterFactory<HeDecryptArgs> {
  return {
    name: 'he-decrypt',
    args: HeDecryptArgs,
    create(args: HeDecryptArgs, _env: FilterEnv): Filter {
      return deferred('he-decrypt', (context) => heDecrypt({ context, requireEncrypted: args.require_encrypted ?? false }), source);
    },
  };
}
