/**
 * Limits and timers of an endpoint. Every field is optional; {@link TRANSPORT_DEFAULTS} says what applies
 * when it is left out. Times are milliseconds, sizes bytes.
 */
export interface TransportLimits {
  /** Payload bytes per streamed chunk (default 1 MiB, as FLARE streams). */
  readonly chunkBytes?: number;
  /** Largest message this endpoint accepts or sends (default 4 GiB - 1, Node's largest Buffer). */
  readonly maxMessageBytes?: number;
  /** Chunks written but not yet flushed to the socket before send() waits for it to drain (default 4). */
  readonly maxChunksInFlight?: number;
  /** Bytes an unauthenticated peer may send in total before it is cut off (default 64 KiB). */
  readonly preLoginMaxBytes?: number;
  /** How long a new connection has to complete its login (default 10 s). */
  readonly loginTimeoutMs?: number;
  /** Interval of WebSocket pings (default 10 s, FLARE's client heartbeat). */
  readonly heartbeatMs?: number;
  /** A peer silent for this long (no data, no pong) is dropped (default 60 s). */
  readonly idleTimeoutMs?: number;
}

/** Server-only limits. */
export interface ServerLimits extends TransportLimits {
  /** Most connections at once, logged in or not (default 4096). */
  readonly maxConnections?: number;
  /** Most connections still logging in at once (default 256): a login flood cannot take every slot. */
  readonly maxPendingLogins?: number;
}

/** The values used for limits a caller leaves out. */
export const TRANSPORT_DEFAULTS = {
  chunkBytes: 1024 * 1024,
  maxMessageBytes: 2 ** 32 - 1,
  maxChunksInFlight: 4,
  preLoginMaxBytes: 64 * 1024,
  loginTimeoutMs: 10_000,
  heartbeatMs: 10_000,
  idleTimeoutMs: 60_000,
  maxConnections: 4096,
  maxPendingLogins: 256,
} as const satisfies Required<ServerLimits>;

export type ResolvedLimits = { -readonly [K in keyof Required<ServerLimits>]: number };

export function resolveLimits(limits: ServerLimits = {}): ResolvedLimits {
  const out = { ...TRANSPORT_DEFAULTS } as ResolvedLimits;
  for (const [key, value] of Object.entries(limits) as Array<[keyof ResolvedLimits, number | undefined]>) {
    if (value === undefined) continue;
    if (!(key in TRANSPORT_DEFAULTS)) throw new TypeError(`unknown transport limit "${key}"`);
    if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`"${key}" expected a positive integer, got ${value}`);
    out[key] = value;
  }
  if (out.chunkBytes > 64 * 1024 * 1024) throw new RangeError(`"chunkBytes" must be at most 64 MiB (the frame codec's payload limit), got ${out.chunkBytes}`);
  if (out.maxMessageBytes > 2 ** 32 - 1) throw new RangeError(`"maxMessageBytes" must be below 4 GiB (Node's largest Buffer), got ${out.maxMessageBytes}`);
  return out;
}
