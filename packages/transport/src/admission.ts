import { isIPv6 } from 'node:net';
import { TransportError, type FlareError } from '@flare/core';

/**
 * The key per-address limits count by: an IPv4 address (also when written IPv4-mapped, `::ffff:a.b.c.d`), or
 * the /64 prefix of an IPv6 address (one subscriber usually holds a whole /64: RFC 6177).
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head, tail] = address.toLowerCase().split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

interface Entry<T> {
  readonly item: T;
  readonly address: string;
  identity?: string;
}

/**
 * One pool of things that have not proven who they are yet, with a total and a per-address cap. When a cap is
 * reached the oldest *anonymous* entry makes room (in that address, or anywhere for the total): a flood of
 * connections that never log in cannot hold the slots a prompt login needs, and one address cannot displace
 * anyone else's connections while its own are within its cap. Entries that proved an identity are never
 * displaced by anonymous ones; they are capped per identity instead (the newest wins).
 */
export class Pool<T> {
  readonly #entries = new Map<T, Entry<T>>();
  readonly #byAddress = new Map<string, Set<T>>();
  readonly #byIdentity = new Map<string, T[]>();

  /**
   * @param what what the pool holds, for messages ("connections logging in")
   * @param refuse closes an entry that must make room, with the error to tell its peer
   */
  constructor(
    private readonly what: string,
    private readonly total: number,
    private readonly perAddress: number,
    private readonly perIdentity: number,
    private readonly refuse: (item: T, error: FlareError) => void,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Makes room for one more entry from `address`, displacing the oldest anonymous entries beyond the caps;
   * false when the pool (or this address's share) is full of entries that proved who they are.
   */
  makeRoom(address: string): boolean {
    const key = addressKey(address);
    const mine = this.#byAddress.get(key);
    if (mine !== undefined && mine.size >= this.perAddress && !this.#displaceOldest(mine, `more than ${this.perAddress} ${this.what} from ${key}`)) return false;
    if (this.#entries.size >= this.total && !this.displaceOldest(`more than ${this.total} ${this.what} in all`)) return false;
    return true;
  }

  /** Displaces the oldest anonymous entry anywhere (the endpoint is full); false when there is none. */
  displaceOldest(why: string): boolean {
    return this.#displaceOldest(this.#entries.keys(), why);
  }

  /** Adds `item` (after {@link Pool.makeRoom}). */
  add(item: T, address: string): void {
    const key = addressKey(address);
    this.#entries.set(item, { item, address: key });
    let set = this.#byAddress.get(key);
    if (set === undefined) this.#byAddress.set(key, (set = new Set()));
    set.add(item);
  }

  /** `item` proved it is `identity`: no longer displaceable; the oldest of that identity beyond its cap goes. */
  identify(item: T, identity: string): void {
    const entry = this.#entries.get(item);
    if (entry === undefined || entry.identity !== undefined) return;
    entry.identity = identity;
    const list = this.#byIdentity.get(identity) ?? [];
    list.push(item);
    this.#byIdentity.set(identity, list);
    while (list.length > this.perIdentity) {
      const oldest = list[0]!;
      this.#displace(oldest, `a newer login of '${identity}' is in progress (${this.perIdentity} at most)`);
    }
  }

  /** Forgets `item` (it completed, failed or closed). */
  remove(item: T): void {
    const entry = this.#entries.get(item);
    if (entry === undefined) return;
    this.#entries.delete(item);
    const set = this.#byAddress.get(entry.address);
    set?.delete(item);
    if (set?.size === 0) this.#byAddress.delete(entry.address);
    if (entry.identity !== undefined) {
      const list = this.#byIdentity.get(entry.identity)!;
      list.splice(list.indexOf(item), 1);
      if (list.length === 0) this.#byIdentity.delete(entry.identity);
    }
  }

  #displaceOldest(items: Iterable<T>, why: string): boolean {
    // Insertion order is age order (Map and Set iterate in insertion order).
    for (const item of items) {
      if (this.#entries.get(item)?.identity === undefined) {
        this.#displace(item, why);
        return true;
      }
    }
    return false;
  }

  #displace(item: T, why: string): void {
    this.remove(item);
    this.refuse(item, new TransportError('E_TRANSPORT_CONNECTION_LIMIT', `displaced: ${why}`));
  }
}
