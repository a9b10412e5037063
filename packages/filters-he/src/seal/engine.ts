import { FlareError, HeError } from '@flare/core';
import type { CipherText } from 'node-seal/implementation/cipher-text.js';
import type { CKKSEncoder } from 'node-seal/implementation/ckks-encoder.js';
import type { Context } from 'node-seal/implementation/context.js';
import type { ContextData } from 'node-seal/implementation/context-data.js';
import type { Decryptor } from 'node-seal/implementation/decryptor.js';
import type { EncryptionParameters } from 'node-seal/implementation/encryption-parameters.js';
import type { Encryptor } from 'node-seal/implementation/encryptor.js';
import type { Evaluator } from 'node-seal/implementation/evaluator.js';
import type { ParmsIdType } from 'node-seal/implementation/parms-id-type.js';
import type { PlainText } from 'node-seal/implementation/plain-text.js';
import type { SEALLibrary } from 'node-seal/implementation/seal.js';
import type { SecretKey } from 'node-seal/implementation/secret-key.js';
import type { HeParams } from '../params.js';
import { checkSecretKey, type CheckedCiphertext, type WireLevel, type WireShape } from './wire.js';

// Our own small interface over SEAL: everything the package does with CKKS goes through CkksEngine, and every
// SEAL object it creates is deleted before the method returns, except the long-lived ones the engine owns
// (deleted by dispose) and the Ct/Pt handles it hands out (deleted by their owner). node-seal types never
// leave this folder.

/** A ciphertext held in SEAL memory. Its owner must call {@link Ct.delete}. */
export class Ct {
  /** @internal */
  raw: CipherText | undefined;
  /** @internal */
  level: WireLevel;

  constructor(raw: CipherText, level: WireLevel) {
    this.raw = raw;
    this.level = level;
  }

  /** The ciphertext, or a TypeError once deleted. */
  get handle(): CipherText {
    if (this.raw === undefined) throw new TypeError('ciphertext used after delete()');
    return this.raw;
  }

  get scale(): number {
    return this.handle.scale;
  }

  delete(): void {
    this.raw?.delete();
    this.raw = undefined;
  }
}

/** A plaintext held in SEAL memory. Its owner must call {@link Pt.delete}. */
export class Pt {
  /** @internal */
  raw: PlainText | undefined;

  constructor(raw: PlainText) {
    this.raw = raw;
  }

  get handle(): PlainText {
    if (this.raw === undefined) throw new TypeError('plaintext used after delete()');
    return this.raw;
  }

  delete(): void {
    this.raw?.delete();
    this.raw = undefined;
  }
}

/** Runs a SEAL call, turning anything SEAL throws into E_HE_ENGINE (our own FlareErrors pass through). */
function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (cause) {
    if (cause instanceof FlareError) throw cause;
    throw new HeError('E_HE_ENGINE', `SEAL ${what} failed`, { cause });
  }
}

function parmsIdBytes(id: ParmsIdType): Uint8Array {
  const out = new Uint8Array(32);
  const dv = new DataView(out.buffer);
  id.values.forEach((v, i) => dv.setBigUint64(8 * i, v, true));
  return out;
}

function readLevel(cd: ContextData): WireLevel {
  const parms = cd.parms;
  const id = cd.parmsId;
  try {
    const primes = [...parms.coeffModulus];
    return {
      chainIndex: cd.chainIndex,
      parmsId: parmsIdBytes(id),
      primes,
      bits: primes.reduce((a, q) => a + q.toString(2).length, 0),
    };
  } finally {
    id.delete();
    parms.delete();
  }
}

/** What an engine is made from: parameters, and a secret key to generate, to load, or none (server). */
export type EngineSecret = { readonly kind: 'generate' } | { readonly kind: 'load'; readonly bytes: Uint8Array } | { readonly kind: 'none' };

/**
 * The SEAL objects that depend only on the parameters: creating a SEAL context computes NTT tables and
 * searches auxiliary primes for every level, which takes a second or more in WebAssembly, so one set is shared
 * by every engine of the same parameters in the process, counted, and deleted when the last engine goes.
 */
class Shared {
  readonly key: string;
  readonly parms: EncryptionParameters;
  readonly context: Context;
  readonly encoder: CKKSEncoder;
  readonly evaluator: Evaluator;
  readonly levelIds: ParmsIdType[];
  readonly shape: WireShape;
  readonly keyLevel: WireLevel;
  refs = 0;

