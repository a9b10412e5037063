/**
 * Every timer and limit of the runtime in one table, with what applies when a caller leaves a value out.
 * Times are milliseconds, sizes bytes. `Infinity` means "no limit" where the table says so.
 */
export interface RuntimeLimits {
  /**
   * How often a site tells the server it is alive (default 30 s, four per `heartbeatTimeoutMs`). Every heartbeat
   * is a sealed message the server verifies and parses: at 5,000 sites a 5 s heartbeat was 1,000 messages a
   * second, most of the server's messages during a round. A dead peer is found sooner by the transport's own
   * ping (every 10 s on a quiet connection, dropped after 60 s of silence).
   */
  readonly heartbeatMs?: number;
  /** A site silent this long is dropped by the server (default 120 s; FLARE: 600 s). A closed connection drops it at once: this bound is for a
   * connection that stays open while the site is silent (a process blocked building a large learner on a busy machine). */
  readonly heartbeatTimeoutMs?: number;
  /** How long a job waits for every site it names before it starts with those present (default 20 s). */
  readonly deployWaitMs?: number;
  /** How long a site may take to answer a deploy request (default 180 s: it builds the learner and loads its data). */
  readonly deployTimeoutMs?: number;
  /** How long a site waits for the server's welcome after it registered (default 30 s, plus attestation). */
  readonly welcomeTimeoutMs?: number;
  /** How long an admin command waits for the server's answer (default 60 s). */
  readonly adminTimeoutMs?: number;
  /** How often the server's scheduler looks at its queue and sweeps silent sites (default 1 s). */
  readonly schedulerIntervalMs?: number;
  /** Reconnect backoff of a site: first ceiling (default 500 ms), largest ceiling (default 30 s), full jitter. */
  readonly reconnectInitialMs?: number;
  readonly reconnectMaxMs?: number;
  /** A site that cannot reach the server this long gives up and exits non-zero (default Infinity: never). */
  readonly giveUpAfterMs?: number;
  /** Jobs the server runs at once; more wait in its queue (default 4, FLARE's DefaultJobScheduler max_jobs). */
  readonly maxRunningJobs?: number;
  /** Largest meta.json (default 1 MiB). */
  readonly maxMetaBytes?: number;
  /** Largest sum of a job's own files, custom/ (default 64 MiB). */
  readonly maxJobFilesBytes?: number;
  /** Most files in a job's custom/ folder (default 1,000). */
  readonly maxJobFiles?: number;
}

/** The values used for limits a caller leaves out. */
export const RUNTIME_DEFAULTS = {
  heartbeatMs: 30_000,
  heartbeatTimeoutMs: 120_000,
  deployWaitMs: 20_000,
  deployTimeoutMs: 180_000,
  welcomeTimeoutMs: 30_000,
  adminTimeoutMs: 60_000,
  schedulerIntervalMs: 1_000,
  reconnectInitialMs: 500,
  reconnectMaxMs: 30_000,
  giveUpAfterMs: Infinity,
  maxRunningJobs: 4,
  maxMetaBytes: 1024 * 1024,
  maxJobFilesBytes: 64 * 1024 * 1024,
  maxJobFiles: 1_000,
} as const satisfies Required<RuntimeLimits>;

/** Every limit resolved to a number. */
export type ResolvedRuntimeLimits = { -readonly [K in keyof Required<RuntimeLimits>]: number };

/** Limits that may be Infinity ("never"). */
const UNBOUNDED: ReadonlySet<string> = new Set(['giveUpAfterMs']);

/**
 * Fills the defaults and validates what the caller gave: each value a positive integer (or Infinity where the
 * table allows it), no unknown keys.
 *
 * @throws TypeError for an unknown key; RangeError for a value out of range.
 */
export function resolveRuntimeLimits(limits: RuntimeLimits = {}): ResolvedRuntimeLimits {
  const out = { ...RUNTIME_DEFAULTS } as ResolvedRuntimeLimits;
  for (const [key, value] of Object.entries(limits) as Array<[keyof ResolvedRuntimeLimits, number | undefined]>) {
    if (value === undefined) continue;
    if (!Object.hasOwn(RUNTIME_DEFAULTS, key)) throw new TypeError(`unknown runtime limit "${key}"`);
    const ok = (value === Infinity && UNBOUNDED.has(key)) || (Number.isSafeInteger(value) && value > 0);
    if (!ok) throw new RangeError(`"${key}" expected a positive integer${UNBOUNDED.has(key) ? ' or Infinity' : ''}, got ${value}`);
    out[key] = value;
  }
  if (out.reconnectInitialMs > out.reconnectMaxMs) throw new RangeError(`"reconnectInitialMs" (${out.reconnectInitialMs}) must not exceed "reconnectMaxMs" (${out.reconnectMaxMs})`);
  return out;
}
