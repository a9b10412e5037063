import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as tcpServer, connect as tcpConnect, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { AuditLog } from '@flare/audit';
import { messageMac, payloadDigest } from '@flare/auth';
import { encodeModel, model, tensor } from '@flare/core';
import { loadKit, parseProject, provision } from '@flare/pki';
import { profileFlags, type Row, type Suite } from '../harness.js';
import { clearConnect, type ParticipantConfig } from '../participants/runtime.js';

// Round latency and the server's peak memory of scatter-and-gather with 10 and 100 sites, every site in its own
// process (not the bench process), for the runtime of this build ("after") against an older build ("before": a
// worktree of eff1d78 built beside this one, FLARE_BENCH_RUNTIME_BEFORE=<its root>), secure (mTLS + @flare/auth
// sessions + hash-chained audit logs everywhere) and, for this build, clear (no TLS, no auth, no audit), in one
// run. The learner computes nothing: the figures are the federation's overhead. Plain FedAvg on both sides (the
// after runtime's default adds an adaptive norm bound; the job names fedavg to compare like with like).

const PARAMS = 250_000;
/** Rounds of the bench job (round 0 warms up; FLARE_BENCH_RUNTIME_ROUNDS, default 4: more rounds, steadier medians). */
const ROUNDS = Math.max(3, Math.min(50, Number(process.env['FLARE_BENCH_RUNTIME_ROUNDS'] ?? 4)));
const SPAWN_BATCH = 10;
const AFTER_ROOT = resolve(fileURLToPath(import.meta.url), '../../../../..');
const PARTICIPANT = fileURLToPath(new URL('../participants/runtime.js', import.meta.url));

/* eslint-disable @typescript-eslint/no-explicit-any -- two versions of an API, loaded by path */
type Any = any;

interface Proc {
  readonly child: ChildProcess;
  readonly lines: Interface;
  next(timeoutMs?: number): Promise<Record<string, number | string>>;
}

function participant(config: ParticipantConfig): Proc {
  const child = spawn(process.execPath, [...profileFlags(`${config.secure ? 'secure' : 'clear'}-${config.role}`), '-e', `import(${JSON.stringify(pathToFileURL(PARTICIPANT).href)}).then((m) => m.main(${JSON.stringify(config)}))`], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const queue: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  lines.on('line', (l) => {
    const w = waiters.shift();
    if (w !== undefined) w(l);
    else queue.push(l);
  });
  return {
    child,
    lines,
    next: (timeoutMs = 600_000) =>
      new Promise((done, fail) => {
        const l = queue.shift();
        if (l !== undefined) return done(JSON.parse(l) as Record<string, number>);
        const t = setTimeout(() => fail(new Error(`${config.role} ${config.name ?? ''} did not answer within ${timeoutMs} ms`)), timeoutMs);
        const exit = (code: number | null): void => fail(new Error(`${config.role} ${config.name ?? ''} exited (${code})`));
        child.once('exit', exit);
        waiters.push((line) => {
          clearTimeout(t);
          child.off('exit', exit);
          done(JSON.parse(line) as Record<string, number>);
        });
      }),
  };
}

/** Stops each process; its last line: peak RSS (maxRssKiB) and its CPU marks (roundEnd or firstTrain). */
async function stopAll(procs: readonly Proc[]): Promise<Array<Record<string, unknown>>> {
  return Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode !== null) return {};
      const last = p.next(60_000).catch(() => ({ maxRssKiB: 0 }));
      p.child.stdin!.end('\n');
      const r = await last;
      await new Promise((d) => (p.child.exitCode !== null ? d(undefined) : p.child.once('exit', d)));
      return r as Record<string, unknown>;
    }),
  );
}