  constructor(lib: SEALLibrary, params: HeParams, key: string) {
    this.key = key;
    const n = params.polyModulusDegree;
    const created: Array<{ delete(): void }> = [];
    try {
      this.parms = lib.EncryptionParameters(lib.SchemeType.ckks);
      created.push(this.parms);
      this.parms.setPolyModulusDegree(n);
      let modulus;
      try {
        modulus = lib.CoeffModulus.Create(n, Int32Array.from(params.coeffModBits));
      } catch (cause) {
        throw new HeError('E_HE_INVALID_PARAMS', `SEAL found no primes of bit sizes [${params.coeffModBits.join(', ')}] for N = ${n}`, { cause });
      }
      try {
        this.parms.setCoeffModulus(modulus);
      } finally {
        modulus.delete();
      }
      // expandModChain = true: SEAL keeps every level of the chain; tc128 makes SEAL itself refuse parameters
      // beyond the 128-bit table (we checked them first, so this is a second lock on the same door).
      this.context = lib.Context(this.parms, true, lib.SecurityLevel.tc128);
      created.push(this.context);
      if (!this.context.parametersSet()) throw new HeError('E_HE_INVALID_PARAMS', 'SEAL refused these CKKS parameters');
      const levels: WireLevel[] = [];
      this.levelIds = [];
      let cd = this.context.firstContextData;
      for (;;) {
        levels.push(readLevel(cd));
        const id = cd.parmsId;
        this.levelIds.push(id);
        created.push(id);
        const next = cd.chainIndex === 0 ? undefined : cd.nextContextData;
        cd.delete();
        if (next === undefined) break;
        cd = next;
      }
      this.shape = { degree: n, levels };
      const keyData = this.context.keyContextData;
      try {
        this.keyLevel = readLevel(keyData);
      } finally {
        keyData.delete();
      }
      this.encoder = lib.CKKSEncoder(this.context);
      created.push(this.encoder);
      this.evaluator = lib.Evaluator(this.context);
      created.push(this.evaluator);
    } catch (e) {
      for (const o of created.reverse()) o.delete();
      if (e instanceof FlareError) throw e;
      throw new HeError('E_HE_ENGINE', 'SEAL could not set up the CKKS context', { cause: e });
    }
  }

  delete(): void {
    this.evaluator.delete();
    this.encoder.delete();
    for (const id of this.levelIds) id.delete();
    this.context.delete();
    this.parms.delete();
  }
}

const shared = new Map<string, Shared>();

function acquire(lib: SEALLibrary, params: HeParams): Shared {
  const key = `${params.polyModulusDegree}/${params.coeffModBits.join(',')}`;
  let s = shared.get(key);
  if (s === undefined) {
    s = new Shared(lib, params, key);
    shared.set(key, s);
  }
  s.refs++;
  return s;
}

function release(s: Shared): void {
  if (--s.refs > 0) return;
  shared.delete(s.key);
  s.delete();
}

/**
 * SEAL objects for one CKKS parameter set and (optionally) one secret key: the shared encoder and
 * evaluator always; encryptor and decryptor only with the secret key.
 */
export class CkksEngine {
  readonly slots: number;
  readonly scale: number;
  readonly shape: WireShape;
  readonly keyLevel: WireLevel;
  readonly hasSecretKey: boolean;

  #lib: SEALLibrary;
  #shared: Shared | undefined;
  #secretKey: SecretKey | undefined;
  #encryptor: Encryptor | undefined;
  #decryptor: Decryptor | undefined;
  #scratch: PlainText | undefined;

  private constructor(lib: SEALLibrary, params: HeParams, secret: EngineSecret) {
    this.#lib = lib;
    this.slots = params.polyModulusDegree / 2;
    this.scale = 2 ** params.scaleBits;
    const s = acquire(lib, params);
    this.#shared = s;
    this.shape = s.shape;
    this.keyLevel = s.keyLevel;
    this.hasSecretKey = secret.kind !== 'none';
    try {
      this.#scratch = lib.PlainText();
      if (secret.kind !== 'none') this.#initSecret(secret);
    } catch (e) {
      this.dispose();
      if (e instanceof FlareError) throw e;
      throw new HeError('E_HE_ENGINE', 'SEAL could not set up the keys', { cause: e });
    }
  }

