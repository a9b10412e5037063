import { FlareRuntimeError } from '@flare/core';

/** The heavy parts the runtime loads only when a kit, a policy or a caller asks for them (optional peers). */
export type OptionalPeer = '@flare/cc-attest' | '@flare/cc-attest/testing' | '@flare/filters-he';

const loaded = new Map<OptionalPeer, Promise<unknown>>();

/**
 * Imports an optional peer on first use. `why` says what needed it, for the error when it is not installed.
 *
 * @throws FlareRuntimeError E_RUNTIME_OPTIONAL_PEER naming the package to install.
 */
export async function loadOptionalPeer<T>(name: OptionalPeer, why: string): Promise<T> {
  let p = loaded.get(name);
  if (p === undefined) {
    p = import(name).catch((cause: unknown) => {
      loaded.delete(name);
      const missing = cause instanceof Error && 'code' in cause && (cause as { code?: unknown }).code === 'ERR_MODULE_NOT_FOUND';
      throw new FlareRuntimeError('E_RUNTIME_OPTIONAL_PEER', `${why} needs ${name}, which ${missing ? 'is not installed' : 'could not be loaded'}: npm install ${name}`, { cause });
    });
    loaded.set(name, p);
  }
  return (await p) as T;
}
