import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { HeError } from '@flare/core';
import type { HeParams } from '../params.js';

// Encryption on worker threads. SEAL in WebAssembly runs on one thread; a client with two cores encrypts about
// twice as fast with two workers (toolchain.md: "worker threads are the way to use the second core"). Each
// worker loads its own SEAL instance and the client's secret key (handed over in memory, never written), and
// encrypts exactly as CkksEngine.encrypt does: encode at the top level, seeded symmetric encryption, SEAL zstd.
// The worker is a small CommonJS script given as source (it must run unchanged from src/ under the test runner
// and from dist/), loading node-seal from the path this module resolves.

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { sealPath, degree, bits, scale, secretKey } = workerData;
(async () => {
  const seal = await require(sealPath)();
  const parms = seal.EncryptionParameters(seal.SchemeType.ckks);
  parms.setPolyModulusDegree(degree);
  const modulus = seal.CoeffModulus.Create(degree, Int32Array.from(bits));
  parms.setCoeffModulus(modulus);
  modulus.delete();
  const context = seal.Context(parms, true, seal.SecurityLevel.tc128);
  const sk = seal.SecretKey();
  sk.loadArray(context, secretKey);
  secretKey.fill(0);
  const kg = seal.KeyGenerator(context, sk);
  const pk = kg.createPublicKey();
  const encryptor = seal.Encryptor(context, pk, sk);
  pk.delete();
  kg.delete();
  const encoder = seal.CKKSEncoder(context);
  const plain = seal.PlainText();
  parentPort.on('message', (m) => {
    if (m.close) {
      for (const o of [plain, encoder, encryptor, sk, context, parms]) o.delete();
      parentPort.close();
      return;
    }
    try {
      encoder.encode(m.values, scale, plain);
      const s = encryptor.encryptSymmetricSerializable(plain);
      const bytes = s.saveArray(seal.ComprModeType.zstd);
      s.delete();
      parentPort.postMessage({ id: m.id, bytes }, [bytes.buffer]);
    } catch (e) {
      parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
    }
  });
  parentPort.postMessage({ ready: true });
})().catch((e) => parentPort.postMessage({ fatal: String((e && e.message) || e) }));
`;

interface Pending {
  resolve(bytes: Uint8Array): void;
  reject(e: unknown): void;
}

interface Reply {
  readonly id?: number;
  readonly bytes?: Uint8Array;
  readonly error?: string;
  readonly ready?: boolean;
  readonly fatal?: string;
}

/** A fixed set of encryption workers for one client key; jobs go round-robin, results come back in order. */
export class EncryptPool {
  readonly size: number;
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #active: number[];
  readonly #ready: Promise<void>;
  #next = 0;
  #closed = false;
  #broken = false;

  constructor(params: HeParams, secretKey: Uint8Array, size: number) {
    this.size = size;
    this.#active = new Array<number>(size).fill(0);
    const sealPath = createRequire(import.meta.url).resolve('node-seal/throws_wasm_node_umd.js');
    const readies: Promise<void>[] = [];
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { sealPath, degree: params.polyModulusDegree, bits: [...params.coeffModBits], scale: 2 ** params.scaleBits, secretKey: secretKey.slice() },
      });
      // Idle workers must not keep the process alive.
      worker.unref();
      readies.push(
        new Promise<void>((resolve, reject) => {
          worker.on('message', (m: Reply) => {
            if (m.ready) resolve();
            else if (m.fatal !== undefined) {
              this.#broken = true;
              reject(new HeError('E_HE_ENGINE', `an encryption worker could not start: ${m.fatal}`));
            }
            else this.#settle(m);
          });
          worker.on('error', (e) => {
            reject(e);
            this.#failAll(e);
          });
          worker.on('exit', () => {
            if (!this.#closed) this.#failAll(new Error('an encryption worker exited'));
          });
        }),
      );
      this.#workers.push(worker);
    }
    this.#ready = Promise.all(readies).then(() => undefined);
    this.#ready.catch(() => undefined);
  }

  #settle(m: Reply): void {
    const p = m.id === undefined ? undefined : this.#pending.get(m.id);
    if (p === undefined) return;
    this.#pending.delete(m.id!);
    if (m.bytes !== undefined) p.resolve(new Uint8Array(m.bytes));
    else p.reject(new HeError('E_HE_ENGINE', `SEAL encryption failed in a worker: ${m.error ?? 'unknown error'}`));
  }

  /** True once a worker failed or exited: the pool should be replaced. */
  get broken(): boolean {
    return this.#broken;
  }

  #failAll(cause: unknown): void {
    if (!this.#closed) this.#broken = true;
    for (const p of this.#pending.values()) p.reject(new HeError('E_HE_ENGINE', 'an encryption worker failed', { cause }));
    this.#pending.clear();
  }

  /** Encrypts up to `slots` values on the next worker. */
  async encrypt(values: Float64Array): Promise<Uint8Array> {
    if (this.#closed) throw new TypeError('encryption pool used after close()');
    await this.#ready;
    const id = this.#next++;
    const slot = id % this.size;
    const worker = this.#workers[slot]!;
    // Keep the process alive while a worker has work (idle workers are unref'd).
    if (this.#active[slot]!++ === 0) worker.ref();
    try {
      return await new Promise<Uint8Array>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject });
        const copy = Float64Array.from(values);
        worker.postMessage({ id, values: copy }, [copy.buffer]);
      });
    } finally {
      if (--this.#active[slot]! === 0) worker.unref();
    }
  }

  /** Deletes the workers' SEAL objects and ends them. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#failAll(new Error('encryption pool closed'));
    for (const w of this.#workers) {
      w.postMessage({ close: true });
      w.unref();
    }
  }
}