  /** Makes an engine; SEAL must be loaded. */
  static create(lib: SEALLibrary, params: HeParams, secret: EngineSecret): CkksEngine {
    return new CkksEngine(lib, params, secret);
  }

  #initSecret(secret: Exclude<EngineSecret, { kind: 'none' }>): void {
    const lib = this.#lib;
    const context = this.#ctx();
    if (secret.kind === 'generate') {
      // SEAL draws the key from its own CSPRNG, seeded through Emscripten's getentropy from node:crypto.
      const kg = lib.KeyGenerator(context);
      try {
        this.#secretKey = kg.secretKey();
      } finally {
        kg.delete();
      }
    } else {
      const bytes = checkSecretKey(secret.bytes, this.shape.degree, this.keyLevel);
      const sk = lib.SecretKey();
      try {
        sk.loadArray(context, bytes);
      } catch (cause) {
        sk.delete();
        throw new HeError('E_HE_CONTEXT_FORMAT', 'SEAL refused the secret key', { cause });
      }
      this.#secretKey = sk;
    }
    // node-seal's Encryptor constructor wants a public key even for symmetric encryption; we derive one
    // here, hand it to the Encryptor (which keeps its own copy) and delete ours. It is never serialized.
    const kg = lib.KeyGenerator(context, this.#secretKey);
    try {
      const pk = kg.createPublicKey();
      try {
        this.#encryptor = lib.Encryptor(context, pk, this.#secretKey);
      } finally {
        pk.delete();
      }
    } finally {
      kg.delete();
    }
    this.#decryptor = lib.Decryptor(context, this.#secretKey);
  }

  #live(): Shared {
    if (this.#shared === undefined) throw new TypeError('HE context used after dispose()');
    return this.#shared;
  }

