// The processes of the scale bench (suites/scale.ts): the server, or a worker that runs many lightweight sites at
// once, each with its own kit (its own certificate and key), its own mTLS connection and @flare/auth session,
// its own ClientEngine and audit log. Started as
//   node --expose-gc -e "import('<this file>').then((m) => m.main('<config.json>'))"
// (the config is a file: a worker's list of thousands of sites does not fit in one argument, 128 KiB on Linux)
// and driven by JSON lines: the parent writes commands on stdin, the process answers one JSON line on stdout.
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { AuditLog } from '@flare/audit';
import { model, tensor } from '@flare/core';
import { loadKit } from '@flare/pki';
import { parseAuthorizationPolicy, parseComponentPolicy, parsePrivacyPolicy, parseResourcePolicy, ResourceManager } from '@flare/policy';
import { ClientEngine, ServerEngine, createLogger, jobTrustFromKit, linkToServer, listenForParticipants, parseAggregationPolicy, relayTreeOf, startAggregatingRelay, type LearnerFactory, type SitePolicy } from '@flare/runtime';
import { watchEventLoop } from './loop-watchdog.js';

/** What a scale process is told to be. */
export type ScaleConfig =
  | { readonly role: 'server'; readonly kit: string; readonly workspace: string; readonly sites: number }
  /** An aggregating relay (its kit provisioned with `mode: aggregate`): its sites log in to it, it sends the server one update. */
  | { readonly role: 'relay'; readonly kit: string; readonly workspace: string; readonly serverPort: number; readonly sites: number }
  | {
      readonly role: 'worker';
      readonly workspace: string;
      /** The sites this worker runs: name, kit folder, and the port each dials (the server's, or its relay's). */
      readonly sites: ReadonlyArray<{ readonly name: string; readonly kit: string; readonly port: number }>;
      /** Logins this worker runs at once. */
      readonly concurrency: number;
      readonly params: number;
      /** Site audit logs (hash-chained, signed): on unless false. */
      readonly audit: boolean;
    };

const say = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
const gc = (globalThis as { gc?: () => void }).gc;

// The longest block of this process's event loop: while it is blocked, its connections' pings go unanswered and
// its peers may judge it dead (60 s idle timeout). Sampled every 20 ms; reported and reset with each answer.
const loop = monitorEventLoopDelay({ resolution: 20 });
loop.enable();

/**
 * RSS after a full collection (when the process runs with --expose-gc), so that garbage does not count; CPU time
 * used; the longest event-loop delay since the previous answer (ms), then the monitor starts over.
 */
function settledRss(): { rssKiB: number; heapKiB: number; externalKiB: number; cpuMs: number; loopMaxMs: number } {
  // Read before the collection below, which blocks the loop too.
  const loopMaxMs = Math.round(loop.max / 1e6);
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  loop.reset();
  // CPU time so far (user + system): unlike wall time, it does not grow with the load other processes put on the machine.
  return { rssKiB: Math.round(m.rss / 1024), heapKiB: Math.round(m.heapUsed / 1024), externalKiB: Math.round((m.external + m.arrayBuffers) / 1024), cpuMs: cpuMs(), loopMaxMs };
}

/** Answers the parent's commands until it says `stop` (or closes stdin): then `stop()`, peak RSS, exit. */
function serve(commands: Record<string, () => Promise<object>>, stop: () => Promise<void>): void {
  const lines = createInterface({ input: process.stdin });
  let stopping = false;
  const end = (): void => {
    if (stopping) return;
    stopping = true;
    void stop()
      .catch((e: unknown) => process.stderr.write(`stop failed: ${String(e)}\n`))
      .finally(() => {
        say({ maxRssKiB: process.resourceUsage().maxRSS });
        process.exit(0);
      });
  };
  lines.on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'stop' || cmd === '') return end();
    const run = commands[cmd];
    if (run === undefined) return say({ error: `unknown command ${cmd}` });
    run().then(say, (e: unknown) => say({ error: e instanceof Error ? e.message : String(e) }));
  });
  lines.on('close', end);
}

