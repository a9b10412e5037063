import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseProject, provision } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import type { Row, Suite } from '../harness.js';
import { beforeKits } from './runtime.js';

// Issue #14.5: what one site kit can do to a server, before and after. The same attack runs against the server
// of two source trees: this one, and the one named by FLARE_BENCH_BEFORE (a worktree of main at eff1d78,
// built: `git worktree add /work/wt/net-old eff1d78 && cd /work/wt/net-old && npm ci && npm run build`).
// Server and attacker are processes of the tree under test, so each speaks its own protocol version.
//   (1) logins: 400 logins of one kit, 16 at a time, each closed once logged in; server CPU per login, logins/s.
//   (2) stalled uploads: 4 sessions of one kit each announce a 2 GiB update, stream 256 MiB, then stall
//       (answering pings); the server's RSS over 90 s, and whether the sessions are cut.

const PROJECT = testProjectYaml({ name: 'bench-attack', server: 'server1', hostNames: ['localhost', '127.0.0.1'] });

// The server: default limits, except (1) lets one kit hold many sessions and logins in progress (a new tree
// would replace them: this measures the login's cost, not the limit). Prints JSON lines on `mem`.
const SERVER = `
import { createServerAuth } from '@flare/auth';
import { loadKit } from '@flare/pki';
import { listen, serverOptionsFromKit, TRANSPORT_DEFAULTS } from '@flare/transport';
import { createInterface } from 'node:readline';
const [kitDir, mode] = process.argv.slice(1);
const kit = await loadKit(kitDir);
const many = mode === 'logins';
const auth = createServerAuth({ kit, ...(many ? { maxSessionsPerParticipant: 100000 } : {}) });
const limits = many && 'maxPendingLoginsPerIdentity' in TRANSPORT_DEFAULTS ? { maxPendingLoginsPerIdentity: 64 } : {};
const server = await listen({ ...serverOptionsFromKit(kit), host: '127.0.0.1', port: 0, limits, authenticate: (c) => auth.accept(c) });
let cut = 0;
// Sessions the server cut because they stalled (a replaced session or a lost connection is not counted).
server.on('connection', (c) => void c.closed.then((i) => { if (i.error && (i.error.code === 'E_TRANSPORT_STALLED' || i.error.code === 'E_TRANSPORT_IDLE')) cut++; }));
const mem = () => { const c = process.cpuUsage(); return { rss: process.memoryUsage().rss, cpu: c.user + c.system, conns: server.connectionCount, cut }; };
console.log(JSON.stringify({ port: server.port, ...mem() }));
createInterface({ input: process.stdin }).on('line', (l) => l === 'mem' ? console.log(JSON.stringify(mem())) : process.exit(0));
`;

