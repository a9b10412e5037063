import TransportStream from 'winston-transport';
import type { AuditEventInput, JsonValue } from '@flare/core';

/** Options of {@link AuditTransport}. */
export interface AuditTransportOptions {
  /** Where events go: an AuditLog, or anything with its `append`. */
  readonly log: { append(event: AuditEventInput): string };
  /** Least severe winston level forwarded (default: all). */
  readonly level?: string;
  /** Action for entries that carry none (default `log`). */
  readonly action?: string;
}

const RESERVED = new Set(['level', 'message', 'action', 'ref', 'user', 'job', 'scope', 'data']);
const MAX_DEPTH = 4;

/** A JSON-safe copy of a logged value: numbers finite, no functions or cycles, errors as name and message. */
function json(value: unknown, depth: number): JsonValue | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return value.toString();
  if (depth >= MAX_DEPTH || typeof value !== 'object') return undefined;
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (Array.isArray(value)) return value.map((v) => json(v, depth + 1) ?? null);
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(value)) {
    const j = json(v, depth + 1);
    if (j !== undefined) out[k] = j;
  }
  return out;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * A winston transport that writes log entries into an audit log, so an application routes audit events
 * through its usual logger setup: `logger.info('job submitted', { action: 'submit_job', user, job })`.
 * `message` becomes `msg`; `action`, `ref`, `user`, `job` and `scope` map to the event's fields; the level and
 * every other field go into `data`. A failed append is emitted as an `error` event: audit failures are loud.
 *
 * @example
 * ```ts
 * const logger = winston.createLogger({ transports: [new AuditTransport({ log })] });
 * logger.info('task sent', { action: 'task_sent', job: 'j1', ref: serverEventId });
 * ```
 */
export class AuditTransport extends TransportStream {
  readonly #log: AuditTransportOptions['log'];
  readonly #action: string;

  constructor(options: AuditTransportOptions) {
    super(options.level === undefined ? {} : { level: options.level });
    this.#log = options.log;
    this.#action = options.action ?? 'log';
  }

  /** Called by winston for each entry at or above this transport's level. */
  override log(info: Record<string, unknown>, next: () => void): void {
    const data: Record<string, JsonValue> = { level: String(info['level'] ?? '') };
    for (const [k, v] of Object.entries(info)) {
      if (RESERVED.has(k)) continue;
      const j = json(v, 0);
      if (j !== undefined) data[k] = j;
    }
    const extra = json(info['data'], 0);
    if (extra !== undefined && typeof extra === 'object' && extra !== null && !Array.isArray(extra)) Object.assign(data, extra);
    const event: AuditEventInput = {
      action: str(info['action']) ?? this.#action,
      data,
      ...(str(info['message']) === undefined ? {} : { msg: str(info['message'])! }),
      ...(str(info['ref']) === undefined ? {} : { ref: str(info['ref'])! }),
      ...(str(info['user']) === undefined ? {} : { user: str(info['user'])! }),
      ...(str(info['job']) === undefined ? {} : { job: str(info['job'])! }),
      ...(str(info['scope']) === undefined ? {} : { scope: str(info['scope'])! }),
    };
    try {
      this.#log.append(event);
      setImmediate(() => this.emit('logged', info));
    } catch (e) {
      setImmediate(() => this.emit('error', e));
    }
    next();
  }
}
