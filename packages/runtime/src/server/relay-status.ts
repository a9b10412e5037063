import { FlareRuntimeError } from '@flare/core';
import type { SiteRegistry, SiteSighting } from './registry.js';
import type { RelayTree } from './relay-contributions.js';

/** A site behind an aggregating relay, as the server knows it from that relay's reports. */
export interface RelayedSiteSighting extends SiteSighting {
  /** The aggregating relay it is registered with (its update reaches the server inside the relay's). */
  readonly behind: string;
  /** True when that relay is not connected to the server now: the site's state is its last known one. */
  readonly relayLost: boolean;
}

/**
 * What the server knows of the sites behind its aggregating relays: each relay reports the sites registered
 * with it (`relay_sites`, at its registration and when they change); a site it did not report, or one not
 * provisioned below it, is never listed. When a relay is gone its sites are listed as behind a lost relay.
 */
export class RelayView {
  readonly #relays: ReadonlyMap<string, ReadonlySet<string>>;
  readonly #reported = new Map<string, { readonly sites: readonly string[]; readonly at: string }>();

  constructor(relays: RelayTree) {
    // Sets: a relay's report is checked name by name against the thousand sites provisioned below it.
    this.#relays = new Map([...relays].map(([relay, sites]) => [relay, new Set(sites)]));
  }

  /**
   * Takes a relay's report of its registered sites.
   *
   * @throws FlareRuntimeError E_RUNTIME_RELAY_WEIGHT when the sender is not an aggregating relay of this project
   *   or names a site not provisioned below it.
   */
  report(relay: string, sites: readonly string[]): void {
    const below = this.#relays.get(relay);
    if (below === undefined) throw new FlareRuntimeError('E_RUNTIME_RELAY_WEIGHT', `'${relay}' reported sites behind it but is not an aggregating relay of this project`);
    const stranger = sites.find((s) => !below.has(s));
    if (stranger !== undefined) throw new FlareRuntimeError('E_RUNTIME_RELAY_WEIGHT', `aggregating relay '${relay}' reported site '${stranger.slice(0, 80)}', which is not provisioned below it`);
    this.#reported.set(relay, { sites: [...new Set(sites)].sort(), at: new Date().toISOString() });
  }

  /** The sites behind each aggregating relay that reported, with whether their relay is connected now. */
  sightings(registry: SiteRegistry): RelayedSiteSighting[] {
    const out: RelayedSiteSighting[] = [];
    for (const [relay, r] of [...this.#reported].sort(([a], [b]) => a.localeCompare(b))) {
      const present = registry.get(relay) !== undefined;
      for (const name of r.sites) out.push({ name, org: '', connected: present, lastSeen: r.at, via: [relay], behind: relay, relayLost: !present });
    }
    return out;
  }
}
