// #14.19: loadKit verifies a kit's files and uses exactly the verified bytes. Every read of the file system is
// counted: no kit file may be read twice (a second read could return bytes an attacker swapped in after the
// check).
import type * as FsPromises from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { loadKit, loadProject, provision, type ProvisionResult } from '../src/index.js';
import { FIXTURE, tempDir } from './helpers.js';

const { reads } = vi.hoisted(() => ({ reads: new Map<string, number>() }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof FsPromises>();
  const readFile = ((path: Parameters<typeof fs.readFile>[0], ...rest: unknown[]) => {
    const key = String(path);
    reads.set(key, (reads.get(key) ?? 0) + 1);
    return (fs.readFile as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readFile;
  return { ...fs, readFile, default: { ...fs, readFile } };
});

describe('loadKit reads every kit file once', () => {
  let r: ProvisionResult;
  beforeAll(async () => {
    r = await provision(await loadProject(FIXTURE), { workspace: await tempDir() });
  });

  it.each(['server1', 'site-1', 'admin@nvidia.com'])('%s: each file read at most once, and the kit built from those bytes', async (who) => {
    const dir = join(r.prodDir, who);
    reads.clear();
    const kit = await loadKit(dir);
    const kitReads = [...reads].filter(([path]) => path.startsWith(dir));
    expect(kitReads.length).toBeGreaterThan(5);
    expect(kitReads.filter(([, n]) => n > 1)).toEqual([]);
    expect(Buffer.from(kit.files.get('startup/rootCA.pem')!).toString()).toBe(kit.rootCaPem);
  });
});
