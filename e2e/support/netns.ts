// Linux network namespaces for e2e tests: each participant gets its own namespace with its own address on one
// bridge (veth pairs), and its own hosts file (/etc/netns/<ns>/hosts, which `ip netns exec` mounts over
// /etc/hosts), so every connection crosses a real interface and kit host names resolve as on separate hosts.
// Needs root and iproute2; `netnsUnavailable()` says why not, and `requireNetns` skips the test with that reason.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type { TestContext } from 'vitest';

const SUBNET = '10.213.0';

function ip(args: readonly string[]): { ok: boolean; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 30_000 });
  return { ok: r.status === 0, err: (r.stderr ?? '') + (r.error?.message ?? '') };
}

function must(args: readonly string[]): void {
  const r = ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(' ')} failed: ${r.err.trim()}`);
}

/** Why namespaces cannot be made here (not root, no iproute2, no permission), or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root: run the e2e suite as root (CI does)';
  if (spawnSync('ip', ['-V'], { timeout: 30_000 }).status !== 0) return 'iproute2 (`ip`) is not installed: apt-get install -y iproute2';
  const probe = `flprobe${process.pid}`;
  const r = ip(['netns', 'add', probe]);
  if (!r.ok) return `cannot create a network namespace (${r.err.trim()}): containers without CAP_SYS_ADMIN cannot`;
  ip(['netns', 'del', probe]);
  return undefined;
}

/** Skips the running test, with the reason, where namespaces cannot be made. */
export function requireNetns(ctx: TestContext): void {
  const why = netnsUnavailable();
  if (why !== undefined) ctx.skip(why);
}

/** One participant's namespace. */
interface NetnsNode {
  readonly name: string;
  readonly ns: string;
  readonly address: string;
  /** The command prefix that runs a program inside this namespace. */
  readonly exec: readonly string[];
}

/** A set of namespaces on one bridge. Always `destroy()` it (also registered for process exit). */
export interface NetnsLab {
  node(name: string): NetnsNode;
  /** Takes the node's link down at the bridge (a partition: its packets go nowhere) or brings it back. */
  link(name: string, state: 'up' | 'down'): void;
  destroy(): void;
}

/**
 * Creates a namespace per node on a bridge (in a namespace of its own), addresses 10.213.0.<i+1>/24, and a
 * hosts file in each that maps every node's host names to its address.
 */
export function createNetnsLab(nodes: ReadonlyArray<{ readonly name: string; readonly hostnames: readonly string[] }>): NetnsLab {
  const tag = `fl${randomBytes(2).toString('hex')}`;
  const bridgeNs = `${tag}-br`;
  const made: string[] = [];
  const byName = new Map<string, NetnsNode & { readonly port: string }>();
  const destroy = (): void => {
    for (const ns of made.splice(0).reverse()) {
      ip(['netns', 'del', ns]);
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
  };
  process.once('exit', destroy);
  try {
    must(['netns', 'add', bridgeNs]);
    made.push(bridgeNs);
    must(['-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge']);
    must(['-n', bridgeNs, 'link', 'set', 'br0', 'up']);
    const hosts = ['127.0.0.1 localhost', ...nodes.map((n, i) => `${SUBNET}.${i + 1} ${n.hostnames.join(' ')}`)].join('\n') + '\n';
    nodes.forEach((n, i) => {
      const ns = `${tag}-${i}`;
      must(['netns', 'add', ns]);
      made.push(ns);
      mkdirSync(`/etc/netns/${ns}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns}/hosts`, hosts);
      const inner = `${tag}i${i}`;
      const outer = `${tag}o${i}`;
      must(['link', 'add', inner, 'type', 'veth', 'peer', 'name', outer]);
      must(['link', 'set', inner, 'netns', ns]);
      must(['link', 'set', outer, 'netns', bridgeNs]);
      must(['-n', ns, 'link', 'set', inner, 'name', 'eth0']);
      must(['-n', ns, 'addr', 'add', `${SUBNET}.${i + 1}/24`, 'dev', 'eth0']);
      must(['-n', ns, 'link', 'set', 'eth0', 'up']);
      must(['-n', ns, 'link', 'set', 'lo', 'up']);
      must(['-n', bridgeNs, 'link', 'set', outer, 'master', 'br0']);
      must(['-n', bridgeNs, 'link', 'set', outer, 'up']);
      byName.set(n.name, { name: n.name, ns, address: `${SUBNET}.${i + 1}`, exec: ['ip', 'netns', 'exec', ns], port: outer });
    });
  } catch (e) {
    destroy();
    throw e;
  }
  const get = (name: string): NetnsNode & { readonly port: string } => {
    const n = byName.get(name);
    if (n === undefined) throw new Error(`no namespace node '${name}'`);
    return n;
  };
  return {
    node: get,
    link: (name, state) => must(['-n', bridgeNs, 'link', 'set', get(name).port, state]),
    destroy: () => {
      process.off('exit', destroy);
      destroy();
    },
  };
}
