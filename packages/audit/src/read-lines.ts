import { open } from 'node:fs/promises';
import { AuditError } from '@flare/core';
import { MAX_LINE_BYTES } from './record.js';

/** One line of a log file as read: its text, or why it could not be read. */
export interface RawLine {
  /** 1-based line number. */
  readonly line: number;
  /** The line without its newline; undefined when it is too long or not UTF-8. */
  readonly text: string | undefined;
  readonly problem?: 'too long' | 'not UTF-8';
  /** False for a last line without its newline (cut short). */
  readonly complete: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a file line by line in 1 MiB chunks, with memory bounded by {@link MAX_LINE_BYTES} per line
 * (a hostile file with a huge line costs no more than a normal one).
 *
 * @throws AuditError E_AUDIT_FILE when the file cannot be opened or read.
 */
export async function* readLines(path: string): AsyncGenerator<RawLine> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    throw new AuditError('E_AUDIT_FILE', `cannot open ${path}`, { cause });
  }
  try {
    const chunk = Buffer.alloc(1 << 20);
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let overlong = false;
    let line = 0;
    const emit = (complete: boolean): RawLine => {
      line++;
      if (overlong) return { line, text: undefined, problem: 'too long', complete };
      const bytes = Buffer.concat(pending, pendingBytes);
      try {
        return { line, text: utf8.decode(bytes), complete };
      } catch {
        return { line, text: undefined, problem: 'not UTF-8', complete };
      }
    };
    for (;;) {
      let n: number;
      try {
        ({ bytesRead: n } = await handle.read(chunk, 0, chunk.length, null));
      } catch (cause) {
        throw new AuditError('E_AUDIT_FILE', `cannot read ${path}`, { cause });
      }
      if (n === 0) break;
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, start);
        const end = nl === -1 || nl >= n ? n : nl;
        if (!overlong) {
          if (pendingBytes + (end - start) > MAX_LINE_BYTES) {
            overlong = true;
            pending = [];
            pendingBytes = 0;
          } else if (end > start) {
            pending.push(Buffer.from(chunk.subarray(start, end)));
            pendingBytes += end - start;
          }
        }
        if (end === n) break;
        yield emit(true);
        pending = [];
        pendingBytes = 0;
        overlong = false;
        start = end + 1;
      }
    }
    if (pendingBytes > 0 || overlong) yield emit(false);
  } finally {
    await handle.close();
  }
}
