import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { encodeModel, model, tensor } from '@flare/core';
import { loadKit, parseProject, provision } from '@flare/pki';
import { AdminClient, connectToServer } from '@flare/runtime';
import { profileFlags, type Row, type Suite } from '../harness.js';
import type { ScaleConfig } from '../participants/scale.js';

// A thousand sites on one server (issue #18 item 3). N sites are provisioned once into a temporary folder (each
// its own key and certificate), then for each size a fresh server process and a few worker processes that run
// the sites, many per process: each site loads its own kit, dials the server over mTLS, logs in with
// @flare/auth, registers and keeps a hash-chained audit log, as a real site does; the learner computes nothing
// and the model is small, so the figures are the federation's cost per site. Measured: provisioning rate,
// logins per second (from the first dial to the last site registered), the server's RSS per connected site
// (after a full GC, before and after the logins), and the latency of a scatter-and-gather round of FedAvg.
//
// Sizes: FLARE_BENCH_SCALE_SITES (default "100,1000"; 5000 takes long on a shared machine), workers:
// FLARE_BENCH_SCALE_WORKERS (default 4), model size FLARE_BENCH_SCALE_PARAMS (default 10,000 float32).
//
// Relay mode (FLARE_BENCH_SCALE_RELAYS=R, default 0: every site direct): R aggregating relays (project.yml
// `mode: aggregate`), each its own process, the sites spread over them in turn (site i below relay i mod R); the
// sites log in to their relay, each relay runs its sites' round and sends the server one update, so the server
// sees R contributors. Measured besides: each relay's RSS with its sites connected.
//
// Progress (each phase, with the load) goes to stderr as it happens: a size that takes many minutes shows where it is.

const PARAMS = Number(process.env['FLARE_BENCH_SCALE_PARAMS'] ?? 10_000);
const ROUNDS = 3;
const PARTICIPANT = fileURLToPath(new URL('../participants/scale.js', import.meta.url));
const ANSWER_MS = 1_800_000;
const RELAYS = Number(process.env['FLARE_BENCH_SCALE_RELAYS'] ?? 0);

const progress = (msg: string): void => void process.stderr.write(`scale bench ${new Date().toISOString().slice(11, 19)} (${load()}): ${msg}\n`);

type Answer = Record<string, number | string | number[]>;

interface Proc {
  readonly child: ChildProcess;
  next(timeoutMs?: number): Promise<Answer>;
  ask(command: string, timeoutMs?: number): Promise<Answer>;
  stop(): Promise<Answer>;
}

/**
 * One process of the bench, with its file-descriptor limit raised (every site holds a socket and a log). Its
 * config goes in a file beside its workspace: thousands of sites do not fit in one argument.
 */