/**
 * Site policies that admit the bench's job: everything, under one public scope. The parsed policies are shared;
 * each site gets its own resource manager (reservations are per site).
 */
function openPolicies(): (kit: { readonly project: string; readonly rootCaPem: string }) => SitePolicy {
  const authorization = parseAuthorizationPolicy({ format_version: '1.0', permissions: { project_admin: 'any' } });
  const privacy = parsePrivacyPolicy({ scopes: [{ name: 'public' }], default_scope: 'public' }, { registry: new Map() });
  const components = parseComponentPolicy({ allow: ['pass'] });
  const resources = parseResourcePolicy({ limits: { max_concurrent_jobs: 4 } });
  // Sites obey only jobs signed by an admin of the project: each checks against its own kit's root.
  return (kit) => ({ authorization: () => authorization, privacy: () => privacy, components: () => components, resources: new ResourceManager(resources), jobTrust: jobTrustFromKit({ project: kit.project, rootCaPem: kit.rootCaPem }) });
}

const anything = { safeParse: (v: unknown) => ({ success: true as const, data: v }) };

const cpuMs = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

/**
 * A learner with no compute and one shared update: the figures are the federation's cost per site. `firstTrain`
 * records this process's CPU time when the first of its sites trains each round (the rounds' CPU cost).
 */
function passLearner(params: number, firstTrain: number[]): LearnerFactory<unknown> {
  const d = new Float32Array(params);
  for (let i = 0; i < d.length; i++) d[i] = 1e-3 * ((i % 7) - 3);
  const update = model({ w: tensor(d, [params]) }, 'diff', { NUM_STEPS_CURRENT_ROUND: 1 });
  const learner = {
    train: (_global: unknown, ctx: { round: number }) => {
      firstTrain[ctx.round] ??= cpuMs();
      return Promise.resolve(update);
    },
    validate: () => Promise.resolve({}),
  };
  return { name: 'pass', args: anything, create: () => learner } as unknown as LearnerFactory<unknown>;
}

/**
 * The listening side's transport limits, for the server and the relays alike. Every site of the bench dials from
 * 127.0.0.1: one address, as behind a NAT or a TLS-terminating proxy, so the per-address pre-login caps are
 * raised to the totals (the totals stay at their defaults).
 */
const listenLimits = (sites: number) => ({ maxPendingLoginsPerAddress: 256, maxHandshakesPerAddress: 512, maxConnections: Math.max(4096, sites + 64), maxMessageBytes: 64 * 1024 ** 2 });

/** Runtime limits of the server and the relays: thousands of sites deploy and answer slowly on a shared 2-core machine. */
const ENGINE_LIMITS = { deployWaitMs: 600_000, deployTimeoutMs: 600_000, heartbeatTimeoutMs: 120_000 } as const;

async function server(c: Extract<ScaleConfig, { role: 'server' }>): Promise<void> {
  await mkdir(c.workspace, { recursive: true });
  const kit = await loadKit(c.kit);
  const log = await AuditLog.open(join(c.workspace, 'server.audit.jsonl'), { site: kit.participant.name, signer: kit.privateKey });
  const roundEnd: number[] = [];
  const roundSeconds: number[] = [];
  // Warnings on stderr (refused connections, sites lost): what went wrong when a size does not complete.
  const logger = createLogger({ name: 'server', console: true, level: 'warn' });
  const listener = await listenForParticipants({ kit, port: 0, logger, limits: listenLimits(c.sites) });
  const engine = await ServerEngine.start({
    name: kit.participant.name,
    org: kit.participant.org,
    workspace: c.workspace,
    listener,
    authorize: () => true,
    audit: log.append,
    logger,
    limits: ENGINE_LIMITS,
    aggregation: parseAggregationPolicy({ require: 'none' }),
    // The aggregating relays provisioned below it (relay mode): whose sites' reports and updates it accepts.
    relays: relayTreeOf(kit),
    onRound: (_job, record) => {
      roundEnd[record.round] = cpuMs();
      roundSeconds[record.round] = record.seconds;
    },
  });
  say({ port: listener.port, ...settledRss() });
  serve(
    {
      rss: () => Promise.resolve({ ...settledRss(), connected: engine.registry.names().length, roundEnd, roundSeconds }),
    },
    async () => {
      await engine.close();
      await log.close();
      await logger.close();
    },
  );
}