interface Run {
  readonly roundMs: number[];
  readonly serverRssMiB: number;
  readonly siteRssMiB: number;
  /** CPU time of one round in steady state (median over the measured rounds): the server's and all sites' together, ms (this runtime only). */
  readonly serverRoundCpuMs?: number;
  readonly siteRoundCpuMs?: number;
  /** The same, the least over the measured rounds (each site's least, summed). */
  readonly serverRoundCpuMinMs?: number;
  readonly siteRoundCpuMinMs?: number;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** Median of the differences between consecutive marks from `from` on (round 0 warms up). */
const perRound = (marks: unknown, from = 1, of: (xs: readonly number[]) => number = median): number | undefined => {
  if (!Array.isArray(marks) || marks.length < from + 2) return undefined;
  const m = marks as number[];
  return of(m.slice(from + 1).map((v, i) => v - m[from + i]!));
};
/**
 * The least CPU a round took: on a shared 2-core machine other processes inflate a process's CPU time too
 * (preemption, caches), the more so the more often it yields (TLS reads arrive 16 KiB at a time, a TCP
 * read up to 64 KiB), so the minimum over the rounds is the steadiest estimate of the work itself.
 */
const least = (xs: readonly number[]): number => Math.min(...xs);

async function runOnce(o: { readonly root: string; readonly api: 'before' | 'after'; readonly secure: boolean; readonly sites: number; readonly kits: ReadonlyMap<string, string>; readonly dir: string }): Promise<Run> {
  const ws = await mkdtemp(join(o.dir, `${o.api}-${o.secure ? 'secure' : 'clear'}-${o.sites}-`));
  const base = { root: o.root, api: o.api, secure: o.secure, workspace: ws };
  const server = participant({ ...base, role: 'server', ...(o.secure ? { kit: o.kits.get('server')! } : {}) });
  const procs: Proc[] = [];
  try {
    const { port } = (await server.next()) as { port: number };
    const names = Array.from({ length: o.sites }, (_, i) => `site-${i + 1}`);
    for (let i = 0; i < names.length; i += SPAWN_BATCH) {
      const batch = names.slice(i, i + SPAWN_BATCH).map((name) => participant({ ...base, workspace: join(ws, name), role: 'site', name, port, params: PARAMS, ...(o.secure ? { kit: o.kits.get(name)! } : {}), ...(o.api === 'after' ? { trustKit: o.kits.get(name)! } : {}) }));
      procs.push(...batch);
      await Promise.all(batch.map((p) => p.next()));
    }
    const runtime: Any = await import(pathToFileURL(join(o.root, 'node_modules/@flare/runtime/dist/index.js')).href);
    const transport: Any = await import(pathToFileURL(join(o.root, 'node_modules/@flare/transport/dist/index.js')).href);
    const pki: Any = await import(pathToFileURL(join(o.root, 'node_modules/@flare/pki/dist/index.js')).href);
    const adminMe = { name: 'admin@bench.org', org: 'bench', role: 'project_admin', type: 'admin' };
    const channel = o.secure ? await runtime.connectToServer({ kit: await pki.loadKit(o.kits.get('admin@bench.org')!), targets: [{ host: '127.0.0.1', port }] }) : await clearConnect({ transport, runtime }, port, adminMe);
    // Sites of this runtime obey only signed jobs: the admin signs with its kit, secure run or clear.
    const signer = o.api === 'after' ? { signer: await pki.loadKit(o.kits.get('admin@bench.org')!) } : {};
    const admin = new runtime.AdminClient(channel, { timeoutMs: 600_000, ...signer });
    const definition = { name: 'bench', rounds: ROUNDS, min_clients: o.sites, round_timeout_s: 600, deploy: names, learner: { name: 'pass', args: {} }, ...(o.api === 'after' ? { aggregator: { name: 'fedavg' } } : {}) };
    const initial = encodeModel(model({ w: tensor(new Float32Array(PARAMS), [PARAMS]) }));
    const id: string =
      o.api === 'before'
        ? await admin.submit({ definition, initialModel: initial, files: new Map() })
        : await admin.submit({ meta: new TextEncoder().encode(JSON.stringify(definition)), model: initial, files: new Map() });
    const end = Date.now() + 1_800_000;
    let rec: Any = await admin.status(id);
    while (rec.status === 'SUBMITTED' || rec.status === 'RUNNING') {
      if (Date.now() > end) throw new Error('bench job did not finish in 30 minutes');
      await new Promise((r) => setTimeout(r, 250));
      rec = await admin.status(id);
    }
    admin.close();
    if (rec.status !== 'FINISHED') throw new Error(`bench job ended ${String(rec.status)}: ${String(rec.error?.message ?? '')}`);
    // Round 0 warms up (connections, JIT): rounds 1.. are measured.
    const roundMs = (rec.history as Array<{ seconds: number }>).slice(1).map((h) => h.seconds * 1000);
    const sites = await stopAll(procs.splice(0));
    const [last] = await stopAll([server]);
    const serverRoundCpuMs = perRound(last?.['roundEnd']);
    const siteCpu = sites.map((s) => perRound(s['firstTrain']));
    const serverRoundCpuMinMs = perRound(last?.['roundEnd'], 1, least);
    const siteCpuMin = sites.map((s) => perRound(s['firstTrain'], 1, least));
    return {
      roundMs,
      serverRssMiB: Number(last?.['maxRssKiB'] ?? 0) / 1024,
      siteRssMiB: median(sites.map((s) => Number(s['maxRssKiB'] ?? 0))) / 1024,
      ...(serverRoundCpuMs === undefined ? {} : { serverRoundCpuMs }),
      ...(siteCpu.some((c) => c === undefined) ? {} : { siteRoundCpuMs: siteCpu.reduce((a, c) => a! + c!, 0)! }),
      ...(serverRoundCpuMinMs === undefined ? {} : { serverRoundCpuMinMs }),
      ...(siteCpuMin.some((c) => c === undefined) ? {} : { siteRoundCpuMinMs: siteCpuMin.reduce((a, c) => a! + c!, 0)! }),
    };
  } finally {
    await stopAll([...procs, server]).catch(() => undefined);
    await rm(ws, { recursive: true, force: true });
  }
}

/**
 * Secure against clear at `n` sites, in pairs run alternately (clear, then secure; `FLARE_BENCH_RUNTIME_PAIRS`,
 * default 3, the first secure run being `first`), so that load from other processes on a shared machine falls
 * on both alike: the median of the per-pair latency ratios, and the CPU time of a round (server and sites),
 * which does not follow the load at all.
 */
async function secureVsClear(n: number, first: Run, kits: ReadonlyMap<string, string>, dir: string): Promise<Row[]> {
  const pairs = Math.max(1, Math.min(20, Number(process.env['FLARE_BENCH_RUNTIME_PAIRS'] ?? 3)));
  const secure: Run[] = [first];
  const clear: Run[] = [];
  for (let i = 0; i < pairs; i++) {
    clear.push(await runOnce({ root: AFTER_ROOT, api: 'after', secure: false, sites: n, kits, dir }));
    if (i > 0) secure.push(await runOnce({ root: AFTER_ROOT, api: 'after', secure: true, sites: n, kits, dir }));
  }
  const lat = (rs: readonly Run[]) => median(rs.map((r) => median(r.roundMs)));
  const cpu = (rs: readonly Run[]) => median(rs.map((r) => (r.serverRoundCpuMs ?? NaN) + (r.siteRoundCpuMs ?? NaN)));
  const srv = (rs: readonly Run[]) => median(rs.map((r) => r.serverRoundCpuMs ?? NaN));
  const pairRatio = median(secure.map((s, i) => median(s.roundMs) / median(clear[i]!.roundMs)));
  const load = loadavg()[0]!.toFixed(1);
  const costs = await secureCosts(kits, dir);
  const mib = (PARAMS * 4) / 2 ** 20;
  const expected = expectedExtra(costs, n, mib);
  const siteCpu = (rs: readonly Run[]) => median(rs.map((r) => r.siteRoundCpuMs ?? NaN));
  const srvMin = (rs: readonly Run[]) => median(rs.map((r) => r.serverRoundCpuMinMs ?? NaN));
  const siteMin = (rs: readonly Run[]) => median(rs.map((r) => r.siteRoundCpuMinMs ?? NaN));
  const breakdown: Row[] = [
    { label: `secure path, per MiB: moved over mTLS (TLS 1.3, AES-256-GCM), both ends, CPU, load ${loadavg()[0]!.toFixed(1)}`, value: costs.tlsMiB, unit: 'ms', baseline: { label: 'over TCP', value: costs.tcpMiB }, higherIsBetter: false },
    { label: '  keyed payload digest (@flare/auth, Poly1305), per MiB, one end', value: costs.digestMiB, unit: 'ms' },
    { label: '  message MAC of a task header, sealed and opened (2 HMAC-SHA256 over canonical JSON)', value: costs.macUs, unit: 'µs' },
    { label: '  one audit line appended (canonical JSON, hash chain, write to the OS)', value: costs.auditUs, unit: 'µs' },
    { label: `least CPU of a round (over the measured rounds), server, secure`, value: srvMin(secure), unit: 'ms', baseline: { label: 'clear', value: srvMin(clear) }, higherIsBetter: false, aim: '<= 1.15x (ratio >= 0.87)' },
    { label: `least CPU of a round, ${n} sites together (each site's least), secure`, value: siteMin(secure), unit: 'ms', baseline: { label: 'clear', value: siteMin(clear) }, higherIsBetter: false, aim: '<= 1.15x (ratio >= 0.87)' },
    { label: `  expected extra CPU of a secure round from these, server (${n} x ${mib.toFixed(2)} MiB each way: TLS ends, digests, MACs, audit lines)`, value: expected.server, unit: 'ms' },
    { label: `  measured extra CPU of a secure round, server (secure - clear: medians; least)`, value: srv(secure) - srv(clear), unit: `ms; ${(srvMin(secure) - srvMin(clear)).toFixed(1)} ms` },
    { label: `  expected extra CPU of a secure round from these, ${n} sites together`, value: expected.sites, unit: 'ms' },
    { label: `  measured extra CPU of a secure round, ${n} sites together (medians; least)`, value: siteCpu(secure) - siteCpu(clear), unit: `ms; ${(siteMin(secure) - siteMin(clear)).toFixed(1)} ms` },
    { label: `  the aim's budget (0.15 x clear), server / sites`, value: 0.15 * srv(clear), unit: `ms / ${(0.15 * siteCpu(clear)).toFixed(1)} ms` },
  ];
  return [
    { label: `round latency, ${n} sites, secure (mtls + auth + audit), median of ${pairs} runs each, load ${load}`, value: lat(secure), unit: 'ms', baseline: { label: 'clear, no auth, no audit', value: lat(clear) }, higherIsBetter: false, aim: '<= 1.15x (ratio >= 0.87)' },
    { label: `  the same, median of the ${pairs} per-pair ratios (secure time / clear time)`, value: pairRatio, unit: 'x', aim: '<= 1.15' },
    { label: `CPU time of a round, server and ${n} sites together, secure`, value: cpu(secure), unit: 'ms', baseline: { label: 'clear', value: cpu(clear) }, higherIsBetter: false, aim: '<= 1.15x (ratio >= 0.87)' },
    { label: `CPU time of a round, server only, secure`, value: srv(secure), unit: 'ms', baseline: { label: 'clear', value: srv(clear) }, higherIsBetter: false },
    { label: `server peak RSS, ${n} sites, secure`, value: median(secure.map((r) => r.serverRssMiB)), unit: 'MiB', baseline: { label: 'clear', value: median(clear.map((r) => r.serverRssMiB)) }, higherIsBetter: false },
    ...breakdown,
  ];
}

const cpuNow = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

/** Median over `reps` of the CPU ms per unit of `work(units)` (this process). */
async function cpuPer(reps: number, units: number, work: (units: number) => unknown): Promise<number> {
  const xs: number[] = [];
  for (let r = 0; r < reps; r++) {
    const c0 = cpuNow();
    await work(units);
    xs.push((cpuNow() - c0) / units);
  }
  return median(xs);
}

/**
 * CPU ms, both ends in this process, to move `mib` MiB in 1 MiB writes (the runtime's model size) over loopback
 * from `a` to `b`, then close them.
 */
async function moveMiB(a: Socket, b: Socket, mib: number): Promise<void> {
  const block = new Uint8Array(2 ** 20).fill(7);
  const all = new Promise<void>((done) => {
    let got = 0;
    b.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= mib * 2 ** 20) done();
    });
  });
  for (let i = 0; i < mib; i++) if (!a.write(block)) await new Promise((d) => a.once('drain', d));
  await all;
}

