import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { FlareRuntimeError, decodeModel } from '@flare/core';
import { META_FILE, MODEL_FILE, type JobBundle } from '../protocol/bundle.js';
import { parseMetaJson } from '../protocol/job-definition.js';

/**
 * Reads a job folder (FLARE's job layout, simplified): `meta.json`, `model.safetensors`, optional `custom/**`
 * (the job's own code). meta.json and the model are checked here first, so a syntax error names meta.json
 * and its line, and a corrupt model names model.safetensors, before anything is sent.
 *
 * @throws FlareRuntimeError E_RUNTIME_JOB_INVALID naming the file at fault.
 */
export async function readJobFolder(dir: string): Promise<JobBundle> {
  const read = async (name: string): Promise<Uint8Array> =>
    new Uint8Array(
      await readFile(join(dir, name)).catch((e: unknown) => {
        throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `the job folder ${dir} has no readable ${name}`, { cause: e });
      }),
    );
  const meta = await read(META_FILE);
  parseMetaJson(meta, join(dir, META_FILE));
  const model = await read(MODEL_FILE);
  try {
    decodeModel(model);
  } catch (e) {
    throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `${join(dir, MODEL_FILE)} is not a valid safetensors model (${e instanceof Error ? e.message : 'invalid'}); write it again with a safetensors writer`, { cause: e });
  }
  const files = new Map<string, Uint8Array>();
  const custom = join(dir, 'custom');
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 8) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', 'custom/ is nested too deeply');
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `custom/${relative(custom, p)} is a symbolic link`);
      if (e.isDirectory()) await walk(p, depth + 1);
      else if (e.isFile()) files.set(relative(custom, p).split('\\').join('/'), new Uint8Array(await readFile(p)));
    }
  };
  if ((await stat(custom).catch(() => undefined))?.isDirectory() === true) await walk(custom, 0);
  return { meta, model, files };
}
