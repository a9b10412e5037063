import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HeError } from '@flare/core';
import { HeAggregator } from './aggregator.js';
import { loadHeContext, type HeContext } from './context.js';

/** Where provisioning puts the client context (with the secret key, mode 0600) in every client kit. */
export const HE_CLIENT_CONTEXT_FILE = 'startup/client_context.seal';
/** Where provisioning puts the server context (no secret key) in the server kit. */
export const HE_SERVER_CONTEXT_FILE = 'startup/server_context.seal';

/**
 * Loads the HE context of a startup kit: `startup/client_context.seal` for a client, `server_context.seal`
 * for the server. Verify the kit's signatures first (@flare/pki's loadKit): this function checks the file's
 * format and role, not who wrote it.
 *
 * @throws HeError E_HE_KIT_MISSING (no such file), E_HE_SECRET_KEY_PRESENT (a server kit holding a secret key),
 *   E_HE_NO_SECRET_KEY (a client kit without one), E_HE_CONTEXT_FORMAT.
 */
export async function loadHeContextFromKit(kitDir: string, role: 'client' | 'server'): Promise<HeContext> {
  const file = role === 'client' ? HE_CLIENT_CONTEXT_FILE : HE_SERVER_CONTEXT_FILE;
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(join(kitDir, file)));
  } catch (cause) {
    throw new HeError('E_HE_KIT_MISSING', `the kit in ${kitDir} has no readable ${file}`, { cause });
  }
  const context = await loadHeContext(bytes);
  if (role === 'server' && context.hasSecretKey) {
    context.dispose();
    throw new HeError('E_HE_SECRET_KEY_PRESENT', `${file} in ${kitDir} holds a secret key: the server kit must not`);
  }
  if (role === 'client' && !context.hasSecretKey) {
    context.dispose();
    throw new HeError('E_HE_NO_SECRET_KEY', `${file} in ${kitDir} holds no secret key: it is not a client context`);
  }
  return context;
}

/**
 * The server's encrypted aggregator, built from the server kit's context; disposing the aggregator disposes
 * the context.
 *
 * @example
 * ```ts
 * const aggregator = await heAggregatorFromKit('/workspace/project/prod_00/server1');
 * ```
 */
export async function heAggregatorFromKit(kitDir: string): Promise<HeAggregator> {
  const context = await loadHeContextFromKit(kitDir, 'server');
  try {
    return new HeAggregator({ context, disposeContext: true });
  } catch (e) {
    context.dispose();
    throw e;
  }
}