// The attacker: the tree's own auth over a bare WebSocket (the ws package), so it can write any frame after
// login. Logs in `sessions` times with the site kit, then on every session still open announces a 2 GiB
// message and streams 256 MiB (or argv 6's MiB) of 1 MiB chunks, prints 'streamed', and stalls (with argv 5
// `trickle`: goes on sending 1 KiB a second, a slowloris; used by the stall suite).
export const ATTACKER = `
import { createHash } from 'node:crypto';
import { createClientAuth } from '@flare/auth';
import { encodeFrame, decodeFrame } from '@flare/core';
import { loadKit } from '@flare/pki';
import WebSocket from 'ws';
import { z } from 'zod';
const [kitDir, port, mode] = process.argv.slice(1);
const kit = await loadKit(kitDir);
const key = kit.privateKey.export({ type: 'pkcs8', format: 'pem' });
const anyHeader = z.object({ t: z.string() }).passthrough();
function channel() {
  const ws = new WebSocket('wss://127.0.0.1:' + port + '/flare', { ca: kit.rootCaPem, cert: kit.certPem, key, checkServerIdentity: () => undefined, perMessageDeflate: false });
  let guard; const queue = []; const waiters = []; let closeInfo;
  const closed = new Promise((r) => ws.once('close', (code, reason) => { closeInfo = { code, reason: String(reason) }; r({}); for (const w of waiters.splice(0)) w.reject(new Error('closed')); }));
  ws.on('error', () => {});
  // Whole messages only (the login's); a goodbye or anything else is not for this attacker.
  ws.on('message', (data) => {
    try {
      const { header, payload } = decodeFrame(new Uint8Array(data), anyHeader, { maxBytes: 1 << 20 });
      if (header.t !== 'm') return;
      const m = { header: header.h, payload, trailer: header.a };
      if (guard) { if (!guard.open(m.header, payload.length, createHash('sha256').update(payload).digest(), m.trailer)) return; delete m.trailer; }
      const w = waiters.shift(); if (w) w.resolve(m); else queue.push(m);
    } catch { ws.terminate(); }
  });
  const digest = (n, p) => { if (guard.payloadDigest) { const d = guard.payloadDigest(n, true); d.update(p); return d.digest(); } return createHash('sha256').update(p).digest(); };
  return {
    ws, get closeInfo() { return closeInfo; },
    open: new Promise((r, j) => { ws.once('open', r); ws.once('close', () => j(new Error('refused'))); }),
    tls: undefined, closed,
    send: async (h, p = new Uint8Array(0)) => { const a = guard ? guard.seal(h, p.length, digest(p.length, p)) : undefined; ws.send(encodeFrame(a ? { t: 'm', h, n: p.length, a } : { t: 'm', h, n: p.length }, p)); },
    receive: () => queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve, reject) => waiters.push({ resolve, reject })),
    setGuard: (g) => { guard = g; },
    close: async () => ws.close(),
    identified: () => {},
  };
}
const login = createClientAuth({ kit, renewAt: false, channelBinding: 'off' });
if (mode === 'logins') {
  const [total, parallel] = [Number(process.argv[4]), Number(process.argv[5])];
  let started = 0, ok = 0, failed = 0;
  const c0 = process.cpuUsage(); const t0 = performance.now();
  const worker = async () => { while (started < total) { started++; const ch = channel(); try { await ch.open; await login.login(ch); ok++; } catch { failed++; } ch.ws.terminate(); } };
  await Promise.all(Array.from({ length: parallel }, worker));
  const c = process.cpuUsage(c0);
  console.log(JSON.stringify({ ok, failed, seconds: (performance.now() - t0) / 1000, clientCpu: c.user + c.system }));
  process.exit(0);
}
const sessions = [];
for (let i = 0; i < Number(process.argv[4]); i++) { const ch = channel(); try { await ch.open; await login.login(ch); sessions.push(ch); } catch { } }
// Let replaced sessions close before streaming.
await new Promise((r) => setTimeout(r, 500));
const live = sessions.filter((s) => s.closeInfo === undefined);
const chunk = encodeFrame({ t: 'c' }, new Uint8Array(1 << 20).fill(7));
await Promise.all(live.map(async (s) => {
  s.ws.send(encodeFrame({ t: 'm', h: { type: 'update' }, n: 2 ** 31 }));
  for (let i = 0; i < Number(process.argv[6] ?? 256) && s.closeInfo === undefined; i++) {
    await new Promise((r) => s.ws.send(chunk, r));
    while (s.ws.bufferedAmount > 8 << 20) await new Promise((r) => setTimeout(r, 5));
  }
}));
console.log(JSON.stringify({ loggedIn: sessions.length, streaming: live.length }));
if (process.argv[5] === 'trickle') {
  const bit = encodeFrame({ t: 'c' }, new Uint8Array(1024).fill(7));
  setInterval(() => { for (const s of live) if (s.closeInfo === undefined) s.ws.send(bit); }, 1000);
}
// Stall: keep the sockets open (ws answers the server's pings); report when the server cuts each.
for (const s of sessions) void s.closed.then(() => console.log(JSON.stringify({ closed: s.closeInfo })));
`;

interface Proc {
  readonly child: ChildProcess;
  next(): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** Runs a script of this suite (or the stall suite) with `node -e` in `tree`'s tools/bench, reading JSON lines from it. */
export function run(tree: string, script: string, args: readonly string[], stdin = false): Proc {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], { cwd: join(tree, 'tools', 'bench'), stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const queue: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  lines.on('line', (l) => (waiters.length > 0 ? waiters.shift()!(l) : queue.push(l)));
  return {
    child,
    next: async () => JSON.parse(queue.length > 0 ? queue.shift()! : await new Promise<string>((r) => waiters.push(r))) as Record<string, unknown>,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill();
      await once(child, 'exit');
    },
  };
}

interface Figures {
  readonly serverCpuMsPerLogin: number;
  readonly loginsPerSec: number;
  readonly failedLogins: number;
  readonly rssBaseMiB: number;
  readonly rssPeakMiB: number;
  readonly rssEndMiB: number;
  readonly streaming: number;
  readonly cutWithin90s: number;
}

