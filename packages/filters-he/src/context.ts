import { createHash, randomBytes } from 'node:crypto';
import { CodecError, HeError, parseStrictJson } from '@flare/core';
import { z } from 'zod';
import { paramsFingerprint, resolveHeParams, valueLimit, type HeParams } from './params.js';
import { CkksEngine, type EngineSecret } from './seal/engine.js';
import { loadSeal } from './seal/library.js';
import { loadZstd } from './seal/zstd.js';

/**
 * A CKKS context: parameters, an id shared by every context of one key set, and on clients the secret key.
 * Contexts come from {@link generateHeKeys} or {@link loadHeContext}; they own SEAL (WebAssembly) memory,
 * released by {@link HeContext.dispose}.
 */
export interface HeContext {
  /** Identifies the key set (32 hex digits): the client and server contexts of one provisioning share it. */
  readonly id: string;
  readonly params: HeParams;
  /** SHA-256 of the canonical parameters (hex): equal parameters, equal fingerprint. */
  readonly fingerprint: string;
  /** Values per ciphertext: N/2. */
  readonly slots: number;
  /** True on a client context; a server context has no secret key and cannot decrypt. */
  readonly hasSecretKey: boolean;
  /** Largest |value| that can be encrypted and aggregated with these parameters. */
  readonly valueLimit: number;
  /** True once {@link HeContext.dispose} ran. */
  readonly disposed: boolean;
  /**
   * The context as bytes for a kit file or the CA state: a small JSON header, then the secret key (clients
   * only). Treat client bytes like a private key (mode 0600).
   */
  serialize(): Uint8Array;
  /** The server's counterpart of this context: same id and parameters, no secret key. */
  toServerContext(): HeContext;
  /** Deletes the SEAL objects; using the context afterwards throws TypeError. Idempotent. */
  dispose(): void;
}

/** The container: magic, u32 LE header length, header JSON, then the SEAL secret key when there is one. */
const MAGIC = new TextEncoder().encode('FLAREHE1');
const MAX_HEADER_BYTES = 4096;
const Hex32 = z.string().regex(/^[0-9a-f]{32}$/);
const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const ContextHeader = z.strictObject({
  format: z.literal('flare-ts/he-context'),
  v: z.literal(1),
  scheme: z.literal('ckks'),
  id: Hex32,
  polyModulusDegree: z.number().int(),
  coeffModBits: z.array(z.number().int()).max(64),
  scaleBits: z.number().int(),
  secretKey: z.union([z.null(), z.strictObject({ bytes: z.number().int().positive().max(64 * 1024 * 1024), sha256: Hex64 })]),
});

const engines = new WeakMap<HeContext, CkksEngine>();
const disposers = new WeakMap<HeContext, Array<() => void>>();

/** Runs `fn` when `context` is disposed (internal: encryption worker pools). */
export function onContextDispose(context: HeContext, fn: () => void): void {
  engineOf(context);
  const list = disposers.get(context) ?? [];
  list.push(fn);
  disposers.set(context, list);
}

/** The engine behind a context made by this package (TypeError for anything else or a disposed one). */
export function engineOf(context: HeContext): CkksEngine {
  const engine = engines.get(context);
  if (engine === undefined) throw new TypeError('"context" must come from generateHeKeys() or loadHeContext()');
  if (context.disposed) throw new TypeError('HE context used after dispose()');
  return engine;
}

class SealHeContext implements HeContext {
  readonly id: string;
  readonly params: HeParams;
  readonly fingerprint: string;
  readonly slots: number;
  readonly hasSecretKey: boolean;
  readonly valueLimit: number;
  #engine: CkksEngine;
  #disposed = false;

