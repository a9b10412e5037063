/** Per-site limits a relay enforces on what the sites behind it send upstream. */
export interface RelayLimits {
  /** Sites connected through this relay at once (default 1024); one more is refused at login. */
  readonly maxSites?: number;
  /** Messages per second one site may send upstream, averaged over `burstSeconds` (default 200). */
  readonly maxMessagesPerSecond?: number;
  /** Bytes per second one site may send upstream, averaged over `burstSeconds` (default: unlimited). */
  readonly maxBytesPerSecond?: number;
  /** The window the rates are averaged over: a site may send `rate x burstSeconds` at once (default 10). */
  readonly burstSeconds?: number;
}

/** The relay limits when not configured. */
export const RELAY_DEFAULTS = { maxSites: 1024, maxMessagesPerSecond: 200, maxBytesPerSecond: Infinity, burstSeconds: 10 } as const;

/** Resolved, validated relay limits. */
export type ResolvedRelayLimits = { readonly [K in keyof RelayLimits]-?: number };

/** Validates relay limits and fills in the defaults. @throws RangeError for a non-positive limit. */
export function resolveRelayLimits(limits: RelayLimits = {}): ResolvedRelayLimits {
  const r = { ...RELAY_DEFAULTS, ...limits };
  for (const [k, v] of Object.entries(r)) {
    if (!(typeof v === 'number' && v > 0)) throw new RangeError(`"${k}" expected a positive number, got ${String(v)}`);
  }
  if (!Number.isSafeInteger(r.maxSites)) throw new RangeError(`"maxSites" expected an integer, got ${r.maxSites}`);
  return r;
}

/** A token bucket: `rate` per second, at most `rate x burst` saved up. */
export class TokenBucket {
  #tokens: number;
  #at: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.#tokens = rate * burst;
    this.#at = now();
  }

  /** Takes `n` tokens; false (and takes none) when there are not enough. */
  take(n: number): boolean {
    if (this.rate === Infinity) return true;
    const t = this.now();
    this.#tokens = Math.min(this.rate * this.burst, this.#tokens + ((t - this.#at) / 1000) * this.rate);
    this.#at = t;
    if (n > this.#tokens) return false;
    this.#tokens -= n;
    return true;
  }
}
