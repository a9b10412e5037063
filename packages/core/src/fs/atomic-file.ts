import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FileError } from '../errors/areas.js';

/** Options of {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * The new file's permission bits, set exactly (not reduced by the umask). Default 0o600: FLARE-TS state
   * files (CA state, keys, checkpoints, budgets) are private to the process's user.
   */
  readonly mode?: number;
}

const reasonOf = (e: unknown): string => {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : e instanceof Error ? e.message : 'unknown error';
};

async function syncFolder(folder: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(folder, 'r');
  } catch (e) {
    // Some platforms (Windows) cannot open a folder for fsync; the rename itself has happened.
    if (['EISDIR', 'EPERM', 'EACCES'].includes(reasonOf(e))) return;
    throw e;
  }
  try {
    await handle.sync();
  } catch (e) {
    // File systems that cannot fsync a folder say EINVAL: nothing more can be done there.
    if (reasonOf(e) !== 'EINVAL') throw e;
  } finally {
    await handle.close();
  }
}

/**
 * Replaces the file at `path` durably and atomically: readers see the old bytes or the new bytes, never a mix
 * or an empty file, even after a crash or power loss. It writes a temporary file in the same folder (so the
 * rename stays within one file system; POSIX rename(2) is atomic), fsyncs it, renames it over `path`, then
 * fsyncs the folder, without which the rename itself may be lost on power failure. Strings are written as
 * UTF-8. Node only.
 *
 * @throws FileError E_FILE_WRITE naming the path and the system reason (e.g. ENOENT for a missing folder,
 *   ENOSPC), with the system error as `cause`; the temporary file is removed and `path` is unchanged.
 * @example
 * ```ts
 * await writeFileAtomic(join(stateDir, 'ca.json'), JSON.stringify(state), { mode: 0o600 });
 * ```
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string, options: WriteFileAtomicOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new RangeError(`"mode" expected file permission bits, got ${String(options.mode)}`);
  const folder = dirname(path);
  const tmp = join(folder, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let created = false;
  try {
    const handle = await open(tmp, 'wx', mode);
    created = true;
    try {
      await handle.chmod(mode);
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
    created = false;
    await syncFolder(folder);
  } catch (e) {
    if (created) await unlink(tmp).catch(() => undefined);
    throw new FileError('E_FILE_WRITE', `could not write ${path}: ${reasonOf(e)}`, { cause: e });
  }
}

/** Options of {@link readFileIfExists}. */
export interface ReadFileIfExistsOptions {
  /** Refuse a file larger than this many bytes before reading it (E_FILE_TOO_LARGE). Default 1 GiB. */
  readonly maxBytes?: number;
}

/**
 * Reads a whole file, or answers `undefined` when it does not exist (ENOENT; also ENOTDIR, a path through a
 * plain file). The size is checked before anything is read, and the read stops at `maxBytes` + 1 bytes, so a
 * file that grows while being read is refused too.
 *
 * @throws FileError E_FILE_TOO_LARGE above `maxBytes`, E_FILE_READ when the file exists but cannot be read
 *   (permissions, a folder), naming the path.
 */
export async function readFileIfExists(path: string, options: ReadFileIfExistsOptions = {}): Promise<Uint8Array | undefined> {
  const maxBytes = options.maxBytes ?? 2 ** 30;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`"maxBytes" expected a non-negative integer, got ${String(options.maxBytes)}`);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    const reason = reasonOf(e);
    if (reason === 'ENOENT' || reason === 'ENOTDIR') return undefined;
    throw new FileError('E_FILE_READ', `could not open ${path}: ${reason}`, { cause: e });
  }
  try {
    let size: number;
    try {
      const s = await handle.stat();
      if (!s.isFile()) throw Object.assign(new Error('not a regular file'), { code: s.isDirectory() ? 'EISDIR' : 'ENOTREG' });
      size = s.size;
    } catch (e) {
      throw new FileError('E_FILE_READ', `could not read ${path}: ${reasonOf(e)}`, { cause: e });
    }
    if (size > maxBytes) throw new FileError('E_FILE_TOO_LARGE', `${path} is ${size} bytes, above the ${maxBytes}-byte limit`);
    // Read at most maxBytes + 1: one byte more than allowed proves the file grew past the limit. A file that
    // grows while it is read (within the limit) is read to its end.
    let buffer = new Uint8Array(Math.min(size, maxBytes) + 1);
    let filled = 0;
    try {
      for (;;) {
        const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
        if (filled > maxBytes) break;
        if (filled === buffer.length) {
          const grown = new Uint8Array(Math.min(buffer.length * 2, maxBytes + 1));
          grown.set(buffer);
          buffer = grown;
        }
      }
    } catch (e) {
      throw new FileError('E_FILE_READ', `could not read ${path}: ${reasonOf(e)}`, { cause: e });
    }
    if (filled > maxBytes) throw new FileError('E_FILE_TOO_LARGE', `${path} grew above the ${maxBytes}-byte limit while it was read`);
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}
