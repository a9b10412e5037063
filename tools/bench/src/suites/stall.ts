import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseProject, provision } from '@flare/pki';
import type { Row, Suite } from '../harness.js';
import { beforeKits } from './runtime.js';
import { ATTACKER, run as runScript } from './transport-attack.js';

// Issue #14.5, stalled uploads (slowloris): N peers, each logged in with its own site kit (one session per
// participant already stops one kit from holding many), announce a 2 GiB update, stream MIB_STREAMED of it, then
// trickle 1 KiB a second, answering the server's pings. The same attack runs against a server of this tree
// twice: with the defence on (the transport's defaults: a message in progress must bring 64 KiB/s over every
// 30 s window, `minBytesPerSecond` / `stallWindowMs`, and finish within `messageTimeoutMs`, 2 h) and off (the
// same documented limits set so they never fire: 1 byte/s over a 2^31-1 ms window, no deadline). Figures: how
// long each stalled peer holds its connection slot and its memory (from its stall to the server's cut; a peer
// not cut holds it for the whole observation window, reported as that window), and the server's RSS.
// With FLARE_BENCH_STALL_BEFORE=<root of a built worktree of f2914a2> (the commit before the stall defence,
// bb4e5c0: `git worktree add --detach /work/wt/stall-before f2914a2 && cd /work/wt/stall-before && npm ci &&
// npx nx run-many -t build -p transport auth pki core`) the same attack also runs against that build's server,
// with kits its own @flare/pki provisioned (a build reads only kits of its own format); server and attackers are
// processes of the tree under test, so each speaks its own protocol.
// Knobs: FLARE_BENCH_STALL_PEERS (default 4), FLARE_BENCH_STALL_MIB (MiB streamed before stalling, default 256),
// FLARE_BENCH_STALL_OBSERVE_S (seconds watched after the stall, default 90).

const PEERS = Number(process.env['FLARE_BENCH_STALL_PEERS'] ?? 4);
const MIB_STREAMED = Number(process.env['FLARE_BENCH_STALL_MIB'] ?? 256);
const OBSERVE_S = Number(process.env['FLARE_BENCH_STALL_OBSERVE_S'] ?? 90);
/** The commit before the stall defence landed (bb4e5c0), whose build FLARE_BENCH_STALL_BEFORE names. */
const BEFORE_COMMIT = 'f2914a2';

const project = (peers: number): string => `api_version: 3
name: bench-stall
participants:
  - name: server1
    type: server
    org: nvidia
    fed_learn_port: 8002
    host_names: [localhost, 127.0.0.1]
${Array.from({ length: peers }, (_, i) => `  - name: site-${i + 1}\n    type: client\n    org: nvidia\n`).join('')}`;

// The server: this tree's transport and auth with default limits, or (`off`) the stall defence's limits set
// so they never fire. Prints JSON lines on `mem` (and on `gc`, after a full collection): RSS, connections, and
// how many it cut as stalled.
const SERVER = `
import { createServerAuth } from '@flare/auth';
import { loadKit } from '@flare/pki';
import { listen, serverOptionsFromKit } from '@flare/transport';
import { createInterface } from 'node:readline';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
const [kitDir, mode] = process.argv.slice(1);
const kit = await loadKit(kitDir);
const auth = createServerAuth({ kit });
const NEVER = 2 ** 31 - 1;
const limits = mode === 'off' ? { minBytesPerSecond: 1, stallWindowMs: NEVER, messageTimeoutMs: NEVER } : {};
const server = await listen({ ...serverOptionsFromKit(kit), host: '127.0.0.1', port: 0, limits, authenticate: (c) => auth.accept(c) });
let cut = 0;
server.on('connection', (c) => void c.closed.then((i) => { if (i.error?.code === 'E_TRANSPORT_STALLED') cut++; }));
const mem = () => { const m = process.memoryUsage(); return { rss: m.rss, buffers: m.arrayBuffers, conns: server.connectionCount, cut }; };
console.log(JSON.stringify({ port: server.port, ...mem() }));
createInterface({ input: process.stdin }).on('line', (l) => {
  if (l === 'gc') { gc(); gc(); }
  if (l === 'mem' || l === 'gc') console.log(JSON.stringify(mem()));
  else process.exit(0);
});
`;