  #ctx(): Context {
    return this.#live().context;
  }

  #enc(): CKKSEncoder {
    return this.#live().encoder;
  }

  #ev(): Evaluator {
    return this.#live().evaluator;
  }

  #levelId(level: WireLevel): ParmsIdType {
    const s = this.#live();
    const i = s.shape.levels.indexOf(level);
    if (i < 0) throw new TypeError('level does not belong to this context');
    return s.levelIds[i]!;
  }

  #levelIndex(level: WireLevel): number {
    const i = this.shape.levels.indexOf(level);
    if (i < 0) throw new TypeError('level does not belong to this context');
    return i;
  }

  /** The secret key as an uncompressed SEAL serialization (for the client context file). */
  exportSecretKey(): Uint8Array {
    this.#ctx();
    if (this.#secretKey === undefined) throw new HeError('E_HE_NO_SECRET_KEY', 'this context holds no secret key');
    return guard('secret key export', () => this.#secretKey!.saveArray(this.#lib.ComprModeType.none));
  }

  /**
   * Encrypts up to `slots` values at the top level with the secret key (symmetric, seeded: the second
   * polynomial is replaced by the 64-byte seed it was drawn from), serialized with SEAL's zstd compression.
   */
  encrypt(values: Float64Array): Uint8Array {
    const encryptor = this.#encryptor;
    this.#ctx();
    if (encryptor === undefined) throw new HeError('E_HE_NO_SECRET_KEY', 'encryption here needs the client context (secret key)');
    if (values.length > this.slots) throw new RangeError(`at most ${this.slots} values fit one ciphertext, got ${values.length}`);
    return guard('encryption', () => {
      this.#enc().encode(values, this.scale, this.#scratch);
      const serializable = encryptor.encryptSymmetricSerializable(this.#scratch!);
      try {
        return serializable.saveArray(this.#lib.ComprModeType.zstd);
      } finally {
        serializable.delete();
      }
    });
  }

  /** Loads a ciphertext that passed the wire validator. */
  load(checked: CheckedCiphertext): Ct {
    const context = this.#ctx();
    if (!this.shape.levels.includes(checked.level)) throw new TypeError('ciphertext was checked against another context');
    const ct = this.#lib.CipherText();
    try {
      ct.loadArray(context, checked.sealBytes);
    } catch (cause) {
      ct.delete();
      throw new HeError('E_HE_CIPHERTEXT_INVALID', 'SEAL refused a ciphertext that passed validation', { cause });
    }
    return new Ct(ct, checked.level);
  }

  /** A plaintext holding `value` in every slot, encoded at `scale` for ciphertexts at `level`. */
  constant(value: number, scale: number, level: WireLevel): Pt {
    const index = this.#levelIndex(level);
    const pt = this.#lib.PlainText();
    try {
      guard('encoding', () => {
        this.#enc().encode(new Float64Array(this.slots).fill(value), scale, pt);
        if (index > 0) this.#ev().plainModSwitchTo(pt, this.#levelId(level), pt);
      });
    } catch (e) {
      pt.delete();
      throw e;
    }
    return new Pt(pt);
  }

  /** A plaintext holding `values` (zero-padded), encoded at `scale` for ciphertexts at `level`. */
  encode(values: Float64Array, scale: number, level: WireLevel): Pt {
    if (values.length > this.slots) throw new RangeError(`at most ${this.slots} values fit one plaintext, got ${values.length}`);
    const index = this.#levelIndex(level);
    const pt = this.#lib.PlainText();
    try {
      guard('encoding', () => {
        this.#enc().encode(values, scale, pt);
        if (index > 0) this.#ev().plainModSwitchTo(pt, this.#levelId(level), pt);
      });
    } catch (e) {
      pt.delete();
      throw e;
    }
    return new Pt(pt);
  }

  /** `ct *= pt` in place (scale multiplies; no rescale). */
  multiplyPlain(ct: Ct, pt: Pt): void {
    guard('plaintext multiplication', () => this.#ev().multiplyPlain(ct.handle, pt.handle, ct.handle));
  }

  /** `acc += ct` in place. */
  add(acc: Ct, ct: Ct): void {
    guard('addition', () => this.#ev().add(acc.handle, ct.handle, acc.handle));
  }

  /** `acc -= ct` in place. */
  sub(acc: Ct, ct: Ct): void {
    guard('subtraction', () => this.#ev().sub(acc.handle, ct.handle, acc.handle));
  }

  /** `ct += pt` in place. */
  addPlain(ct: Ct, pt: Pt): void {
    guard('plaintext addition', () => this.#ev().addPlain(ct.handle, pt.handle, ct.handle));
  }

  /** Rescales to the next level in place: divides the scale by the prime it drops. */
  rescale(ct: Ct): void {
    const index = this.#levelIndex(ct.level);
    const next = this.shape.levels[index + 1];
    if (next === undefined) throw new TypeError('no level left to rescale to');
    guard('rescale', () => this.#ev().rescaleToNext(ct.handle, ct.handle));
    ct.level = next;
  }

  /** Drops primes down to `level` without changing the scale (the value must fit the smaller modulus). */
  modSwitchTo(ct: Ct, level: WireLevel): void {
    const index = this.#levelIndex(level);
    if (index < this.#levelIndex(ct.level)) throw new TypeError('cannot switch a ciphertext up the chain');
    if (level === ct.level) return;
    guard('modulus switch', () => this.#ev().cipherModSwitchTo(ct.handle, this.#levelId(level), ct.handle));
    ct.level = level;
  }

  /** Sets the scale metadata (an exact division of the encoded value by `scale / ct.scale`). */
  setScale(ct: Ct, scale: number): void {
    guard('scale update', () => ct.handle.setScale(scale));
  }

  /** A copy of `ct`. */
  clone(ct: Ct): Ct {
    return new Ct(guard('copy', () => ct.handle.clone()), ct.level);
  }

  /** Serializes a ciphertext with SEAL's zstd compression. */
  save(ct: Ct): Uint8Array {
    return guard('serialization', () => ct.handle.saveArray(this.#lib.ComprModeType.zstd));
  }

  /** Decrypts and decodes a ciphertext into `slots` values. */
  decrypt(ct: Ct): Float64Array {
    const decryptor = this.#decryptor;
    this.#ctx();
    if (decryptor === undefined) throw new HeError('E_HE_NO_SECRET_KEY', 'this context holds no secret key: it cannot decrypt');
    return guard('decryption', () => {
      decryptor.decrypt(ct.handle, this.#scratch);
      return this.#enc().decode(this.#scratch!);
    });
  }

  /** Deletes the SEAL objects the engine owns (and the shared ones when it was their last user). Idempotent. */
  dispose(): void {
    for (const o of [this.#decryptor, this.#encryptor, this.#secretKey, this.#scratch]) o?.delete();
    this.#decryptor = this.#encryptor = this.#secretKey = this.#scratch = undefined;
    if (this.#shared !== undefined) release(this.#shared);
    this.#shared = undefined;
  }
}
