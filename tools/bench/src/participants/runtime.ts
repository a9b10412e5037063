// One participant of the runtime bench (suites/runtime.ts) in its own process: the server, or one site. It loads the packages of
// the runtime it measures from a repository root (this build, or an older build in another worktree), so the
// same suite compares the runtime before and after a change. Started as
//   node -e "import('<this file>').then((m) => m.main(<json config>))"
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** What a participant process is told to be. */
export interface ParticipantConfig {
  readonly role: 'server' | 'site';
  /** Repository root whose packages are measured. */
  readonly root: string;
  /** 'after': this runtime's API; 'before': the API of eff1d78 (connect(), SitePolicy object, definition + model). */
  readonly api: 'before' | 'after';
  readonly secure: boolean;
  readonly workspace: string;
  /** The participant's kit (secure runs). */
  readonly kit?: string;
  /** The site's name (sites). */
  readonly name?: string;
  /** The server's port (sites). */
  readonly port?: number;
  /** Parameters of the model (sites build updates of this size). */
  readonly params?: number;
  /** A kit whose project and root CA check job signatures ('after' sites, secure or clear: every job is signed). */
  readonly trustKit?: string;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- two versions of an API, loaded by path: typed at the edges */
type Any = any;

const load = async (root: string, pkg: string, sub = 'dist/index.js'): Promise<Any> => import(pathToFileURL(join(root, 'node_modules', '@flare', pkg, sub)).href);

interface Modules {
  readonly core: Any;
  readonly runtime: Any;
  readonly transport: Any;
  readonly pki: Any;
  readonly audit: Any;
  readonly policy: Any;
}

async function modules(root: string): Promise<Modules> {
  const [core, runtime, transport, pki, audit, policy] = await Promise.all(['core', 'runtime', 'transport', 'pki', 'audit', 'policy'].map((p) => load(root, p)));
  return { core, runtime, transport, pki, audit, policy };
}

/** Clear baseline: the peer is whoever it says it is (first message), no TLS, no MACs. */
async function clearListener(m: Modules): Promise<Any> {
  let handler: ((c: Any) => void) | undefined;
  const ep = await m.transport.listen({
    security: 'clear',
    port: 0,
    limits: { maxMessageBytes: 2 ** 31 },
    authenticate: async (c: Any) => {
      const hello = (await c.receive()).header;
      return { name: hello.name, org: hello.org, type: hello.type, ...(hello.role === undefined ? {} : { role: hello.role }) };
    },
  });
  ep.on('connection', (c: Any) => handler?.(m.runtime.connectionChannel(c)));
  return { port: ep.port, onChannel: (h: (c: Any) => void) => (handler = h), close: () => ep.close() };
}

/** Opens a clear channel to the server as `me`. */
export async function clearConnect(m: { transport: Any; runtime: Any }, port: number, me: { name: string; org: string; type: string; role?: string }): Promise<Any> {
  const c = await m.transport.dial({
    security: 'clear',
    targets: [{ host: '127.0.0.1', port }],
    limits: { maxMessageBytes: 2 ** 31 },
    authenticate: async (conn: Any) => {
      await conn.send({ ...me });
      return { name: 'server', org: 'bench', type: 'server' };
    },
  });
  return m.runtime.connectionChannel(c);
}

const cpuMs = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

/**
 * A learner with no compute: the figures are the federation's overhead, not training. `firstTrain` records the
 * process's CPU time when it first trains each round: the differences are the site's CPU cost of a round.
 */
function passLearner(m: Modules, params: number, firstTrain: number[]): Any {
  const d = new Float32Array(params);
  for (let i = 0; i < d.length; i++) d[i] = 1e-3 * ((i % 7) - 3);
  return {
    train: async (_global: unknown, ctx?: { round?: number }) => {
      if (ctx?.round !== undefined) firstTrain[ctx.round] ??= cpuMs();
      return m.core.model({ w: m.core.tensor(d, [params]) }, 'diff', { NUM_STEPS_CURRENT_ROUND: 1 });
    },
    validate: async () => ({}),
  };
}

const anything = { safeParse: (v: unknown) => ({ success: true, data: v }) };

/** A site policy that admits everything, in the shape each API wants. */
function openPolicy(m: Modules, api: 'before' | 'after', trust?: Any): Any {
  if (api === 'before') {
    return { authorize: () => true, scope: (n?: string) => (n === undefined || n === 'public' ? { name: 'public', taskDataFilters: [], taskResultFilters: [] } : undefined), admitsComponent: () => true, byocConsent: false, checkResources: () => undefined, report: {} };
  }
  const authorization = m.policy.parseAuthorizationPolicy({ format_version: '1.0', permissions: { project_admin: 'any' } });
  const privacy = m.policy.parsePrivacyPolicy({ scopes: [{ name: 'public' }], default_scope: 'public' }, { registry: new Map() });
  const components = m.policy.parseComponentPolicy({ allow: ['pass'] });
  const resources = new m.policy.ResourceManager(m.policy.parseResourcePolicy({ limits: { max_concurrent_jobs: 4 } }));
  const jobTrust = trust === undefined ? {} : { jobTrust: m.runtime.jobTrustFromKit({ project: trust.project, rootCaPem: trust.rootCaPem }) };
  return { authorization: () => authorization, privacy: () => privacy, components: () => components, resources, ...jobTrust };
}

const say = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

/** Reports peak memory (and `extra`) and exits when the parent writes a line (or closes stdin). */
function onStop(stop: () => Promise<void>, extra: object = {}): void {
  process.stdin.resume();
  const done = (): void => {
    say({ maxRssKiB: process.resourceUsage().maxRSS, ...extra });
    void stop().finally(() => process.exit(0));
  };
  process.stdin.once('data', done);
  process.stdin.once('end', done);
}

/** Runs one participant until the parent tells it to stop. */
export async function main(c: ParticipantConfig): Promise<void> {
  await mkdir(c.workspace, { recursive: true });
  const m = await modules(c.root);
  const kit = c.kit === undefined ? undefined : await m.pki.loadKit(c.kit);
  const auditLog = kit === undefined ? undefined : await m.audit.AuditLog.open(join(c.workspace, `${c.name ?? 'server'}.audit.jsonl`), { site: kit.participant.name, signer: kit.privateKey });
  const audit = auditLog === undefined ? {} : { audit: auditLog.append };
  if (c.role === 'server') {
    const listener = kit === undefined ? await clearListener(m) : await m.runtime.listenForParticipants({ kit, port: 0 });
    // The server's CPU time at the end of each round (this runtime's onRound): the differences are its CPU cost of a round.
    const roundEnd: number[] = [];
    const wait =
      c.api === 'before'
        ? { deployWaitMs: 600_000 }
        : { limits: { deployWaitMs: 600_000 }, aggregation: m.runtime.parseAggregationPolicy({ require: 'none' }), onRound: (_job: string, r: { round: number }) => void (roundEnd[r.round] = cpuMs()) };
    const server = await m.runtime.ServerEngine.start({ name: 'server', org: 'bench', workspace: c.workspace, listener, authorize: () => true, ...audit, ...wait });
    say({ port: listener.port });
    onStop(
      async () => {
        await server.close();
        await auditLog?.close();
      },
      { roundEnd },
    );
    return;
  }
  const name = c.name!;
  const targets = [{ host: '127.0.0.1', port: c.port! }];
  const firstTrain: number[] = [];
  const connect = (): Promise<Any> => (kit === undefined ? clearConnect(m, c.port!, { name, org: 'bench', type: 'client' }) : m.runtime.connectToServer({ kit, targets }));
  const common = {
    site: { name, org: 'bench' },
    policy: openPolicy(m, c.api, c.trustKit === undefined ? undefined : await m.pki.loadKit(c.trustKit)),
    learners: new Map([['pass', { name: 'pass', args: anything, create: () => passLearner(m, c.params!, firstTrain) }]]),
    filters: new Map(),
    workspace: c.workspace,
    ...audit,
  };
  let engine: Any;
  if (c.api === 'before') {
    engine = await m.runtime.ClientEngine.start({ ...common, connect });
  } else {
    const testing = await load(c.root, 'runtime', 'dist/testing/index.js');
    const link = kit === undefined ? testing.memoryLink(connect) : m.runtime.linkToServer({ kit, targets });
    engine = await m.runtime.ClientEngine.start({ ...common, link });
    await engine.registered(600_000);
  }
  say({ ready: name, rssKiB: Math.round(process.memoryUsage().rss / 1024) });
  onStop(
    async () => {
      await engine.close();
      await auditLog?.close();
    },
    { firstTrain },
  );
}