interface Figures {
  readonly streaming: number;
  readonly cut: number;
  /** Seconds each stalled peer held its slot (the observation window for one never cut). */
  readonly held: readonly number[];
  readonly rssBaseMiB: number;
  readonly rssPeakMiB: number;
  readonly rssEndMiB: number;
  /** The same after a full garbage collection in the server. */
  readonly rssCollectedMiB: number;
  /** ArrayBuffer memory the server still holds then (messages in progress it has not let go of). */
  readonly buffersCollectedMiB: number;
}

const MiB = 2 ** 20;

async function measure(tree: string, kits: { server: string; sites: readonly string[] }, mode: 'on' | 'off'): Promise<Figures> {
  // 'on' is the tree's default limits: for the build before the defence, that build's defaults (no stall limits).
  const server = runScript(tree, SERVER, [kits.server, mode], true);
  const attackers: Array<ReturnType<typeof runScript>> = [];
  try {
    const start = await server.next();
    let peak = Number(start['rss']);
    let last = start;
    const sample = async (): Promise<void> => {
      server.child.stdin!.write('mem\n');
      last = await server.next();
      peak = Math.max(peak, Number(last['rss']));
    };
    const sampler = setInterval(() => void sample(), 250);
    // Each peer: its own kit, one session, 2 GiB announced, MIB_STREAMED MiB streamed, then a trickle.
    for (const site of kits.sites) attackers.push(runScript(tree, ATTACKER, [site, String(start['port']), 'attack', '1', 'trickle', String(MIB_STREAMED)]));
    const stalledAt: number[] = [];
    const held: number[] = [];
    let streaming = 0;
    await Promise.all(
      attackers.map(async (a) => {
        const report = await a.next();
        if (Number(report['streaming']) < 1) return;
        streaming += 1;
        const t0 = performance.now();
        stalledAt.push(t0);
        // The next line is this peer's close (the server cut it), if it comes within the window.
        const closed = await Promise.race([a.next().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), OBSERVE_S * 1000).unref())]);
        held.push(closed ? (performance.now() - t0) / 1000 : OBSERVE_S);
      }),
    );
    // Memory a cut peer held is freed by the server's next collections: look a little later.
    await new Promise((r) => setTimeout(r, 5000));
    clearInterval(sampler);
    await sample();
    const end = last;
    // What the server still holds once garbage is collected: the memory of a cut peer's message is free.
    server.child.stdin!.write('gc\n');
    const collected = await server.next();
    return { streaming, cut: Number(end['cut']), held, rssBaseMiB: Number(start['rss']) / MiB, rssPeakMiB: peak / MiB, rssEndMiB: Number(end['rss']) / MiB, rssCollectedMiB: Number(collected['rss']) / MiB, buffersCollectedMiB: Number(collected['buffers']) / MiB };
  } finally {
    await Promise.all([...attackers.map((a) => a.stop()), server.stop()]);
  }
}

const median = (xs: readonly number[]): number => (xs.length === 0 ? 0 : [...xs].sort((a, b) => a - b)[xs.length >> 1]!);

