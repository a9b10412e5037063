// The server's liveness of registered sites: judged by the time since each was last heard from, and never at a
// sweep that ran late (the process was blocked, the sites' heartbeats still unread). Times come from a fake
// clock: nothing here depends on how fast the machine is.
import { describe, expect, it } from 'vitest';
import { SiteRegistry } from '../src/server/registry.js';
import { channelPair } from '../src/testing/channels.js';

const SERVER = { name: 'server', org: 'o', type: 'server' } as const;

function registryAt(clock: { t: number }): SiteRegistry {
  return new SiteRegistry({ timeoutMs: 120_000, sweepIntervalMs: 1_000, now: () => clock.t });
}

function site(registry: SiteRegistry, name: string): ReturnType<typeof channelPair>[1] {
  const [, atServer] = channelPair({ name, org: 'o', type: 'client' }, SERVER);
  registry.register(name, 'o', atServer, {});
  return atServer;
}

describe('SiteRegistry.sweep', () => {
  it('drops a site silent longer than the timeout at an on-time sweep, and keeps one heard from since', () => {
    const clock = { t: 0 };
    const registry = registryAt(clock);
    site(registry, 'silent');
    const busy = site(registry, 'busy');
    for (clock.t = 1_000; clock.t <= 120_000; clock.t += 1_000) {
      registry.seen('busy', busy);
      expect(registry.sweep()).toEqual([]);
    }
    clock.t += 1_000;
    expect(registry.sweep()).toEqual(['silent']);
    expect(registry.names()).toEqual(['busy']);
  });

  it('drops no one at a sweep after a block longer than the timeout (their heartbeats are unread), then judges at the next sweep', () => {
    const clock = { t: 0 };
    const registry = registryAt(clock);
    const a = site(registry, 'a');
    site(registry, 'gone');
    expect(registry.sweep()).toEqual([]);
    // The event loop is blocked for 130 s: the next sweep runs 130 s late, before the sockets are read.
    clock.t = 130_000;
    expect(registry.sweep()).toEqual([]);
    expect(registry.names()).toEqual(['a', 'gone']);
    // The sockets are read: a's heartbeats arrive, 'gone' sent nothing. The next on-time sweep drops only 'gone'.
    registry.seen('a', a);
    clock.t = 131_000;
    expect(registry.sweep()).toEqual(['gone']);
    expect(registry.names()).toEqual(['a']);
  });
});
