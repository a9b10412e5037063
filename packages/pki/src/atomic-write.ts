// A durable atomic write: temporary file in the same folder, fsync, rename over the target, fsync the folder.
// After a crash the target holds the old bytes or the new ones, never a torn mix (the CA state and the CRL
// store are the files this protects). To be replaced by @flare/core's writeFileAtomic once it lands.
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Writes `data` to `path` atomically and durably with file mode `mode`. Internal. */
export async function writeAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.chmod(mode); // the umask may have narrowed `mode` at creation
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await syncFolder(dirname(path));
}

async function syncFolder(dir: string): Promise<void> {
  // POSIX: the rename is durable only once the folder's entry is on disk. Windows cannot open a folder.
  if (process.platform === 'win32') return;
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