export const suite: Suite = {
  name: 'stall',
  description: `stalled uploads (#14.5): ${PEERS} peers, each its own site kit, announce 2 GiB, stream ${MIB_STREAMED} MiB, then trickle 1 KiB/s; the server of this tree with the stall defence on (defaults: 64 KiB/s over 30 s windows) vs off (minBytesPerSecond 1, stallWindowMs and messageTimeoutMs 2^31-1); watched ${OBSERVE_S} s after the stall; and, with FLARE_BENCH_STALL_BEFORE, a real build of ${BEFORE_COMMIT} (the commit before the defence) under the same attack`,
  async run(): Promise<Row[]> {
    const here = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
    const before = process.env['FLARE_BENCH_STALL_BEFORE'];
    if (before !== undefined && !existsSync(join(before, 'packages', 'transport', 'dist', 'index.js'))) throw new Error(`FLARE_BENCH_STALL_BEFORE=${before} has no built packages (build transport, auth, pki and core there)`);
    const workspace = await mkdtemp(join(tmpdir(), 'flare-bench-stall-'));
    try {
      const r = await provision(parseProject(project(PEERS)), { workspace });
      const dir = (n: string): string => r.kits.find((k) => k.name === n)!.dir;
      const kits = { server: dir('server1'), sites: Array.from({ length: PEERS }, (_, i) => dir(`site-${i + 1}`)) };
      let old: Figures | undefined;
      if (before !== undefined) {
        const b = await beforeKits(before, project(PEERS), workspace);
        old = await measure(before, { server: b.get('server1')!, sites: Array.from({ length: PEERS }, (_, i) => b.get(`site-${i + 1}`)!) }, 'on');
      }
      const off = await measure(here, kits, 'off');
      const on = await measure(here, kits, 'on');
      const vsOff = (label: string, value: number) => ({ baseline: { label: `${label}, defence off`, value } });
      const stillHeld = (f: Figures): number => f.held.filter((h) => h >= OBSERVE_S).length;
      const vsBefore = (value: number) => ({ baseline: { label: `the build of ${BEFORE_COMMIT}`, value } });
      const beforeRows: Row[] =
        old === undefined
          ? [{ label: `before build: not measured (set FLARE_BENCH_STALL_BEFORE to a built worktree of ${BEFORE_COMMIT})`, value: 0, unit: '' }]
          : [
              { label: `build of ${BEFORE_COMMIT} (before the defence): stalled peers (of ${old.streaming} that streamed) cut within ${OBSERVE_S} s`, value: old.cut, unit: 'peers' },
              { label: `build of ${BEFORE_COMMIT}: peers still holding their slot and memory when the watch ended (${OBSERVE_S} s after the stall)`, value: stillHeld(old), unit: 'peers' },
              { label: `build of ${BEFORE_COMMIT}: median time a stalled peer held its slot (the watch, when never cut)`, value: median(old.held), unit: 's' },
              { label: 'server RSS before the attack, this tree (defence on) vs the older build', value: on.rssBaseMiB, unit: 'MiB', ...vsBefore(old.rssBaseMiB) },
              { label: 'server RSS at its peak during the attack, this tree vs the older build', value: on.rssPeakMiB, unit: 'MiB', higherIsBetter: false, ...vsBefore(old.rssPeakMiB) },
              { label: 'server RSS at the end, this tree vs the older build', value: on.rssEndMiB, unit: 'MiB', higherIsBetter: false, ...vsBefore(old.rssEndMiB) },
              { label: 'server RSS at the end after a full garbage collection, this tree vs the older build', value: on.rssCollectedMiB, unit: 'MiB', higherIsBetter: false, ...vsBefore(old.rssCollectedMiB) },
              { label: `build of ${BEFORE_COMMIT}: server ArrayBuffer memory then (what it still holds of the stalled messages)`, value: old.buffersCollectedMiB, unit: 'MiB' },
            ];
      return [
        ...beforeRows,
        { label: `defence on: stalled peers (of ${on.streaming} that streamed) cut by the server within ${OBSERVE_S} s (E_TRANSPORT_STALLED)`, value: on.cut, unit: 'peers' },
        { label: `defence off: stalled peers (of ${off.streaming} that streamed) cut within ${OBSERVE_S} s`, value: off.cut, unit: 'peers' },
        { label: 'defence on: median time from a peer\'s stall to its cut (its slot and memory held)', value: median(on.held), unit: 's' },
        { label: 'defence on: longest time from a peer\'s stall to its cut', value: Math.max(0, ...on.held), unit: 's' },
        { label: `defence off: peers still holding their slot and memory when the watch ended (${OBSERVE_S} s after the stall)`, value: stillHeld(off), unit: 'peers' },
        { label: 'server RSS before the attack', value: on.rssBaseMiB, unit: 'MiB', ...vsOff('same', off.rssBaseMiB) },
        { label: 'server RSS at its peak during the attack', value: on.rssPeakMiB, unit: 'MiB', higherIsBetter: false, ...vsOff('same', off.rssPeakMiB) },
        { label: `server RSS at the end (5 s after every peer was cut, or after the ${OBSERVE_S} s watch)`, value: on.rssEndMiB, unit: 'MiB', higherIsBetter: false, ...vsOff('same', off.rssEndMiB) },
        { label: 'server RSS at the end, after a full garbage collection in the server', value: on.rssCollectedMiB, unit: 'MiB', higherIsBetter: false, ...vsOff('same', off.rssCollectedMiB) },
        { label: 'defence on: server ArrayBuffer memory then (what it still holds of the stalled messages)', value: on.buffersCollectedMiB, unit: 'MiB' },
        { label: 'defence off: the same (the declared 2 GiB of each stalled message, committed as written)', value: off.buffersCollectedMiB, unit: 'MiB' },
      ];
    } finally {
      await rm(workspace, { recursive: true, force: true });
    }
  },
};