/** A connected socket pair over loopback: TCP, or mTLS with the bench's server and site kits (TLS 1.3, Node's default suite, as the transport). */
async function socketPair(tls: { server: Any; site: Any } | undefined): Promise<{ a: Socket; b: Socket; close(): void }> {
  let accepted!: (s: Socket) => void;
  const got = new Promise<Socket>((r) => (accepted = r));
  const server =
    tls === undefined
      ? tcpServer((s) => accepted(s))
      : tlsServer({ cert: tls.server.certPem, key: tls.server.privateKeyPem, ca: tls.server.rootCaPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, (s) => accepted(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const a =
    tls === undefined
      ? tcpConnect(port, '127.0.0.1')
      : tlsConnect({ port, host: '127.0.0.1', cert: tls.site.certPem, key: tls.site.privateKeyPem, ca: tls.site.rootCaPem, minVersion: 'TLSv1.2', checkServerIdentity: () => undefined });
  await new Promise((r) => a.once(tls === undefined ? 'connect' : 'secureConnect', r));
  const b = await got;
  return {
    a,
    b,
    close: () => {
      a.destroy();
      b.destroy();
      server.close();
    },
  };
}

/** What the secure path costs per unit, measured in this process (the components of a secure round's extra CPU). */
interface SecureCosts {
  /** CPU ms per MiB moved over TCP / over mTLS, both ends together (each runtime participant pays one end). */
  readonly tcpMiB: number;
  readonly tlsMiB: number;
  /** The session's keyed payload digest (@flare/auth), ms per MiB, one end. */
  readonly digestMiB: number;
  /** Message MAC of a task header, sealed and opened (two HMAC-SHA256 over its canonical JSON), µs. */
  readonly macUs: number;
  /** One audit line appended (canonical JSON, hash chain, written to the OS, batched fdatasync), µs. */
  readonly auditUs: number;
}

async function secureCosts(kits: ReadonlyMap<string, string>, dir: string): Promise<SecureCosts> {
  const tls = { server: await loadKit(kits.get('server')!), site: await loadKit(kits.get('site-1')!) };
  const transfer = async (t: typeof tls | undefined): Promise<number> => {
    const p = await socketPair(t);
    try {
      await moveMiB(p.a, p.b, 16); // warm-up
      return await cpuPer(5, 32, (n) => moveMiB(p.a, p.b, n));
    } finally {
      p.close();
    }
  };
  // Alternately, so that load from other processes falls on both alike.
  const tcp: number[] = [];
  const tlsMiB: number[] = [];
  for (let i = 0; i < 3; i++) {
    tcp.push(await transfer(undefined));
    tlsMiB.push(await transfer(tls));
  }
  const block = randomBytes(2 ** 20);
  const key = randomBytes(32);
  const digestMiB = await cpuPer(7, 64, (n) => {
    for (let i = 0; i < n; i++) {
      const d = payloadDigest(key, block.length);
      d.update(block);
      d.digest();
    }
  });
  const header = { kind: 'train', job: '8f0c2b1e-5d3a-4c8e-9b7f-1a2b3c4d5e6f', round: 3, ref: 'e3b0c442-98fc-1c14-9afb-f4c8996fb924', task: 'train' };
  const mac = { sid: 'AAAAAAAAAAAAAAAAAAAAAA', seq: 1, ts: Date.now(), epoch: 0, header, payloadLength: block.length, payloadDigest: new Uint8Array(16) };
  const macUs = (await cpuPer(7, 2000, (n) => {
    for (let i = 0; i < n; i++) {
      messageMac(key, { ...mac, seq: i });
      messageMac(key, { ...mac, seq: i });
    }
  })) * 1000;
  const log = await AuditLog.open(join(dir, 'costs.audit.jsonl'), { site: 'server', signer: tls.server.privateKey });
  let auditUs: number;
  try {
    auditUs = (await cpuPer(7, 500, (n) => {
      for (let i = 0; i < n; i++) log.append({ action: 'task_sent', job: header.job, ref: header.ref, msg: `train round ${i} to site-1`, data: { round: i, site: 'site-1' } });
    })) * 1000;
  } finally {
    await log.close();
  }
  return { tcpMiB: median(tcp), tlsMiB: median(tlsMiB), digestMiB, macUs, auditUs };
}

/**
 * The secure round's extra CPU as the sum of its components, for `n` sites and a model of `mib` MiB: the
 * server sends n models and receives n updates, paying one TLS end for each and digesting each; the sites
 * together pay the other ends. Messages and audit lines: at least a task and a result per site, and on the
 * server a task_sent and a result_accepted line per site (sites: one line each), plus two per round.
 */
function expectedExtra(c: SecureCosts, n: number, mib: number): { server: number; sites: number } {
  const tls = n * mib * (c.tlsMiB - c.tcpMiB);
  const digest = 2 * n * mib * c.digestMiB;
  const macs = (2 * n * c.macUs) / 1000;
  return { server: tls + digest + macs + ((2 * n + 2) * c.auditUs) / 1000, sites: tls + digest + macs + (n * c.auditUs) / 1000 };
}

/**
 * Kits for the older build, provisioned by its own @flare/pki: the kit manifest (its signature and fields) has
 * changed since, and a build reads only kits of its own format. Also used by the stall suite.
 */
const beforeKitsOf = new Map<string, Map<string, string>>();
export async function beforeKits(root: string, yaml: string, dir: string): Promise<ReadonlyMap<string, string>> {
  let kits = beforeKitsOf.get(root);
  if (kits === undefined) {
    const pki = (await import(pathToFileURL(join(root, 'node_modules', '@flare', 'pki', 'dist', 'index.js')).href)) as Any;
    const prov = (await pki.provision(pki.parseProject(yaml), { workspace: join(dir, 'before-kits') })) as { kits: Array<{ name: string; dir: string }> };
    kits = new Map(prov.kits.map((k) => [k.name, k.dir] as const));
    beforeKitsOf.set(root, kits);
  }
  return kits;
}

export const suite: Suite = {
  name: 'runtime',
  description: `scatter-and-gather with 10 and 100 sites, each site its own process, ${PARAMS / 1000}K-parameter model (float32), ${ROUNDS - 1} measured rounds: round latency and server peak RSS, this runtime ("after") against an older build (FLARE_BENCH_RUNTIME_BEFORE=<root of a built worktree of eff1d78>), secure (mTLS + auth + audit) and clear, alternately in pairs (FLARE_BENCH_RUNTIME_PAIRS, default 3), with the CPU time of a round`,
  async run(): Promise<Row[]> {
    const before = process.env['FLARE_BENCH_RUNTIME_BEFORE'];
    const sizes = (process.env['FLARE_BENCH_RUNTIME_SITES'] ?? '10,100').split(',').map(Number);
    const dir = await mkdtemp(join(tmpdir(), 'flare-bench-rt-'));
    try {
      const most = Math.max(...sizes);
      const yaml = `api_version: 3\nname: bench\nparticipants:\n  - name: server\n    type: server\n    org: bench\n${Array.from({ length: most }, (_, i) => `  - name: site-${i + 1}\n    type: client\n    org: bench\n`).join('')}  - name: admin@bench.org\n    type: admin\n    org: bench\n    role: project_admin\n`;
      const prov = await provision(parseProject(yaml), { workspace: dir });
      const kits = new Map(prov.kits.map((k) => [k.name, k.dir] as const));
      const rows: Row[] = [];
      for (const n of sizes) {
        const after = await runOnce({ root: AFTER_ROOT, api: 'after', secure: true, sites: n, kits, dir });
        const old = before === undefined ? undefined : await runOnce({ root: before, api: 'before', secure: true, sites: n, kits: await beforeKits(before, yaml, dir), dir });
        const label = `${n} sites, secure`;
        rows.push(
          { label: `round latency, ${label}, this runtime`, value: median(after.roundMs), unit: 'ms', ...(old === undefined ? {} : { baseline: { label: 'before (eff1d78)', value: median(old.roundMs) } }), higherIsBetter: false },
          { label: `server peak RSS, ${label}, this runtime`, value: after.serverRssMiB, unit: 'MiB', ...(old === undefined ? {} : { baseline: { label: 'before (eff1d78)', value: old.serverRssMiB } }), higherIsBetter: false },
          { label: `site process peak RSS (median), ${label}, this runtime`, value: after.siteRssMiB, unit: 'MiB', ...(old === undefined ? {} : { baseline: { label: 'before (eff1d78)', value: old.siteRssMiB } }), higherIsBetter: false },
        );
        if (n === Math.min(...sizes)) rows.push(...(await secureVsClear(n, after, kits, dir)));
      }
      if (before === undefined) rows.push({ label: 'before figures: not measured (set FLARE_BENCH_RUNTIME_BEFORE to a built worktree of eff1d78)', value: 0, unit: '' });
      return rows;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
