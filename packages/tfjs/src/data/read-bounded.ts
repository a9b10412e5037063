import { open } from 'node:fs/promises';
import { MlError } from '@flare/core';

const reason = (e: unknown): string => ((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : ((e as NodeJS.ErrnoException).code ?? 'error'));

/**
 * Reads a whole regular file of at most `maxBytes`: the size comes from the open descriptor (so a file swapped
 * or grown after the check cannot make it read more), and nothing is allocated before it is checked.
 *
 * @throws MlError E_ML_DATA_FILE (missing, not a regular file, unreadable, shrank while read), E_ML_DATA_TOO_LARGE.
 */
export async function readBounded(file: string, maxBytes: number, name: string): Promise<Buffer> {
  const fh = await open(file, 'r').catch((e: unknown) => {
    throw new MlError('E_ML_DATA_FILE', `${name} cannot be read (${reason(e)})`, { cause: e });
  });
  try {
    const s = await fh.stat();
    if (!s.isFile()) throw new MlError('E_ML_DATA_FILE', `${name} is not a regular file`);
    if (s.size > maxBytes) throw new MlError('E_ML_DATA_TOO_LARGE', `${name} has ${s.size} bytes, more than its limit of ${maxBytes}`);
    const buf = Buffer.allocUnsafe(s.size);
    let at = 0;
    while (at < s.size) {
      const { bytesRead } = await fh.read(buf, at, s.size - at, at);
      if (bytesRead === 0) throw new MlError('E_ML_DATA_FILE', `${name} shrank while it was read`);
      at += bytesRead;
    }
    return buf;
  } catch (e) {
    if (e instanceof MlError) throw e;
    throw new MlError('E_ML_DATA_FILE', `${name} cannot be read (${reason(e)})`, { cause: e });
  } finally {
    await fh.close();
  }
}
