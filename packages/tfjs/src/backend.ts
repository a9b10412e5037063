import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { MlError, silentLogger, type Logger } from '@flare/core';
import * as tf from '@tensorflow/tfjs-core';

/** The backends @flare/tfjs can run on, fastest first. `tensorflow` is the native binding of tfjs-node(-gpu). */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

/** What {@link selectBackend} chose and why. */
export interface BackendChoice {
  readonly name: BackendName;
  /** Why this one: `FLARE_TF_BACKEND`, `options`, or `auto` (first that loaded). */
  readonly reason: 'FLARE_TF_BACKEND' | 'options' | 'auto';
  /** Backends tried before it that failed to load, with the reason (no stack traces). */
  readonly skipped: ReadonlyArray<{ readonly name: BackendName; readonly why: string }>;
}

/** Options of {@link selectBackend}. */
export interface SelectBackendOptions {
  /** Force a backend (wins over auto choice, loses to `FLARE_TF_BACKEND`). */
  readonly prefer?: BackendName;
  /** Environment to read `FLARE_TF_BACKEND` from (default `process.env`). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Where the chosen backend is logged (info). */
  readonly logger?: Logger;
}

const NAMES: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];
let current: Promise<BackendChoice> | undefined;

// The native packages are optional peers (toolchain.md: their install downloads libtensorflow and fails
// offline, so they are never dependencies). A computed specifier keeps bundlers and tsc from resolving them.
const NATIVE = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

async function loadTensorflow(): Promise<void> {
  let last: unknown;
  for (const spec of NATIVE) {
    try {
      await import(/* @vite-ignore */ `${spec}`);
      if (await tf.setBackend('tensorflow')) return;
      last = new Error(`${spec} loaded but did not register the tensorflow backend`);
    } catch (e) {
      last = e;
    }
  }
  throw last instanceof Error ? last : new Error('no native TensorFlow binding is installed');
}

async function loadWasm(): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // The .wasm binaries ship inside the package (dist/*.wasm): point the loader at them so nothing is
  // fetched at run time (the default path is a CDN in browsers and the module folder in Node).
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  wasm.setWasmPaths(`${dir}/`);
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend failed to initialise');
}

async function loadCpu(): Promise<void> {
  await import('@tensorflow/tfjs-backend-cpu');
  // tfjs-core's PROD flag silences its one-time "install tfjs-node" console banner: the choice is logged
  // through our logger instead, and nothing else in tfjs depends on the flag for correctness.
  tf.env().set('PROD', true);
  if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend failed to initialise');
}

const LOADERS: Record<BackendName, () => Promise<void>> = { tensorflow: loadTensorflow, wasm: loadWasm, cpu: loadCpu };

function reasonOf(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]?.slice(0, 200) ?? 'unknown';
}

async function choose(options: SelectBackendOptions): Promise<BackendChoice> {
  const env = options.env ?? process.env;
  const logger = options.logger ?? silentLogger;
  const forced = env['FLARE_TF_BACKEND']?.trim();
  if (forced !== undefined && forced !== '') {
    if (!(NAMES as readonly string[]).includes(forced)) {
      throw new MlError('E_ML_BACKEND_NAME', `FLARE_TF_BACKEND=${JSON.stringify(forced.slice(0, 40))} is not a backend`);
    }
    const name = forced as BackendName;
    try {
      await LOADERS[name]();
    } catch (e) {
      throw new MlError('E_ML_BACKEND_UNAVAILABLE', `backend '${name}' (from FLARE_TF_BACKEND) could not be loaded: ${reasonOf(e)}`, { cause: e });
    }
    logger.info(`tfjs backend: ${name} (from FLARE_TF_BACKEND)`, { backend: name });
    return { name, reason: 'FLARE_TF_BACKEND', skipped: [] };
  }
  if (options.prefer !== undefined) {
    try {
      await LOADERS[options.prefer]();
    } catch (e) {
      throw new MlError('E_ML_BACKEND_UNAVAILABLE', `backend '${options.prefer}' could not be loaded: ${reasonOf(e)}`, { cause: e });
    }
    logger.info(`tfjs backend: ${options.prefer} (from options)`, { backend: options.prefer });
    return { name: options.prefer, reason: 'options', skipped: [] };
  }
  const skipped: Array<{ name: BackendName; why: string }> = [];
  for (const name of NAMES) {
    try {
      await LOADERS[name]();
      logger.info(`tfjs backend: ${name}`, { backend: name, skipped });
      return { name, reason: 'auto', skipped };
    } catch (e) {
      skipped.push({ name, why: reasonOf(e) });
    }
  }
  // cpu is pure JavaScript and always loads; reaching here means tfjs itself is broken.
  throw new MlError('E_ML_BACKEND_UNAVAILABLE', 'no TensorFlow.js backend could be loaded');
}

/**
 * Chooses and activates the TensorFlow.js backend for this process, once: `FLARE_TF_BACKEND` if set
 * (`tensorflow` | `wasm` | `cpu`), else `options.prefer`, else the first that loads of tfjs-node-gpu /
 * tfjs-node (optional peers, guarded `import()`), wasm (binaries from the installed package, nothing
 * downloaded), cpu. Logs the choice. Later calls return the first call's choice (tfjs has one engine
 * per process).
 *
 * @throws MlError E_ML_BACKEND_NAME for an unknown FLARE_TF_BACKEND, E_ML_BACKEND_UNAVAILABLE when a
 * forced backend does not load.
 * @example
 * ```ts
 * const { name } = await selectBackend({ logger }); // 'wasm' on a machine without tfjs-node-gpu
 * ```
 */
export function selectBackend(options: SelectBackendOptions = {}): Promise<BackendChoice> {
  if (current === undefined) {
    current = choose(options);
    // A failed choice must not stick: let the caller fix the environment and try again.
    current.catch(() => {
      current = undefined;
    });
  }
  return current;
}