/**
 * An aggregating relay: the server of its sites' rounds, one contributor towards the server, under the same open
 * policy as the sites (it admits the bench's job; its components allow the learner's name).
 */
async function relay(c: Extract<ScaleConfig, { role: 'relay' }>): Promise<void> {
  await mkdir(c.workspace, { recursive: true });
  const kit = await loadKit(c.kit);
  const log = await AuditLog.open(join(c.workspace, 'relay.audit.jsonl'), { site: kit.participant.name, signer: kit.privateKey });
  const logger = createLogger({ name: kit.participant.name, console: true, level: 'warn' });
  const r = await startAggregatingRelay({
    kit,
    port: 0,
    upstream: [{ host: '127.0.0.1', port: c.serverPort }],
    workspace: c.workspace,
    policy: openPolicies()(kit),
    filters: new Map(),
    aggregation: parseAggregationPolicy({ require: 'none' }),
    limits: ENGINE_LIMITS,
    transport: listenLimits(c.sites),
    audit: log.append,
    logger,
  });
  await r.upstream.registered(600_000);
  say({ port: r.port, ...settledRss() });
  serve(
    { rss: () => Promise.resolve({ ...settledRss(), connected: r.sites().length }) },
    async () => {
      await r.close();
      await log.close();
      await logger.close();
    },
  );
}

/** Runs `fn` over `items` with at most `limit` at once. */
async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function worker(c: Extract<ScaleConfig, { role: 'worker' }>): Promise<void> {
  await mkdir(c.workspace, { recursive: true });
  const policy = openPolicies();
  const firstTrain: number[] = [];
  const learners = new Map([['pass', passLearner(c.params, firstTrain)]]);
  const engines: ClientEngine[] = [];
  const logger = createLogger({ name: `worker of ${c.sites[0]?.name ?? 'no sites'}`, console: true, level: 'error' });
  const logs: AuditLog[] = [];
  say({ worker: 'up', ...settledRss() });
  serve(
    {
      // Logs every site in: loads its kit, dials, TLS handshake, @flare/auth login, registration with the server.
      login: async () => {
        const t0 = performance.now();
        await mapLimit(c.sites, c.concurrency, async ({ name, kit: dir, port }) => {
          const kit = await loadKit(dir);
          const workspace = join(c.workspace, name);
          await mkdir(workspace, { recursive: true });
          const log = c.audit ? await AuditLog.open(join(workspace, 'audit.jsonl'), { site: name, signer: kit.privateKey }) : undefined;
          if (log !== undefined) logs.push(log);
          const engine = await ClientEngine.start({
            site: { name, org: kit.participant.org },
            policy: policy(kit),
            learners,
            filters: new Map(),
            workspace,
            link: linkToServer({ kit, targets: [{ host: '127.0.0.1', port }], connectTimeoutMs: 600_000, logger }),
            logger,
            limits: { welcomeTimeoutMs: 600_000, deployTimeoutMs: 600_000 },
            ...(log === undefined ? {} : { audit: log.append }),
          });
          engines.push(engine);
          await engine.registered(600_000);
        });
        return { loggedIn: c.sites.length, ms: performance.now() - t0, ...settledRss() };
      },
      rss: () => Promise.resolve({ ...settledRss(), firstTrain }),
    },
    async () => {
      await Promise.all(engines.map((e) => e.close()));
      await Promise.all(logs.map((l) => l.close()));
      await logger.close();
    },
  );
}

/** Runs one process of the scale bench (its config in the JSON file `configFile`) until the parent says `stop`. */
export async function main(configFile: string): Promise<void> {
  const c = JSON.parse(await readFile(configFile, 'utf8')) as ScaleConfig;
  // A stall of 5 s or more is reported on stderr with what the main thread was doing (running, or in the kernel).
  watchEventLoop(basename(c.workspace));
  if (c.role === 'server') await server(c);
  else if (c.role === 'relay') await relay(c);
  else await worker(c);
}
