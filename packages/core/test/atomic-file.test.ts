import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileError, readFileIfExists, writeFileAtomic } from '../src/index.js';
import { expectFlareCodeAsync } from '../src/testing/index.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-core-fs-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('writes bytes and strings, replaces an existing file, and leaves no temporary file', async () => {
    const path = join(dir, 'state.json');
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect([...(await readFile(path))]).toEqual([1, 2, 3]);
    await writeFileAtomic(path, '{"v":2}');
    expect(await readFile(path, 'utf8')).toBe('{"v":2}');
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('sets the mode exactly, 0o600 by default, whatever the umask', async () => {
    const path = join(dir, 'key.pem');
    await writeFileAtomic(path, 'k');
    expect((await stat(path)).mode & 0o7777).toBe(0o600);
    await writeFileAtomic(path, 'k', { mode: 0o644 });
    expect((await stat(path)).mode & 0o7777).toBe(0o644);
    await expect(writeFileAtomic(path, 'k', { mode: -1 })).rejects.toThrow(RangeError);
  });

  it('refuses a missing folder with E_FILE_WRITE naming the path and the reason, and leaves nothing behind', async () => {
    const path = join(dir, 'missing', 'state.json');
    const e = await expectFlareCodeAsync(writeFileAtomic(path, 'x'), 'E_FILE_WRITE');
    expect(e).toBeInstanceOf(FileError);
    expect(e.message).toContain(path);
    expect(e.message).toContain('ENOENT');
    expect((e.cause as { code?: string }).code).toBe('ENOENT');
  });

  it('when the rename fails (target is a folder) the temporary file is removed and the target is unchanged (E_FILE_WRITE)', async () => {
    const target = join(dir, 'taken');
    await mkdir(target);
    await writeFile(join(target, 'inside'), 'keep');
    await expectFlareCodeAsync(writeFileAtomic(target, 'x'), 'E_FILE_WRITE');
    expect((await readdir(dir)).sort()).toEqual(['taken']);
    expect(await readFile(join(target, 'inside'), 'utf8')).toBe('keep');
  });

  it('concurrent writers of one file never interleave: the file holds one whole version', async () => {
    const path = join(dir, 'race.bin');
    const versions = Array.from({ length: 8 }, (_, i) => new Uint8Array(64 * 1024).fill(i + 1));
    await Promise.all(versions.map((v) => writeFileAtomic(path, v)));
    const got = await readFile(path);
    expect(got.length).toBe(64 * 1024);
    expect(new Set(got).size).toBe(1);
    expect(await readdir(dir)).toEqual(['race.bin']);
  });
});

describe('readFileIfExists', () => {
  it('reads a file, and answers undefined for a missing one or a path through a plain file', async () => {
    const path = join(dir, 'a.bin');
    await writeFile(path, Buffer.from([9, 8, 7]));
    expect([...(await readFileIfExists(path))!]).toEqual([9, 8, 7]);
    expect(await readFileIfExists(join(dir, 'none'))).toBeUndefined();
    expect(await readFileIfExists(join(path, 'below'))).toBeUndefined();
    await writeFile(join(dir, 'empty'), '');
    expect((await readFileIfExists(join(dir, 'empty')))!.length).toBe(0);
  });

  it('refuses a file above maxBytes before reading it (E_FILE_TOO_LARGE)', async () => {
    const path = join(dir, 'big.bin');
    await writeFile(path, Buffer.alloc(1025));
    const e = await expectFlareCodeAsync(readFileIfExists(path, { maxBytes: 1024 }), 'E_FILE_TOO_LARGE');
    expect(e.message).toContain(path);
    expect((await readFileIfExists(path, { maxBytes: 1025 }))!.length).toBe(1025);
  });

  it('refuses a folder (E_FILE_READ)', async () => {
    await expectFlareCodeAsync(readFileIfExists(dir), 'E_FILE_READ');
  });
});
