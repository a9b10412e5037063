import { createHash } from 'node:crypto';
import { FlareRuntimeError, decodeModel, type FLModel } from '@flare/core';

/**
 * SHA-256 (hex) of a model's tensors: each name (sorted), dtype, shape and data bytes, as decoded. Metadata
 * and metrics are left out (a server may note the round in them); two encodings of the same tensors (another
 * header order, other padding) give the same digest. The round-0 check and cyclic hop signatures both use it.
 */
export function tensorDigest(m: FLModel): string {
  const h = createHash('sha256').update('flare-ts tensors v1\n');
  for (const name of [...m.params.keys()].sort()) {
    const t = m.params.get(name)!;
    h.update(`${JSON.stringify(name)} ${t.dtype} ${JSON.stringify(t.shape)} ${t.data.byteLength}\n`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex');
}

/** The digest of a job's signed initial model (model.safetensors of the verified bundle), undefined when it has none. */
export function initialModelDigest(model: Uint8Array | undefined): string | undefined {
  if (model === undefined) return undefined;
  try {
    return tensorDigest(decodeModel(model));
  } catch (cause) {
    throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `the job's signed initial model (model.safetensors) does not decode: ${cause instanceof Error ? cause.message : 'invalid'}`, { cause });
  }
}

/**
 * Checks that the global model a site received for round 0 is the initial model its admin signed.
 * @throws FlareRuntimeError E_RUNTIME_INITIAL_MODEL naming the job and both digests.
 */
export function checkInitialModel(received: FLModel, expected: string, job: string): void {
  const got = tensorDigest(received);
  if (got !== expected) {
    throw new FlareRuntimeError('E_RUNTIME_INITIAL_MODEL', `job ${job}: the round 0 global model (tensors ${got.slice(0, 16)}...) is not the initial model its admin signed (${expected.slice(0, 16)}...): the server changed it`);
  }
}
