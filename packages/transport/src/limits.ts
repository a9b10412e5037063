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
  /**
   * A message in progress must bring at least this many bytes per second over every `stallWindowMs`
   * (default 64 KiB/s), or the connection closes with E_TRANSPORT_STALLED: a peer that announces a large
   * message, streams part of it and stalls cannot hold its memory (pings alone keep a connection alive).
   */
  readonly minBytesPerSecond?: number;
  /** The window over which the minimum rate is measured (default 30 s). */
  readonly stallWindowMs?: number;
  /** Longest time one message may take from its first to its last byte (default 2 h; E_TRANSPORT_STALLED). */
  readonly messageTimeoutMs?: number;
}

/**
 * Server-only limits. Before a peer has proven who it is, the server holds it in small pools: sockets in the
 * TLS handshake or the WebSocket upgrade, then upgraded connections that have not logged in. Each pool has a
 * total and a per-address cap (IPv4 address or IPv6 /64); when one is full, the oldest connection that has not
 * identified itself makes room for the newcomer (E_TRANSPORT_CONNECTION_LIMIT), so a flood that never logs in
 * cannot keep out a participant that logs in promptly. A login whose signature verified is no longer anonymous
 * and is never displaced by anonymous ones; at most `maxPendingLoginsPerIdentity` per participant.
 */
export interface ServerLimits extends TransportLimits {
  /** Most upgraded connections at once, logged in or not (default 4096). */
  readonly maxConnections?: number;
  /** Most upgraded connections still logging in at once (default 256). */
  readonly maxPendingLogins?: number;
  /**
   * Most of them from one address (default 32). Behind a TLS-terminating proxy every peer has the proxy's
   * address: raise it there, and let the proxy limit per client.
   */
  readonly maxPendingLoginsPerAddress?: number;
  /**
   * Logins in progress per participant once its signature verified (default 4, as many as an admin may hold
   * sessions; the newest wins).
   */
  readonly maxPendingLoginsPerIdentity?: number;
  /** Time from TCP accept to a completed WebSocket upgrade: TLS handshake and HTTP request (default 10 s). */
  readonly handshakeTimeoutMs?: number;
  /** Most sockets in the TLS handshake or the upgrade at once (default 512). */
  readonly maxHandshakes?: number;
  /** Most of them from one address (default 64). */
  readonly maxHandshakesPerAddress?: number;
  /**
   * Memory for messages in progress across all connections (default 8 GiB): each streamed message reserves
   * its declared length when it starts; one that does not fit waits, its connection's reading paused, until
   * another completes. With one session per participant (@flare/auth) a peer holds at most one message of
   * `maxMessageBytes`: that is its memory budget.
   */
  readonly receiveBudgetBytes?: number;
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
  minBytesPerSecond: 64 * 1024,
  stallWindowMs: 30_000,
  messageTimeoutMs: 2 * 3600 * 1000,
  maxConnections: 4096,
  maxPendingLogins: 256,
  maxPendingLoginsPerAddress: 32,
  maxPendingLoginsPerIdentity: 4,
  handshakeTimeoutMs: 10_000,
  maxHandshakes: 512,
  maxHandshakesPerAddress: 64,
  receiveBudgetBytes: 8 * 1024 ** 3,
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
