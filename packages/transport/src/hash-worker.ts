// SHA-256 of large received messages on a worker thread, so that hashing (about a fifth of a receiver's CPU for
// a large model) runs beside the main thread's TLS decryption and copying instead of after it. Internal.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

// The worker keeps one incremental SHA-256 per stream and answers each update with the bytes it has hashed
// (for backpressure) and each digest request with the digest. Eval'd worker code is a script, or a module when
// the process runs with --input-type=module (workers inherit it): load built-ins in a way both accept.
const SOURCE = `
const builtin = (name) => (typeof require === 'function' ? require(name) : process.getBuiltinModule(name));
const { parentPort } = builtin('node:worker_threads');
const { createHash } = builtin('node:crypto');
const states = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let h = states.get(m.id);
    if (h === undefined) states.set(m.id, (h = createHash('sha256')));
    h.update(new Uint8Array(m.buffer, m.offset, m.length));
    parentPort.postMessage({ id: m.id, hashed: m.length });
  } else if (m.op === 'digest') {
    const h = states.get(m.id) ?? createHash('sha256');
    states.delete(m.id);
    const d = h.digest();
    parentPort.postMessage({ id: m.id, digest: d });
  } else if (m.op === 'drop') {
    states.delete(m.id);
  }
});
`;

interface Stream {
  onHashed: (bytes: number) => void;
  /** The worker is gone: nothing more will be acknowledged (release any backpressure). */
  onFailed: () => void;
  digest?: { resolve: (d: Uint8Array) => void; reject: (e: Error) => void };
}

/** One stream's incremental hash on the worker. */
export interface WorkerHash {
  /**
   * Hashes `bytes`. `transfer` hands their whole ArrayBuffer to the worker (the caller must own it and never
   * touch it again); `copy` sends a copy. False when the worker is gone: nothing was sent and nothing will be
   * acknowledged. (Senders hash on their own thread: chunk buffers on a SharedArrayBuffer, which the worker
   * could read in place, cost Node's socket writes about 0.4 ms of CPU per MiB more than hashing saves.)
   */
  update(bytes: Uint8Array, mode: 'transfer' | 'copy'): boolean;
  /** The SHA-256 of everything updated, in order. */
  digest(): Promise<Uint8Array>;
  /** Forgets the stream (the message was abandoned). */
  drop(): void;
}

/** @internal Test hook: runs after each update is handed to the worker (to stop it mid-transfer). */
export const hashWorkerTestHooks: { afterUpdate?: (() => void) | undefined } = {};

let worker: Worker | undefined;
let broken = false;
let nextId = 1;
const streams = new Map<number, Stream>();

function fail(from: Worker, error: Error): void {
  if (worker !== from) return; // an earlier worker's late exit
  broken = true;
  worker = undefined;
  const failed = [...streams.values()];
  streams.clear();
  for (const s of failed) {
    s.onFailed();
    s.digest?.reject(error);
  }
}

function ensureWorker(): Worker | undefined {
  if (broken) return undefined;
  if (worker !== undefined) return worker;
  try {
    const w = new Worker(SOURCE, { eval: true, name: 'flare-transport-sha256' });
    w.on('message', (m: { id: number; hashed?: number; digest?: Uint8Array }) => {
      const s = streams.get(m.id);
      if (s === undefined) return;
      if (m.hashed !== undefined) s.onHashed(m.hashed);
      if (m.digest !== undefined) {
        streams.delete(m.id);
        s.digest?.resolve(new Uint8Array(m.digest));
      }
    });
    w.on('error', (e) => fail(w, e));
    w.on('exit', (code) => fail(w, new Error(`the hashing worker exited with code ${code}`)));
    // After the listeners: adding a 'message' listener refs the worker's port again. The worker must never keep
    // a process alive; a stream in progress is kept alive by its socket.
    w.unref();
    worker = w;
    return w;
  } catch {
    broken = true;
    return undefined;
  }
}

/**
 * Starts a stream on the shared hashing worker, or returns undefined when there is none (it could not start,
 * it failed before, or FLARE_TRANSPORT_HASH_WORKER=0): hash on the calling thread then.
 */
export function workerHash(onHashed: (bytes: number) => void, onFailed: () => void): WorkerHash | undefined {
  if (process.env['FLARE_TRANSPORT_HASH_WORKER'] === '0') return undefined;
  const w = ensureWorker();
  if (w === undefined) return undefined;
  const id = nextId++;
  const stream: Stream = { onHashed, onFailed };
  streams.set(id, stream);
  return {
    update(bytes, mode) {
      if (!streams.has(id)) return false;
      const own = mode === 'copy' ? new Uint8Array(bytes) : bytes;
      const buffer = own.buffer as ArrayBuffer;
      try {
        w.postMessage({ op: 'update', id, buffer, offset: own.byteOffset, length: own.byteLength }, [buffer]);
      } catch (e) {
        fail(w, e instanceof Error ? e : new Error(String(e)));
        return false;
      }
      hashWorkerTestHooks.afterUpdate?.();
      return true;
    },
    digest() {
      if (!streams.has(id)) return Promise.reject(new Error('the hashing worker is gone'));
      return new Promise<Uint8Array>((resolve, reject) => {
        stream.digest = { resolve, reject };
        w.postMessage({ op: 'digest', id });
      });
    },
    drop() {
      if (streams.delete(id)) w.postMessage({ op: 'drop', id });
    },
  };
}

/**
 * Stops the worker as a crash would (tests): streams in progress fall back to hashing on the calling thread;
 * the next stream starts a new worker.
 */
export async function stopHashWorker(): Promise<void> {
  const w = worker;
  if (w === undefined) return;
  await w.terminate();
  broken = false;
}

/** SHA-256 on the calling thread (the fallback, and small messages). */
export function inlineSha256(bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest();
}