async function measure(tree: string, kits: { server: string; site: string }): Promise<Figures> {
  // (1) logins
  const s1 = run(tree, SERVER, [kits.server, 'logins'], true);
  const start1 = await s1.next();
  const attacker1 = run(tree, ATTACKER, [kits.site, String(start1['port']), 'logins', '400', '16']);
  const result1 = await attacker1.next();
  s1.child.stdin!.write('mem\n');
  const after1 = await s1.next();
  await Promise.all([attacker1.stop(), s1.stop()]);
  const ok = Number(result1['ok']);
  // (2) stalled uploads
  const s2 = run(tree, SERVER, [kits.server, 'attack'], true);
  const start2 = await s2.next();
  const MiB = 2 ** 20;
  const attacker2 = run(tree, ATTACKER, [kits.site, String(start2['port']), 'attack', '4']);
  let peak = Number(start2['rss']);
  let last = start2;
  const sample = async (): Promise<void> => {
    s2.child.stdin!.write('mem\n');
    last = await s2.next();
    peak = Math.max(peak, Number(last['rss']));
  };
  const streamed = attacker2.next();
  const sampler = setInterval(() => void sample(), 250);
  const report = await streamed;
  const t0 = performance.now();
  while (performance.now() - t0 < 90_000) {
    await new Promise((r) => setTimeout(r, 1000));
    if (Number(last['cut']) >= Number(report['streaming']) && Number(last['conns']) === 0) break;
  }
  clearInterval(sampler);
  await sample();
  await Promise.all([attacker2.stop(), s2.stop()]);
  return {
    serverCpuMsPerLogin: (Number(after1['cpu']) - Number(start1['cpu'])) / ok / 1000,
    loginsPerSec: ok / Number(result1['seconds']),
    failedLogins: Number(result1['failed']),
    rssBaseMiB: Number(start2['rss']) / MiB,
    rssPeakMiB: peak / MiB,
    rssEndMiB: Number(last['rss']) / MiB,
    streaming: Number(report['streaming']),
    cutWithin90s: Number(last['cut']),
  };
}

export const suite: Suite = {
  name: 'transport-attack',
  description:
    'one site kit against a server (#14.5), this tree vs FLARE_BENCH_BEFORE (main at eff1d78): server CPU per login; server RSS while 4 sessions announce 2 GiB, stream 256 MiB and stall',
  async run(): Promise<Row[]> {
    const here = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
    const before = process.env['FLARE_BENCH_BEFORE'];
    if (before !== undefined && !existsSync(join(before, 'packages', 'transport', 'dist', 'index.js'))) throw new Error(`FLARE_BENCH_BEFORE=${before} has no built packages`);
    const workspace = await mkdtemp(join(tmpdir(), 'flare-bench-attack-'));
    try {
      const r = await provision(parseProject(PROJECT), { workspace });
      const dir = (n: string): string => r.kits.find((k) => k.name === n)!.dir;
      const kits = { server: dir('server1'), site: dir('site-1') };
      const now = await measure(here, kits);
      // The older tree reads only kits of its own manifest format: provisioned by its own @flare/pki.
      const oldKits = before === undefined ? undefined : await beforeKits(before, PROJECT, workspace);
      const old = before === undefined || oldKits === undefined ? undefined : await measure(before, { server: oldKits.get('server1')!, site: oldKits.get('site-1')! });
      const vs = (label: string, pick: (f: Figures) => number): { baseline?: { label: string; value: number } } =>
        old === undefined ? {} : { baseline: { label: `${label} before (eff1d78)`, value: pick(old) } };
      return [
        { label: '(1) server CPU per login, one kit, 16 logins at a time (TLS handshake, upgrade, login)', value: now.serverCpuMsPerLogin, unit: 'ms', higherIsBetter: false, ...vs('same', (f) => f.serverCpuMsPerLogin) },
        { label: '(1) logins/s (server and attacker on the same 2 cores)', value: now.loginsPerSec, unit: 'logins/s', higherIsBetter: true, ...vs('same', (f) => f.loginsPerSec) },
        { label: '(2) server RSS before the attack', value: now.rssBaseMiB, unit: 'MiB', ...vs('same', (f) => f.rssBaseMiB) },
        { label: '(2) server RSS at its peak during the attack (4 sessions x 2 GiB announced, 256 MiB streamed, stalled)', value: now.rssPeakMiB, unit: 'MiB', higherIsBetter: false, ...vs('same', (f) => f.rssPeakMiB) },
        { label: '(2) server RSS at the end (cut, or after 90 s)', value: now.rssEndMiB, unit: 'MiB', higherIsBetter: false, ...vs('same', (f) => f.rssEndMiB) },
        { label: '(2) attacker sessions that could stream (of 4 logged in)', value: now.streaming, unit: 'sessions', higherIsBetter: false, ...vs('same', (f) => f.streaming) },
        { label: '(2) of those, cut by the server within 90 s of stalling', value: now.cutWithin90s, unit: 'sessions', higherIsBetter: true, ...vs('same', (f) => f.cutWithin90s) },
      ];
    } finally {
      await rm(workspace, { recursive: true, force: true });
    }
  },
};
