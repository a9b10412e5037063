import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { PkiError, silentLogger, type AuditHook, type Logger } from '@flare/core';
import type { Crl, CrlStore } from '@flare/pki';
import { reasonOf } from '../errors.js';

/** A CRL file larger than this is refused unread (a project's CRL is a few KiB; 16 MiB holds ~400,000 entries). */
export const MAX_CRL_FILE_BYTES = 16 * 1024 * 1024;

/** Options of {@link watchCrlFile}. */
export interface CrlWatchOptions {
  /** The CRL file to watch (PEM), e.g. `<server workspace>/crl.pem`, which `flare pki cert revoke --server-workspace` writes. */
  readonly file: string;
  /** The participant's memory of the newest CRL: only a root-signed CRL with a higher number is taken. */
  readonly store: Pick<CrlStore, 'accept'>;
  /** Called with each newer CRL the store accepted (the server: `ServerEngine.applyCrl`). */
  readonly onNewer: (crl: Crl) => void;
  /** `crl_updated` when taken, `crl_refused` (with its code) when refused. */
  readonly audit?: AuditHook;
  readonly logger?: Logger;
  /** How often the file's metadata is polled (default 2,000 ms). */
  readonly intervalMs?: number;
}

/** A running {@link watchCrlFile}. */
export interface CrlWatch {
  /** Reads the file now (what a change does); resolves when it was taken or refused. */
  check(): Promise<void>;
  /** Stops watching. */
  close(): void;
}

/**
 * Watches a CRL file and hands every newer CRL in it to `onNewer`, so a revocation takes effect without a
 * restart: `flare pki cert revoke` writes the file, the server takes it, cuts the revoked sessions and pushes it
 * to its sites. The file is validated by the store (signed by the project root, a CRL number above the current
 * one); anything else (older, same number but different, unsigned, unreadable, too large) is refused, audited
 * `crl_refused` with its code, and the current CRL stays.
 *
 * It polls the file's metadata (`fs.watchFile`) rather than using `fs.watch`: fs.watch misses changes on
 * network and some container file systems, and loses the file after an atomic rename replaces it (the way
 * `writeFileAtomic` and most editors write), while a stat poll sees the new file whatever wrote it.
 */
export function watchCrlFile(o: CrlWatchOptions): CrlWatch {
  const logger = o.logger ?? silentLogger;
  let queue: Promise<void> = Promise.resolve();
  const refused = (code: string, message: string): void => {
    o.audit?.({ action: 'crl_refused', msg: `${o.file}: ${code}: ${message}`.slice(0, 2000), data: { code, file: o.file } });
    logger.warn('refused the CRL file; the current CRL stays', { file: o.file, code, reason: message });
  };
  const read = async (): Promise<void> => {
    try {
      const pem = await readCrlFile(o.file);
      const { crl, changed } = await o.store.accept(pem);
      if (!changed) return;
      const n = crl.crlNumber?.toString() ?? '?';
      o.audit?.({ action: 'crl_updated', msg: `took CRL number ${n} from ${o.file} (${crl.revoked.size} revoked)`, data: { crl_number: n, revoked: crl.revoked.size, file: o.file } });
      logger.info('took a newer CRL', { file: o.file, crlNumber: n, revoked: crl.revoked.size });
      o.onNewer(crl);
    } catch (e) {
      const { code, message } = reasonOf(e);
      refused(code, message);
    }
  };
  const check = (): Promise<void> => (queue = queue.then(read));
  const changed = (now: Stats, before: Stats): void => {
    // A removed file (nlink 0) is no revocation to take: the current CRL stays.
    if (now.nlink === 0 || (now.mtimeMs === before.mtimeMs && now.size === before.size && now.ino === before.ino)) return;
    void check();
  };
  watchFile(o.file, { interval: o.intervalMs ?? 2000, persistent: false }, changed);
  return {
    check,
    close: () => unwatchFile(o.file, changed),
  };
}

/** The file's text, bounded before reading; an unreadable or oversized file is E_CRL_INVALID naming it. */
async function readCrlFile(file: string): Promise<string> {
  try {
    const size = (await stat(file)).size;
    if (size > MAX_CRL_FILE_BYTES) throw new PkiError('E_CRL_INVALID', `the CRL file is ${size} bytes, more than the ${MAX_CRL_FILE_BYTES} a CRL may have`);
    return await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof PkiError) throw e;
    throw new PkiError('E_CRL_INVALID', `cannot read the CRL file: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}
