import { checkRanLate } from '@flare/transport';
import type { PeerChannel } from '../protocol/channel.js';

/** A connected site as the server knows it. */
export interface RegisteredSite {
  readonly name: string;
  readonly org: string;
  readonly channel: PeerChannel;
  /** What the site reported it can give jobs (resources.json: num_of_gpus, mem_per_gpu_in_GiB, max_jobs, ...). */
  readonly resources: Readonly<Record<string, number>>;
  /** Milliseconds since the epoch when this connection registered. */
  readonly since: number;
  /** The relays it came through (its channel's authenticated peer), nearest the server first. */
  readonly via?: readonly string[];
  /** Milliseconds since the epoch of the last message from the site. */
  lastSeen: number;
}

/** A site the server has seen, connected now or not (for `flare admin sites` and job status). */
export interface SiteSighting {
  readonly name: string;
  readonly org: string;
  readonly connected: boolean;
  /** ISO time of the last message. */
  readonly lastSeen: string;
  /** ISO time the current connection registered (connected sites only). */
  readonly since?: string;
  /** The relays its (last) connection came through, nearest the server first. */
  readonly via?: readonly string[];
}

/**
 * The server's connected sites, with liveness: every message refreshes `lastSeen`; `sweep` drops sites
 * silent longer than the timeout (FLARE: heartbeat every 10 s, dropped after 600 s; we default shorter for
 * a one-machine federation). A site that reconnects replaces its old entry (and the old channel is closed),
 * so one name is never served by two connections. Sites that left are remembered (name, org, last seen).
 */
export class SiteRegistry {
  readonly #sites = new Map<string, RegisteredSite>();
  readonly #left = new Map<string, { org: string; lastSeen: number; via?: readonly string[] | undefined }>();
  readonly #timeoutMs: number;
  readonly #sweepIntervalMs: number;
  readonly #now: () => number;
  #lastSweep: number;

  /**
   * @param options.timeoutMs how long a site may stay silent
   * @param options.sweepIntervalMs how often the owner calls {@link SiteRegistry.sweep} (default 1 s, the
   *   scheduler's tick): a sweep later than twice that judges no one (see `sweep`)
   */
  constructor(options: { readonly timeoutMs: number; readonly sweepIntervalMs?: number; readonly now?: () => number }) {
    this.#timeoutMs = options.timeoutMs;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? 1_000;
    this.#now = options.now ?? Date.now;
    this.#lastSweep = this.#now();
  }

  /** Registers (or replaces) a site; returns the entry it replaced, already closed. */
  register(name: string, org: string, channel: PeerChannel, resources: Readonly<Record<string, number>>): RegisteredSite | undefined {
    const old = this.#sites.get(name);
    if (old !== undefined && old.channel !== channel) old.channel.close();
    const now = this.#now();
    const via = channel.peer.via;
    this.#sites.set(name, { name, org, channel, resources, since: now, lastSeen: now, ...(via === undefined ? {} : { via }) });
    this.#left.delete(name);
    return old;
  }

  /** Refreshes a site's liveness. */
  seen(name: string, channel: PeerChannel): void {
    const c = this.#sites.get(name);
    if (c !== undefined && c.channel === channel) c.lastSeen = this.#now();
  }

  /** Removes a site if `channel` is still its channel (a stale close does not remove a reconnected site). */
  remove(name: string, channel: PeerChannel): boolean {
    const c = this.#sites.get(name);
    if (c === undefined || c.channel !== channel) return false;
    this.#forget(c);
    return true;
  }

  #forget(c: RegisteredSite): void {
    this.#sites.delete(c.name);
    this.#left.set(c.name, { org: c.org, lastSeen: c.lastSeen, via: c.via });
  }

  get(name: string): RegisteredSite | undefined {
    return this.#sites.get(name);
  }

  /** Names of connected sites, sorted. */
  names(): string[] {
    return [...this.#sites.keys()].sort();
  }

  /** Every site seen since the server started, connected first, by name. */
  sightings(): SiteSighting[] {
    const iso = (t: number): string => new Date(t).toISOString();
    const via = (v: readonly string[] | undefined): { via?: readonly string[] } => (v === undefined ? {} : { via: v });
    const on = [...this.#sites.values()].map((c) => ({ name: c.name, org: c.org, connected: true, lastSeen: iso(c.lastSeen), since: iso(c.since), ...via(c.via) }));
    const off = [...this.#left].map(([name, l]) => ({ name, org: l.org, connected: false, lastSeen: iso(l.lastSeen), ...via(l.via) }));
    return [...on.sort((a, b) => a.name.localeCompare(b.name)), ...off.sort((a, b) => a.name.localeCompare(b.name))];
  }

  /**
   * Drops and closes sites silent longer than the timeout; returns their names. A sweep that runs late (the
   * process's event loop was blocked: `checkRanLate` of @flare/transport) drops no one, since the heartbeats
   * the sites sent meanwhile are still unread; the next sweep, after they were read, judges.
   */
  sweep(): string[] {
    const dead: string[] = [];
    const now = this.#now();
    const late = checkRanLate(now, this.#lastSweep, this.#sweepIntervalMs);
    this.#lastSweep = now;
    if (late) return dead;
    for (const c of [...this.#sites.values()]) {
      if (now - c.lastSeen > this.#timeoutMs) {
        dead.push(c.name);
        this.#forget(c);
        c.channel.close();
      }
    }
    return dead;
  }
}
