import { spawn, type ChildProcess } from 'node:child_process';
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

const PARAMS = Number(process.env['FLARE_BENCH_SCALE_PARAMS'] ?? 10_000);
const ROUNDS = 3;
const PARTICIPANT = fileURLToPath(new URL('../participants/scale.js', import.meta.url));
const ANSWER_MS = 1_800_000;

type Answer = Record<string, number | string | number[]>;

interface Proc {
  readonly child: ChildProcess;
  next(timeoutMs?: number): Promise<Answer>;
  ask(command: string, timeoutMs?: number): Promise<Answer>;
  stop(): Promise<Answer>;
}

/** One process of the bench, with its file-descriptor limit raised (every site holds a socket and a log). */
function participant(config: ScaleConfig): Proc {
  const script = `import(${JSON.stringify(pathToFileURL(PARTICIPANT).href)}).then((m) => m.main(${JSON.stringify(config)}))`;
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
const load = (): string => `load ${loadavg()[0]!.toFixed(1)}`;

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
}

async function runSize(o: { readonly n: number; readonly workers: number; readonly kits: ReadonlyMap<string, string>; readonly dir: string }): Promise<Run> {
  const ws = await mkdtemp(join(o.dir, `run-${o.n}-`));
  const server = participant({ role: 'server', kit: o.kits.get('server')!, workspace: join(ws, 'server'), sites: o.n });
  const workers: Proc[] = [];
  try {
    const up = await server.next();
    const port = Number(up['port']);
    const names = Array.from({ length: o.n }, (_, i) => `site-${i + 1}`);
    const per = Math.ceil(o.n / o.workers);
    for (let w = 0; w * per < o.n; w++) {
      const sites = names.slice(w * per, (w + 1) * per).map((name) => ({ name, kit: o.kits.get(name)! }));
      workers.push(participant({ role: 'worker', workspace: join(ws, `worker-${w}`), port, sites, concurrency: 16, params: PARAMS, audit: true }));
    }
    const idle = await Promise.all(workers.map((w) => w.next()));
    const before = await server.ask('rss');
    const t0 = performance.now();
    const logins = await Promise.all(workers.map((w) => w.ask('login')));
    const loginMs = performance.now() - t0;
    const loginLoad = load();
    const after = await server.ask('rss');
    if (Number(after['connected']) !== o.n) throw new Error(`${String(after['connected'])} of ${o.n} sites registered`);
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
      const definition = { name: 'scale', rounds: ROUNDS, min_clients: o.n, round_timeout_s: 1800, deploy: ['@ALL'], learner: { name: 'pass', args: {} }, aggregator: { name: 'fedavg' } };
      const initial = encodeModel(model({ w: tensor(new Float32Array(PARAMS), [PARAMS]) }));
      const id = await admin.submit({ meta: new TextEncoder().encode(JSON.stringify(definition)), model: initial, files: new Map() });
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
        status = await state();
      }
      if (status !== 'FINISHED') throw new Error(`the ${o.n}-site job ended ${status}`);
      const s0 = performance.now();
      const full = await asAdmin((a) => a.jobStatus(id));
      const statusMs = performance.now() - s0;
      if (full.sites.length !== o.n || full.sites.some((s) => s.contributions.length !== ROUNDS)) throw new Error(`\`status\` shows ${full.sites.length} of ${o.n} sites, not all with ${ROUNDS} contributions`);
      const statusKiB = new TextEncoder().encode(JSON.stringify(full)).byteLength / 1024;
      const done = await server.ask('rss');
      const workersDone = await Promise.all(workers.map((w) => w.ask('rss')));
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
      };
    } finally {
      admin.close();
    }
  } finally {
    await Promise.all(workers.map((p) => p.stop().catch(() => ({}))));
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
    const dir = await mkdtemp(join(tmpdir(), 'flare-bench-scale-'));
    try {
      const most = Math.max(...sizes);
      const yaml = `api_version: 3\nname: bench\nparticipants:\n  - name: server\n    type: server\n    org: bench\n${Array.from({ length: most }, (_, i) => `  - name: site-${i + 1}\n    type: client\n    org: bench\n`).join('')}  - name: admin@bench.org\n    type: admin\n    org: bench\n    role: project_admin\n`;
      const t0 = performance.now();
      const prov = await provision(parseProject(yaml), { workspace: dir });
      const provisionMs = performance.now() - t0;
      const kits = new Map(prov.kits.map((k) => [k.name, k.dir] as const));
      const rows: Row[] = [{ label: `provisioning ${most + 2} kits (one key and certificate each), ${load()}`, value: (most + 2) / (provisionMs / 1000), unit: 'kits/s' }];
      for (const n of sizes) {
        // A size that does not complete is a figure too (with its reason); the sizes before it keep theirs.
        const r = await runSize({ n, workers, kits, dir }).catch((e: unknown) => e as Error);
        if (r instanceof Error) {
          rows.push({ label: `${n} sites: did not complete (${r.message.slice(0, 300)}), ${load()}`, value: NaN, unit: '' });
          continue;
        }
        const w = `${n} sites in ${Math.min(workers, n)} worker processes`;
        rows.push(
          { label: `logins (dial, mTLS, @flare/auth login, registration), ${w}, ${r.loginLoad}`, value: r.loginsPerSecond, unit: 'logins/s' },
          { label: `  CPU time per login: server`, value: r.serverCpuPerLoginMs, unit: 'ms' },
          { label: `  CPU time per login: site (kit, dial, TLS, login, registration, audit log)`, value: r.siteCpuPerLoginMs, unit: 'ms' },
          { label: `server RSS per connected site (after GC), ${n} sites`, value: r.serverRssPerSiteKiB, unit: 'KiB' },
          { label: `server RSS with ${n} sites connected (after GC)`, value: r.serverRssMiB, unit: 'MiB' },
          { label: `worker RSS per site (ClientEngine, session, audit log), ${n} sites`, value: r.workerRssPerSiteKiB, unit: 'KiB' },
          { label: `round latency, FedAvg over ${n} sites, ${PARAMS.toLocaleString('en')} parameters, ${r.roundLoad}`, value: r.roundMs, unit: 'ms', ...(n === 1000 ? { aim: '< 10,000 ms' } : {}) },
          { label: `  CPU time of one round (steady state): server`, value: r.serverCpuRoundMs, unit: 'ms' },
          { label: `  CPU time of one round (steady state): all ${n} sites together`, value: r.siteCpuRoundMs, unit: 'ms' },
          { label: `  the round's CPU time, server and sites, over the machine's ${cpus().length} cores (its latency on an idle machine, if the CPU is the limit)`, value: (r.serverCpuRoundMs + r.siteCpuRoundMs) / cpus().length, unit: 'ms', ...(n === 1000 ? { aim: '< 10,000 ms' } : {}) },
          { label: `  CPU time for the job (deploy to ${n} sites and ${ROUNDS} rounds) per site: server`, value: r.serverCpuJobMs / n, unit: 'ms' },
          { label: `  CPU time for the job per site: site (task, update, audit log)`, value: r.siteCpuJobMs / n, unit: 'ms' },
          { label: `admin \`status\` of the finished job, ${n} sites' states (${r.statusKiB.toFixed(0)} KiB of JSON, sent as the payload above 16 KiB)`, value: r.statusMs, unit: 'ms' },
        );
      }
      return rows;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
