import type { PeerChannel } from './channel.js';

/** A connected site as the server knows it. */
export interface RegisteredClient {
  readonly name: string;
  readonly org: string;
  readonly channel: PeerChannel;
  /** What the site reported it can give jobs (resources.json: num_of_gpus, mem_per_gpu_in_GiB, ...). */
  readonly resources: Readonly<Record<string, number>>;
  /** Milliseconds since the epoch of the last message from the site. */
  lastSeen: number;
}

/**
 * The server's connected sites, with liveness: every message refreshes `lastSeen`; `sweep` drops sites
 * silent longer than the timeout (FLARE: heartbeat every 10 s, dropped after 600 s; we default shorter for
 * a one-machine federation). A site that reconnects replaces its old entry (and the old channel is closed),
 * so one name is never served by two connections.
 */
export class ClientRegistry {
  readonly #clients = new Map<string, RegisteredClient>();
  readonly #timeoutMs: number;
  readonly #now: () => number;

  constructor(options: { readonly timeoutMs: number; readonly now?: () => number }) {
    this.#timeoutMs = options.timeoutMs;
    this.#now = options.now ?? Date.now;
  }

  /** Registers (or replaces) a site; returns the entry it replaced, already closed. */
  register(name: string, org: string, channel: PeerChannel, resources: Readonly<Record<string, number>>): RegisteredClient | undefined {
    const old = this.#clients.get(name);
    if (old !== undefined && old.channel !== channel) old.channel.close();
    this.#clients.set(name, { name, org, channel, resources, lastSeen: this.#now() });
    return old;
  }

  /** Refreshes a site's liveness. */
  seen(name: string, channel: PeerChannel): void {
    const c = this.#clients.get(name);
    if (c !== undefined && c.channel === channel) c.lastSeen = this.#now();
  }

  /** Removes a site if `channel` is still its channel (a stale close does not remove a reconnected site). */
  remove(name: string, channel: PeerChannel): boolean {
    const c = this.#clients.get(name);
    if (c === undefined || c.channel !== channel) return false;
    this.#clients.delete(name);
    return true;
  }

  get(name: string): RegisteredClient | undefined {
    return this.#clients.get(name);
  }

  /** Names of connected sites, sorted. */
  names(): string[] {
    return [...this.#clients.keys()].sort();
  }

  /** Drops and closes sites silent longer than the timeout; returns their names. */
  sweep(): string[] {
    const dead: string[] = [];
    const now = this.#now();
    for (const c of this.#clients.values()) {
      if (now - c.lastSeen > this.#timeoutMs) {
        dead.push(c.name);
        this.#clients.delete(c.name);
        c.channel.close();
      }
    }
    return dead;
  }
}
