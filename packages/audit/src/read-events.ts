import { parseStrictJson, type JsonValue } from '@flare/core';
import { readLines } from './read-lines.js';
import { eventSchema, recordHash, type AuditRecord } from './record.js';

/** An intact event line of a log file (hash checked), with where it was found. */
export interface LocatedEvent {
  readonly file: string;
  readonly line: number;
  readonly record: AuditRecord;
}

/**
 * The event lines of a log whose content matches their hash (checkpoints and damaged lines skipped; use
 * verifyAuditLog to learn about those).
 */
export async function* readEvents(path: string): AsyncGenerator<LocatedEvent> {
  for await (const raw of readLines(path)) {
    if (raw.text === undefined || !raw.complete) continue;
    let value;
    try {
      value = parseStrictJson(raw.text);
    } catch {
      continue;
    }
    const parsed = eventSchema.safeParse(value);
    if (!parsed.success || recordHash(value as Record<string, JsonValue>) !== parsed.data.hash) continue;
    yield { file: path, line: raw.line, record: parsed.data as AuditRecord };
  }
}