function participant(config: ScaleConfig): Proc {
  const file = `${config.workspace}.config.json`;
  writeFileSync(file, JSON.stringify(config));
  const script = `import(${JSON.stringify(pathToFileURL(PARTICIPANT).href)}).then((m) => m.main(${JSON.stringify(file)}))`;
  // `ulimit -n` in a shell that then execs node: Node cannot raise its own limit.
  const flags = ['--expose-gc', ...profileFlags(config.role)];
  const child = spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', process.execPath, ...flags, '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const queue: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  lines.on('line', (l) => {
    const w = waiters.shift();
    if (w !== undefined) w(l);
    else queue.push(l);
  });
  const next = (timeoutMs = ANSWER_MS): Promise<Answer> =>
    new Promise((done, fail) => {
      const queued = queue.shift();
      if (queued !== undefined) return done(JSON.parse(queued) as Answer);
      if (child.exitCode !== null) return fail(new Error(`${config.role} exited (${child.exitCode})`));
      const t = setTimeout(() => fail(new Error(`${config.role} did not answer within ${timeoutMs} ms`)), timeoutMs);
      const exit = (code: number | null): void => {
        clearTimeout(t);
        fail(new Error(`${config.role} exited (${code})`));
      };
      child.once('exit', exit);
      waiters.push((line) => {
        clearTimeout(t);
        child.off('exit', exit);
        const a = JSON.parse(line) as Answer;
        if (typeof a['error'] === 'string') fail(new Error(`${config.role}: ${a['error']}`));
        else done(a);
      });
    });
  return {
    child,
    next,
    ask: (command, timeoutMs) => {
      child.stdin!.write(`${command}\n`);
      return next(timeoutMs);
    },
    stop: async () => {
      if (child.exitCode !== null) return {};
      const last = next(120_000).catch(() => ({}) as Answer);
      child.stdin!.end('stop\n');
      const answer = await last;
      const exited = new Promise((d) => (child.exitCode !== null ? d(undefined) : child.once('exit', d)));
      const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(t);
      return answer;
    },
  };
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function load(): string {
  return `load ${loadavg()[0]!.toFixed(1)}`;
}

interface Run {
  readonly loginsPerSecond: number;
  readonly loginLoad: string;
  readonly serverRssPerSiteKiB: number;
  readonly serverRssMiB: number;
  readonly workerRssPerSiteKiB: number;
  readonly roundMs: number;
  readonly roundLoad: string;
  /** CPU time per login: the server's, and the workers' (site side), ms. */
  readonly serverCpuPerLoginMs: number;
  readonly siteCpuPerLoginMs: number;
  /** The server's CPU time for the whole job (deploy and every round), ms. */
  readonly serverCpuJobMs: number;
  /** The workers' CPU time for the whole job (all sites), ms. */
  readonly siteCpuJobMs: number;
  /** CPU time of one round in steady state: the server's, and all sites' together, ms. */
  readonly serverCpuRoundMs: number;
  readonly siteCpuRoundMs: number;
  /** `flare admin status JOB` at the end: its latency and the size of its answer (every site's state). */
  readonly statusMs: number;
  readonly statusKiB: number;
  /** Relay mode: the relays' RSS with their sites connected (after GC), MiB: the largest, and all together. */
  readonly relayRssMaxMiB?: number;
  readonly relayRssTotalMiB?: number;
  /** Relay mode: the relays' CPU time per login of a site below them, ms. */
  readonly relayCpuPerLoginMs?: number;
  /** The longest event-loop block (ms) during the logins and during the job: the server's, the largest relay's, the largest worker's. */
  readonly loopLogin: LoopMax;
  readonly loopJob: LoopMax;
}

/** The longest event-loop delay of each kind of process in one phase, ms (relays: undefined in direct mode). */
interface LoopMax {
  readonly server: number;
  readonly relays?: number;
  readonly workers: number;
}

const loopMax = (answers: readonly Answer[]): number => Math.max(0, ...answers.map((a) => Number(a['loopMaxMs'] ?? 0)));
const loopOf = (server: Answer, relays: readonly Answer[], workers: readonly Answer[]): LoopMax => ({ server: loopMax([server]), ...(relays.length > 0 ? { relays: loopMax(relays) } : {}), workers: loopMax(workers) });
const describeLoop = (l: LoopMax): string => `server ${l.server} ms${l.relays === undefined ? '' : `, relays ${l.relays} ms`}, workers ${l.workers} ms`;

/** The relay a site is provisioned below in relay mode (site i below relay i mod R, 1-based). */
const relayOf = (site: number, relays: number): string => `relay-${((site - 1) % relays) + 1}`;

async function runSize(o: { readonly n: number; readonly workers: number; readonly relays: number; readonly kits: ReadonlyMap<string, string>; readonly dir: string }): Promise<Run> {
  const ws = await mkdtemp(join(o.dir, `run-${o.n}-`));
  // The server's direct contributors: every site, or the relays.
  const contributors = o.relays > 0 ? o.relays : o.n;
  const server = participant({ role: 'server', kit: o.kits.get('server')!, workspace: join(ws, 'server'), sites: contributors });
  const relays: Proc[] = [];
  const workers: Proc[] = [];
  let phase = 'start';
  try {
    const up = await server.next();
    const port = Number(up['port']);
    for (let r = 1; r <= o.relays; r++) {
      const name = `relay-${r}`;
      relays.push(participant({ role: 'relay', kit: o.kits.get(name)!, workspace: join(ws, name), serverPort: port, sites: Math.ceil(o.n / o.relays) }));
    }
    // Each relay answers once it is registered with the server.
    const relayPorts = (await Promise.all(relays.map((r) => r.next()))).map((a) => Number(a['port']));
    if (o.relays > 0) progress(`${o.relays} aggregating relays registered with the server`);
    const names = Array.from({ length: o.n }, (_, i) => `site-${i + 1}`);
    const per = Math.ceil(o.n / o.workers);
    for (let w = 0; w * per < o.n; w++) {
      const sites = names.slice(w * per, (w + 1) * per).map((name, i) => ({ name, kit: o.kits.get(name)!, port: o.relays > 0 ? relayPorts[(w * per + i) % o.relays]! : port }));
      workers.push(participant({ role: 'worker', workspace: join(ws, `worker-${w}`), sites, concurrency: 16, params: PARAMS, audit: true }));
    }
    const idle = await Promise.all(workers.map((w) => w.next()));
    const before = await server.ask('rss');
    const relaysBefore = await Promise.all(relays.map((r) => r.ask('rss')));
    progress(`${o.n} sites in ${workers.length} workers: logging in${o.relays > 0 ? ` through ${o.relays} relays` : ''}`);
    const t0 = performance.now();
    phase = 'logins';
    const logins = await Promise.all(workers.map((w) => w.ask('login')));
    const loginMs = performance.now() - t0;
    const loginLoad = load();
    progress(`${o.n} sites registered in ${(loginMs / 1000).toFixed(1)} s`);
    const after = await server.ask('rss');
    if (Number(after['connected']) !== contributors) throw new Error(`${String(after['connected'])} of ${contributors} ${o.relays > 0 ? 'relays' : 'sites'} registered with the server`);
    const relayRss = await Promise.all(relays.map((r) => r.ask('rss')));
    const behind = relayRss.reduce((s, a) => s + Number(a['connected']), 0);
    if (o.relays > 0 && behind !== o.n) throw new Error(`${behind} of ${o.n} sites registered with their relays`);
    const workerGrowth = logins.reduce((s, a, i) => s + Number(a['rssKiB']) - Number(idle[i]!['rssKiB']), 0);
    const workerCpu = logins.reduce((s, a, i) => s + Number(a['cpuMs']) - Number(idle[i]!['cpuMs']), 0);

    // The admin's connection is not what is measured: when it drops (a server busy with a thousand logins
    // answers late), the bench dials again, a bounded number of times.
    const adminKit = await loadKit(o.kits.get('admin@bench.org')!);
    const dialAdmin = async (): Promise<AdminClient> => new AdminClient(await connectToServer({ kit: adminKit, targets: [{ host: '127.0.0.1', port }] }), { timeoutMs: 600_000, signer: adminKit });
    let admin = await dialAdmin();
    let redials = 0;
    const asAdmin = async <T>(fn: (a: AdminClient) => Promise<T>): Promise<T> => {
      for (;;) {
        try {
          return await fn(admin);
        } catch (e) {
          if ((e as { code?: string }).code !== 'E_RUNTIME_DISCONNECTED' || ++redials > 5) throw e;
          process.stderr.write(`scale bench: admin connection lost (${String((e as Error).message)}), dialing again\n`);
          admin.close();
          admin = await dialAdmin();
        }
      }
    };
    try {
      const definition = { name: 'scale', rounds: ROUNDS, min_clients: contributors, round_timeout_s: 1800, deploy: ['@ALL'], learner: { name: 'pass', args: {} }, aggregator: { name: 'fedavg' } };
      const initial = encodeModel(model({ w: tensor(new Float32Array(PARAMS), [PARAMS]) }));
      phase = 'job';
      const id = await admin.submit({ meta: new TextEncoder().encode(JSON.stringify(definition)), model: initial, files: new Map() });
      progress(`job ${id} submitted: ${ROUNDS} rounds, min_clients ${contributors}`);
      const end = Date.now() + ANSWER_MS;
      // The job's state from `list` while it runs (cheap); `status` (the whole record and every site's state, sent
      // as the reply's payload when large) once at the end. The rounds' latencies come from the server (onRound).
      const state = async (): Promise<string> => (await asAdmin((a) => a.list())).find((j) => j.id === id)?.status ?? 'UNKNOWN';
      let status = await state();
      let roundLoad = load();
      while (status === 'SUBMITTED' || status === 'RUNNING') {
        if (Date.now() > end) throw new Error(`the ${o.n}-site job did not finish in ${ANSWER_MS / 60_000} minutes`);
        await new Promise((r) => setTimeout(r, 1000));
        if (status === 'RUNNING') roundLoad = load();
        const was = status;
        status = await state();
        if (status !== was) progress(`job ${status}`);
      }
      if (status !== 'FINISHED') throw new Error(`the ${o.n}-site job ended ${status}`);
      const s0 = performance.now();
      const full = await asAdmin((a) => a.jobStatus(id));
      const statusMs = performance.now() - s0;
      if (full.sites.length !== contributors || full.sites.some((s) => s.contributions.length !== ROUNDS)) throw new Error(`\`status\` shows ${full.sites.length} of ${contributors} contributors, not all with ${ROUNDS} contributions`);
      const statusKiB = new TextEncoder().encode(JSON.stringify(full)).byteLength / 1024;
      const done = await server.ask('rss');
      const workersDone = await Promise.all(workers.map((w) => w.ask('rss')));
      const relaysDone = await Promise.all(relays.map((r) => r.ask('rss')));
      // Steady-state CPU of one round: the server's between the ends of consecutive rounds after the first, the
      // sites' between the first training of round 1 and of round 2 in each worker.
      const ends = done['roundEnd'] as number[];
      const serverRoundCpu = median(ends.slice(2).map((e, i) => e - ends[i + 1]!));
      const siteRoundCpu = workersDone.reduce((s, a) => {
        const t = a['firstTrain'] as number[];
        return s + t[2]! - t[1]!;
      }, 0);
      const workerJobCpu = workersDone.reduce((s, a, i) => s + Number(a['cpuMs']) - Number(logins[i]!['cpuMs']), 0);
      // Round 0 deploys and warms up; the later rounds are measured.
      const roundMs = median((done['roundSeconds'] as number[]).slice(1).map((sec) => sec * 1000));
      return {
        loginsPerSecond: o.n / (loginMs / 1000),
        loginLoad,
        serverRssPerSiteKiB: (Number(after['rssKiB']) - Number(before['rssKiB'])) / o.n,
        serverRssMiB: Number(after['rssKiB']) / 1024,
        workerRssPerSiteKiB: workerGrowth / o.n,
        roundMs,
        roundLoad,
        serverCpuPerLoginMs: (Number(after['cpuMs']) - Number(before['cpuMs'])) / o.n,
        siteCpuPerLoginMs: workerCpu / o.n,
        serverCpuJobMs: Number(done['cpuMs']) - Number(after['cpuMs']),
        siteCpuJobMs: workerJobCpu,
        serverCpuRoundMs: serverRoundCpu,
        siteCpuRoundMs: siteRoundCpu,
        statusMs,
        statusKiB,
        loopLogin: loopOf(after, relayRss, logins),
        loopJob: loopOf(done, relaysDone, workersDone),
        ...(o.relays > 0
          ? { relayRssMaxMiB: Math.max(...relayRss.map((a) => Number(a['rssKiB']))) / 1024, relayRssTotalMiB: relayRss.reduce((s, a) => s + Number(a['rssKiB']), 0) / 1024, relayCpuPerLoginMs: relayRss.reduce((s, a, i) => s + Number(a['cpuMs']) - Number(relaysBefore[i]!['cpuMs']), 0) / o.n }
          : {}),
      };
    } finally {
      admin.close();
    }
  } catch (e) {
    // What the processes' loops went through until the failure: a blocked loop leaves its peers' pings unanswered.
    const ask = (p: Proc): Promise<Answer> => p.ask('rss', 60_000).catch(() => ({}));
    const [s, r, w] = await Promise.all([ask(server), Promise.all(relays.map(ask)), Promise.all(workers.map(ask))]);
    throw new Error(`${(e as Error).message} (in the ${phase}; longest event-loop block since the last measure: ${describeLoop(loopOf(s, r, w))})`, { cause: e });
  } finally {
    await Promise.all(workers.map((p) => p.stop().catch(() => ({}))));
    await Promise.all(relays.map((p) => p.stop().catch(() => ({}))));
    await server.stop().catch(() => ({}));
    await rm(ws, { recursive: true, force: true });
  }
}

export const suite: Suite = {
  name: 'scale',
  description: `many authenticated sites on one server (mTLS + @flare/auth + audit logs, each site its own kit, many sites per worker process): provisioning, logins per second, server RSS per site, round latency of FedAvg on a ${PARAMS.toLocaleString('en')}-parameter float32 model (${ROUNDS - 1} measured rounds)`,
  async run(): Promise<Row[]> {
    const sizes = (process.env['FLARE_BENCH_SCALE_SITES'] ?? '100,1000').split(',').map(Number);
    const workers = Number(process.env['FLARE_BENCH_SCALE_WORKERS'] ?? 4);
    if (sizes.some((n) => !Number.isSafeInteger(n) || n < 1 || n > 10_000) || !Number.isSafeInteger(workers) || workers < 1 || workers > 64) {
      throw new RangeError('FLARE_BENCH_SCALE_SITES: sizes from 1 to 10,000; FLARE_BENCH_SCALE_WORKERS: 1 to 64');
    }
    if (!Number.isSafeInteger(RELAYS) || RELAYS < 0 || RELAYS > 64 || (RELAYS > 0 && sizes.some((n) => n < RELAYS))) {
      throw new RangeError('FLARE_BENCH_SCALE_RELAYS: 0 (direct) to 64 relays, at most one per site');
    }
    const dir = await mkdtemp(join(tmpdir(), 'flare-bench-scale-'));
    try {
      const most = Math.max(...sizes);
      const relays = Array.from({ length: RELAYS }, (_, r) => `  - name: relay-${r + 1}\n    type: relay\n    org: bench\n    mode: aggregate\n    listening_host: localhost\n`).join('');
      const sites = Array.from({ length: most }, (_, i) => `  - name: site-${i + 1}\n    type: client\n    org: bench\n${RELAYS > 0 ? `    parent: ${relayOf(i + 1, RELAYS)}\n` : ''}`).join('');
      const yaml = `api_version: 3\nname: bench\nparticipants:\n  - name: server\n    type: server\n    org: bench\n${relays}${sites}  - name: admin@bench.org\n    type: admin\n    org: bench\n    role: project_admin\n`;
      const kitCount = most + RELAYS + 2;
      progress(`provisioning ${kitCount} kits`);
      const t0 = performance.now();
      const prov = await provision(parseProject(yaml), { workspace: dir });
      const provisionMs = performance.now() - t0;
      const kits = new Map(prov.kits.map((k) => [k.name, k.dir] as const));
      const rows: Row[] = [{ label: `provisioning ${kitCount} kits (one key and certificate each), ${load()}`, value: kitCount / (provisionMs / 1000), unit: 'kits/s' }];
      for (const n of sizes) {
        // A size that does not complete is a figure too (with its reason); the sizes before it keep theirs.
        const r = await runSize({ n, workers, relays: RELAYS, kits, dir }).catch((e: unknown) => e as Error);
        if (r instanceof Error) {
          rows.push({ label: `${n} sites: did not complete (${r.message.slice(0, 600)}), ${load()}`, value: NaN, unit: '' });
          continue;
        }
        const w = `${n} sites in ${Math.min(workers, n)} worker processes${RELAYS > 0 ? `, through ${RELAYS} aggregating relays` : ''}`;
        const via = RELAYS > 0 ? ` (its ${RELAYS} relays connected)` : '';
        rows.push(
          { label: `logins (dial, mTLS, @flare/auth login, registration), ${w}, ${r.loginLoad}`, value: r.loginsPerSecond, unit: 'logins/s' },
          { label: `  CPU time per login: server`, value: r.serverCpuPerLoginMs, unit: 'ms' },
          { label: `  CPU time per login: site (kit, dial, TLS, login, registration, audit log)`, value: r.siteCpuPerLoginMs, unit: 'ms' },
          ...(r.relayCpuPerLoginMs === undefined ? [] : [{ label: `  CPU time per login: relay (TLS, login, registration of the sites below it)`, value: r.relayCpuPerLoginMs, unit: 'ms' }]),
          { label: `server RSS per connected site (after GC), ${n} sites${via}`, value: r.serverRssPerSiteKiB, unit: 'KiB' },
          { label: `server RSS with ${n} sites connected (after GC)${via}`, value: r.serverRssMiB, unit: 'MiB' },
          ...(r.relayRssMaxMiB === undefined
            ? []
            : [
                { label: `relay RSS with its ${Math.ceil(n / RELAYS)} sites connected (after GC), the largest of ${RELAYS}`, value: r.relayRssMaxMiB, unit: 'MiB' },
                { label: `  all ${RELAYS} relays together`, value: r.relayRssTotalMiB!, unit: 'MiB' },
              ]),
          { label: `worker RSS per site (ClientEngine, session, audit log), ${n} sites`, value: r.workerRssPerSiteKiB, unit: 'KiB' },
          { label: `round latency, FedAvg over ${n} sites, ${PARAMS.toLocaleString('en')} parameters, ${r.roundLoad}`, value: r.roundMs, unit: 'ms', ...(n === 1000 ? { aim: '< 10,000 ms' } : {}) },
          { label: `  CPU time of one round (steady state): server`, value: r.serverCpuRoundMs, unit: 'ms' },
          { label: `  CPU time of one round (steady state): all ${n} sites together`, value: r.siteCpuRoundMs, unit: 'ms' },
          { label: `  the round's CPU time, server and sites, over the machine's ${cpus().length} cores (its latency on an idle machine, if the CPU is the limit)`, value: (r.serverCpuRoundMs + r.siteCpuRoundMs) / cpus().length, unit: 'ms', ...(n === 1000 ? { aim: '< 10,000 ms' } : {}) },
          { label: `  CPU time for the job (deploy to ${n} sites and ${ROUNDS} rounds) per site: server`, value: r.serverCpuJobMs / n, unit: 'ms' },
          { label: `  CPU time for the job per site: site (task, update, audit log)`, value: r.siteCpuJobMs / n, unit: 'ms' },
          { label: `longest event-loop block during the logins: ${describeLoop(r.loopLogin)} (the largest of each kind)`, value: Math.max(r.loopLogin.server, r.loopLogin.relays ?? 0, r.loopLogin.workers), unit: 'ms' },
          { label: `longest event-loop block during the job (deploy and ${ROUNDS} rounds): ${describeLoop(r.loopJob)}`, value: Math.max(r.loopJob.server, r.loopJob.relays ?? 0, r.loopJob.workers), unit: 'ms' },
          { label: `admin \`status\` of the finished job, ${RELAYS > 0 ? `${RELAYS} relays'` : `${n} sites'`} states (${r.statusKiB.toFixed(0)} KiB of JSON, sent as the payload above 16 KiB)`, value: r.statusMs, unit: 'ms' },
        );
      }
      return rows;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