  constructor(id: string, params: HeParams, engine: CkksEngine) {
    this.id = id;
    this.params = params;
    this.fingerprint = paramsFingerprint(params);
    this.slots = engine.slots;
    this.hasSecretKey = engine.hasSecretKey;
    this.valueLimit = valueLimit(params);
    this.#engine = engine;
    engines.set(this, engine);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  serialize(): Uint8Array {
    if (this.#disposed) throw new TypeError('HE context used after dispose()');
    const key = this.hasSecretKey ? this.#engine.exportSecretKey() : undefined;
    const header = new TextEncoder().encode(
      JSON.stringify({
        format: 'flare-ts/he-context',
        v: 1,
        scheme: 'ckks',
        id: this.id,
        polyModulusDegree: this.params.polyModulusDegree,
        coeffModBits: [...this.params.coeffModBits],
        scaleBits: this.params.scaleBits,
        secretKey: key === undefined ? null : { bytes: key.length, sha256: createHash('sha256').update(key).digest('hex') },
      } satisfies z.infer<typeof ContextHeader>),
    );
    const out = new Uint8Array(MAGIC.length + 4 + header.length + (key?.length ?? 0));
    out.set(MAGIC, 0);
    new DataView(out.buffer).setUint32(MAGIC.length, header.length, true);
    out.set(header, MAGIC.length + 4);
    if (key !== undefined) out.set(key, MAGIC.length + 4 + header.length);
    return out;
  }

  toServerContext(): HeContext {
    if (this.#disposed) throw new TypeError('HE context used after dispose()');
    return makeContext(this.id, this.params, { kind: 'none' });
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const fn of disposers.get(this) ?? []) fn();
    disposers.delete(this);
    this.#engine.dispose();
  }
}

function makeContext(id: string, params: HeParams, secret: EngineSecret): HeContext {
  return new SealHeContext(id, params, CkksEngine.create(sealLibrary(), params, secret));
}

let library: Awaited<ReturnType<typeof loadSeal>> | undefined;
function sealLibrary(): Awaited<ReturnType<typeof loadSeal>> {
  if (library === undefined) throw new TypeError('SEAL used before it was loaded');
  return library;
}

/** Loads SEAL and the zstd decoder (once per process). Every public entry that makes a context awaits it. */
async function ready(): Promise<void> {
  // One after the other: the SEAL loader recognises its WebAssembly memory only when no other module
  // instantiates at the same time (see seal/library.ts).
  await loadZstd();
  library = await loadSeal();
}

/**
 * Makes a new CKKS key set: the client context holds the secret key (all sites share it, as in FLARE), the
 * server context holds only the parameters, which is all the server needs to add ciphertexts and multiply them
 * by plaintext weights (no secret key, no public key, no relinearization or Galois keys).
 *
 * @throws HeError E_HE_INSECURE_PARAMS / E_HE_INVALID_PARAMS for parameters {@link resolveHeParams} refuses.
 * @example
 * ```ts
 * const { client, server } = await generateHeKeys(); // N = 8192, [60, 40, 40, 60], 2^40
 * server.hasSecretKey; // false
 * ```
 */
export async function generateHeKeys(params?: Partial<HeParams>): Promise<{ client: HeContext; server: HeContext }> {
  const resolved = resolveHeParams(params);
  await ready();
  const id = randomBytes(16).toString('hex');
  const client = makeContext(id, resolved, { kind: 'generate' });
  try {
    return { client, server: client.toServerContext() };
  } catch (e) {
    client.dispose();
    throw e;
  }
}

/**
 * Loads a context from {@link HeContext.serialize}'s bytes (a kit's `client_context.seal` or
 * `server_context.seal`). Everything is validated before SEAL sees it: the header against a strict schema and
 * the parameter rules, the secret key's size, digest and layout.
 *
 * @throws HeError E_HE_CONTEXT_FORMAT for bytes that are not such a context; parameter errors as
 *   {@link resolveHeParams}.
 */
export async function loadHeContext(bytes: Uint8Array): Promise<HeContext> {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('"bytes" expected a Uint8Array');
  const bad = (msg: string, cause?: unknown) => new HeError('E_HE_CONTEXT_FORMAT', msg, { cause });
  if (bytes.length < MAGIC.length + 4 || !MAGIC.every((b, i) => bytes[i] === b)) throw bad('not a FLARE-TS HE context (magic bytes differ)');
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(MAGIC.length, true);
  if (headerLength > MAX_HEADER_BYTES || MAGIC.length + 4 + headerLength > bytes.length) throw bad('context header length is out of range');
  let header: z.infer<typeof ContextHeader>;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(MAGIC.length + 4, MAGIC.length + 4 + headerLength));
    const parsed = ContextHeader.safeParse(parseStrictJson(text, { maxDepth: 4 }));
    if (!parsed.success) throw bad(`context header: ${z.prettifyError(parsed.error).replace(/\s+/g, ' ')}`);
    header = parsed.data;
  } catch (e) {
    if (e instanceof HeError) throw e;
    if (e instanceof CodecError || e instanceof TypeError) throw bad('context header is not valid JSON', e);
    throw e;
  }
  const params = resolveHeParams({ polyModulusDegree: header.polyModulusDegree, coeffModBits: header.coeffModBits, scaleBits: header.scaleBits });
  const rest = bytes.subarray(MAGIC.length + 4 + headerLength);
  let secret: EngineSecret = { kind: 'none' };
  if (header.secretKey === null) {
    if (rest.length !== 0) throw bad('a server context carries trailing bytes');
  } else {
    if (rest.length !== header.secretKey.bytes) throw bad(`secret key has ${rest.length} bytes, header says ${header.secretKey.bytes}`);
    if (createHash('sha256').update(rest).digest('hex') !== header.secretKey.sha256) throw bad('secret key does not match its SHA-256 digest');
    secret = { kind: 'load', bytes: rest.slice() };
  }
  await ready();
  return makeContext(header.id, params, secret);
}
