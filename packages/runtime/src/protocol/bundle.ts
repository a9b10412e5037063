import { CodecError, FlareRuntimeError, decodeFrame, encodeFrame } from '@flare/core';
import { z } from 'zod';
import { RUNTIME_DEFAULTS } from '../defaults.js';

/** The file names a job bundle may hold besides `custom/**`. */
export const META_FILE = 'meta.json';
export const MODEL_FILE = 'model.safetensors';

/**
 * A job as it travels (admin -> server at submit, server -> site at deploy): `meta.json` exactly as the admin
 * wrote it (so a signature over its bytes still verifies at a site), the initial model, and the
 * job's own files under `custom/`. It travels as a message payload, streamed and bounded like a model, never
 * in the 64 KiB frame header.
 */
export interface JobBundle {
  /** meta.json's bytes, as written. */
  readonly meta: Uint8Array;
  /** model.safetensors (the initial global model): a site needs it at deploy to verify the job's signature. */
  readonly model?: Uint8Array;
  /** Files of custom/, by relative POSIX path. */
  readonly files: ReadonlyMap<string, Uint8Array>;
  /**
   * The submitting admin's signature over the whole job (@flare/policy's `JobSignature`, as JSON bytes): over
   * meta.json, the initial model and every custom/ file ({@link signedJobFiles}), bound to the project and the
   * job id. Every site verifies it and takes the submitter from the signing certificate.
   */
  readonly signature?: Uint8Array;
}

/**
 * The files a job signature covers, by the relative POSIX path the signature names: `meta.json`,
 * `model.safetensors` (when the bundle carries it) and each custom file as `custom/<path>`. The admin signs
 * this map and every site verifies the same map, so the two can never disagree about what was signed.
 */
export function signedJobFiles(bundle: JobBundle): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>([[META_FILE, bundle.meta]]);
  if (bundle.model !== undefined) out.set(MODEL_FILE, bundle.model);
  for (const [name, bytes] of bundle.files) out.set(`custom/${name}`, bytes);
  return out;
}

/** Limits applied when a bundle is decoded. */
export interface BundleLimits {
  readonly maxMetaBytes?: number;
  readonly maxJobFilesBytes?: number;
  readonly maxJobFiles?: number;
  /** Largest initial model (default: no limit beyond the transport's message limit). */
  readonly maxModelBytes?: number;
}

/** A job signature holds a certificate (16 KiB at most) and a digest per file: bounded before it is copied. */
const MAX_SIGNATURE_BYTES = 4 * 1024 * 1024;
const SAFE_PATH = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9_][A-Za-z0-9_./-]{0,511}$/;
const length = z.int().min(0).max(2 ** 32);
const Index = z.strictObject({
  v: z.literal(1),
  meta: length,
  model: length.optional(),
  signature: z.int().min(1).max(MAX_SIGNATURE_BYTES).optional(),
  files: z.array(z.tuple([z.string().regex(SAFE_PATH), length])).max(100_000),
});

/** Encodes a bundle (one copy of every part into the result). */
export function encodeJobBundle(bundle: JobBundle): Uint8Array {
  const files = [...bundle.files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const parts = [bundle.meta, ...(bundle.model === undefined ? [] : [bundle.model]), ...(bundle.signature === undefined ? [] : [bundle.signature]), ...files.map(([, b]) => b)];
  const body = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    body.set(p, at);
    at += p.byteLength;
  }
  const sizes = { ...(bundle.model === undefined ? {} : { model: bundle.model.byteLength }), ...(bundle.signature === undefined ? {} : { signature: bundle.signature.byteLength }) };
  return encodeFrame({ v: 1, meta: bundle.meta.byteLength, ...sizes, files: files.map(([n, b]) => [n, b.byteLength]) }, body);
}

const tooLarge = (what: string, got: number, max: number): never => {
  throw new FlareRuntimeError('E_RUNTIME_JOB_TOO_LARGE', `${what} has ${got} bytes, more than the ${max} this participant accepts`);
};

/**
 * Decodes a bundle, checking every declared size against the limits before anything is copied. The parts are
 * views into `bytes`.
 *
 * @throws FlareRuntimeError E_RUNTIME_JOB_TOO_LARGE (meta.json, custom/ or the model over its limit, naming
 *   which) or E_RUNTIME_JOB_INVALID (not a bundle, sizes that do not add up, an unsafe or repeated file name).
 */
export function decodeJobBundle(bytes: Uint8Array, limits: BundleLimits = {}): JobBundle {
  const maxMeta = limits.maxMetaBytes ?? RUNTIME_DEFAULTS.maxMetaBytes;
  const maxFiles = limits.maxJobFilesBytes ?? RUNTIME_DEFAULTS.maxJobFilesBytes;
  const maxCount = limits.maxJobFiles ?? RUNTIME_DEFAULTS.maxJobFiles;
  let frame;
  try {
    frame = decodeFrame(bytes, Index, { maxHeaderBytes: 1024 * 1024, maxBytes: 2 ** 32 - 1 });
  } catch (e) {
    if (e instanceof CodecError && e.code === 'E_CODEC_TOO_LARGE') throw new FlareRuntimeError('E_RUNTIME_JOB_TOO_LARGE', `the job bundle's index is too large: ${e.message}`, { cause: e });
    throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `the job bundle is malformed: ${e instanceof Error ? e.message : 'invalid'}`, { cause: e });
  }
  const { header, payload } = frame;
  if (header.meta > maxMeta) tooLarge(META_FILE, header.meta, maxMeta);
  if (header.model !== undefined && limits.maxModelBytes !== undefined && header.model > limits.maxModelBytes) tooLarge(MODEL_FILE, header.model, limits.maxModelBytes);
  if (header.files.length > maxCount) throw new FlareRuntimeError('E_RUNTIME_JOB_TOO_LARGE', `custom/ has ${header.files.length} files, more than the ${maxCount} this participant accepts`);
  const filesBytes = header.files.reduce((n, [, l]) => n + l, 0);
  if (filesBytes > maxFiles) tooLarge('custom/', filesBytes, maxFiles);
  const total = header.meta + (header.model ?? 0) + (header.signature ?? 0) + filesBytes;
  if (total !== payload.byteLength) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `the job bundle declares ${total} bytes of files but carries ${payload.byteLength}`);
  let at = 0;
  const take = (n: number): Uint8Array => payload.subarray(at, (at += n));
  const meta = take(header.meta);
  const model = header.model === undefined ? undefined : take(header.model);
  const signature = header.signature === undefined ? undefined : take(header.signature);
  const files = new Map<string, Uint8Array>();
  for (const [name, n] of header.files) {
    if (files.has(name)) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `the job bundle holds custom/${name} twice`);
    files.set(name, take(n));
  }
  return { meta, ...(model === undefined ? {} : { model }), ...(signature === undefined ? {} : { signature }), files };
}
