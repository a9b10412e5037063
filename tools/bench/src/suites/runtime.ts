import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { AuditLog } from '@flare/audit';
import { parseAttestationPolicy } from '@flare/cc-attest';
import { TestAttester, createTestAuthority } from '@flare/cc-attest/testing';
import { META, encodeModel, model, tensor, type FilterFactory, type FLModel, type Learner } from '@flare/core';
import { generateHeKeys, heAggregationScheme, heDecryptFactory, heEncryptFactory } from '@flare/filters-he';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { ResourceManager, parseAuthorizationPolicy, parseComponentPolicy, parsePrivacyPolicy, parseResourcePolicy } from '@flare/policy';
import {
  AdminClient,
  ClientEngine,
  ServerEngine,
  connectToServer,
  connectionChannel,
  linkToServer,
  listenForParticipants,
  type AttestationOptions,
  type ChannelServer,
  type JobBundle,
  type PeerChannel,
  type PeerIdentity,
  type SitePolicy,
} from '@flare/runtime';
import { channelPair, memoryLink } from '@flare/runtime/testing';
import { dial, listen } from '@flare/transport';
import type { Row, Suite } from '../harness.js';

// Round latency of the runtime with 10 sites and a 1M-parameter model (4 MB float32): the secure stack
// (mTLS + @flare/auth sessions with per-message MACs + hash-chained audit logs at the server and every site)
// against a clear stack with no authentication and no audit, in the same run. The server runs in its own
// process so that its peak memory (max RSS) is its own; the 10 sites share the bench process.

const SITES = 10;
const PARAMS = 1_000_000;
const ROUNDS = 6;

// A learner with no compute: the figure is the federation's overhead, not training.
const passLearner: Learner = {
  async train(global: FLModel) {
    const w = global.params.get('w')!.data as Float32Array;
    const d = new Float32Array(w.length);
    for (let i = 0; i < d.length; i++) d[i] = 1e-3 * ((i % 7) - 3);
    return model({ w: tensor(d, [1000, 1000]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1 });
  },
  async validate() {
    return {};
  },
};

/** A site that admits everything: the figures are the federation's, not the policy's. */
function openPolicy(filters: ReadonlyMap<string, FilterFactory<unknown>> = new Map(), he = false): SitePolicy {
  const authorization = parseAuthorizationPolicy({ format_version: '1.0', permissions: { project_admin: 'any' } });
  const scope = he ? { name: 'public', task_data_filters: [{ name: 'he-decrypt' }], task_result_filters: [{ name: 'he-encrypt' }] } : { name: 'public' };
  const privacy = parsePrivacyPolicy({ scopes: [scope], default_scope: 'public' }, { registry: filters as ReadonlyMap<string, FilterFactory> });
  const components = parseComponentPolicy({ allow: ['pass', 'he-encrypt', 'he-decrypt'] });
  const resources = new ResourceManager(parseResourcePolicy({ limits: { max_concurrent_jobs: 4 } }));
  return { authorization: () => authorization, privacy: () => privacy, components: () => components, resources, rootCa: '' };
}

/** A job folder's bundle from a definition and an initial model. */
const jobBundle = (definition: object, initial: Uint8Array): JobBundle => ({ meta: new TextEncoder().encode(JSON.stringify(definition)), model: initial, files: new Map() });

// Clear baseline: the peer is whoever it says it is (first message), no TLS, no MACs.
async function clearListener(): Promise<ChannelServer & { port: number }> {
  let handler: ((c: PeerChannel) => void) | undefined;
  const ep = await listen<PeerIdentity>({
    security: 'clear',
    port: 0,
    authenticate: async (c) => {
      const hello = (await c.receive()).header as unknown as PeerIdentity;
      return { name: hello.name, org: hello.org, kind: hello.kind, ...(hello.role === undefined ? {} : { role: hello.role }) };
    },
  });
  ep.on('connection', (c) => handler?.(connectionChannel(c)));
  return { port: ep.port, onChannel: (h) => (handler = h), close: () => ep.close() };
}

async function clearConnect(port: number, me: PeerIdentity): Promise<PeerChannel> {
  const c = await dial<PeerIdentity>({
    security: 'clear',
    targets: [{ host: '127.0.0.1', port }],
    authenticate: async (conn) => {
      await conn.send({ ...me });
      return { name: 'server', org: 'bench', kind: 'server' };
    },
  });
  return connectionChannel(c);
}

/** The server process of this suite: `node -e` imports this module and calls it with a JSON config. */
export async function benchServerMain(config: { secure: boolean; kit?: string; workspace: string }): Promise<void> {
  const kit = config.kit === undefined ? undefined : await loadKit(config.kit);
  const listener = kit === undefined ? await clearListener() : await listenForParticipants({ kit, port: 0 });
  const audit = kit === undefined ? undefined : await AuditLog.open(join(config.workspace, 'audit.jsonl'), { site: kit.participant.name, signer: kit.privateKey });
  const server = await ServerEngine.start({
    name: 'server',
    org: 'bench',
    workspace: config.workspace,
    listener,
    authorize: () => true,
    ...(audit === undefined ? {} : { audit: audit.append }),
    limits: { deployWaitMs: 60_000 },
  });
  console.log(JSON.stringify({ port: listener.port }));
  process.stdin.resume();
  // Any input: report peak memory and stop (a failed close crashes this child, which the parent sees).
  process.stdin.on('data', () => void (async () => {
    console.log(JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS }));
    await server.close();
    await audit?.close();
    process.exit(0);
  })());
}

async function runConfig(secure: boolean, kits: Map<string, Kit> | undefined, root: string): Promise<{ medianMs: number; rounds: number[]; maxRssMiB: number }> {
  const ws = await mkdtemp(join(root, secure ? 'secure-' : 'clear-'));
  const self = fileURLToPath(import.meta.url);
  const cfg = JSON.stringify({ secure, workspace: ws, ...(secure ? { kit: kits!.get('server')!.dir } : {}) });
  const child = spawn(process.execPath, ['-e', `import(${JSON.stringify(self)}).then((m) => m.benchServerMain(${cfg}))`], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const next = (): Promise<Record<string, number>> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('bench server did not answer in 60 s')), 60_000);
      lines.once('line', (l) => {
        clearTimeout(t);
        resolve(JSON.parse(l) as Record<string, number>);
      });
    });
  const { port } = await next();
  const targets = [{ host: '127.0.0.1', port: port! }];
  const engines: ClientEngine[] = [];
  const logs: AuditLog[] = [];
  for (let i = 1; i <= SITES; i++) {
    const name = `site-${i}`;
    const kit = kits?.get(name);
    const log = kit === undefined ? undefined : await AuditLog.open(join(ws, `${name}.audit.jsonl`), { site: name, signer: kit.privateKey });
    if (log !== undefined) logs.push(log);
    engines.push(
      await ClientEngine.start({
        site: { name, org: 'bench' },
        link: kit === undefined ? memoryLink(() => clearConnect(port!, { name, org: 'bench', kind: 'client' })) : linkToServer({ kit, targets }),
        policy: openPolicy(),
        learners: new Map([['pass', { name: 'pass', args: { safeParse: (v: unknown) => ({ success: true, data: v }) } as never, create: () => passLearner }]]),
        filters: new Map(),
        workspace: ws,
        ...(log === undefined ? {} : { audit: log.append }),
      }),
    );
  }
  const adminKit = kits?.get('admin@bench.org');
  const admin = new AdminClient(adminKit === undefined ? await clearConnect(port!, { name: 'admin@bench.org', org: 'bench', role: 'project_admin', kind: 'admin' }) : await connectToServer({ kit: adminKit, targets }));
  const initial = encodeModel(model({ w: tensor(new Float32Array(PARAMS), [1000, 1000]) }));
  const sites = Array.from({ length: SITES }, (_, i) => `site-${i + 1}`);
  const id = await admin.submit(jobBundle({ name: 'bench', rounds: ROUNDS, min_clients: SITES, round_timeout_s: 120, deploy: sites, learner: { name: 'pass', args: {} } }, initial));
  const end = Date.now() + 300_000;
  let rec = await admin.status(id);
  while (rec.status === 'SUBMITTED' || rec.status === 'RUNNING') {
    if (Date.now() > end) throw new Error('bench job did not finish in 300 s');
    await new Promise((r) => setTimeout(r, 100));
    rec = await admin.status(id);
  }
  if (rec.status !== 'FINISHED') throw new Error(`bench job ended ${rec.status}: ${rec.error?.message ?? ''}`);
  admin.close();
  // The first round warms up (connections, JIT): report rounds 1.. only.
  const rounds = rec.history.slice(1).map((h) => h.seconds * 1000);
  const sorted = [...rounds].sort((a, b) => a - b);
  child.stdin!.write('\n');
  const { maxRssKiB } = await next();
  for (const e of engines) await e.close();
  for (const l of logs) await l.close();
  await new Promise((r) => child.once('exit', r));
  return { medianMs: sorted[Math.floor(sorted.length / 2)]!, rounds, maxRssMiB: maxRssKiB! / 1024 };
}

// HE and attestation in the engines, in one process over in-memory channels (sessions emulated by a shared
// secret per connection): an encrypted round against the same round in plaintext, and a site login with
// mutual attestation against one without. Small enough to run next to the 10-site figures above; the
// 1M-parameter HE figures per client are the `he` suite's.
const HE_SITES = 3;
const HE_PARAMS = 250_000;
const HE_ROUNDS = 4;
const LOGINS = 10;

function learnerOf(params: number): Learner {
  return {
    async train(global: FLModel) {
      const w = global.params.get('w')!.data as Float32Array;
      const d = new Float32Array(w.length);
      for (let i = 0; i < d.length; i++) d[i] = 1e-3 * ((i % 7) - 3);
      return model({ w: tensor(d, [params]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1 });
    },
    async validate() {
      return {};
    },
  };
}

function memoryHub(sessions: boolean): ChannelServer & { connect(who: PeerIdentity): Promise<PeerChannel> } {
  let handler: ((c: PeerChannel) => void) | undefined;
  const server: PeerIdentity = { name: 'server', org: 'bench', kind: 'server' };
  return {
    onChannel: (h) => (handler = h),
    close: async () => undefined,
    connect: async (who) => {
      const [c, s] = channelPair(who, server, sessions ? { keyingMaterial: randomBytes(32) } : {});
      handler!(s);
      return c;
    },
  };
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function inMemoryRounds(he: boolean, root: string): Promise<{ roundMs: number; aggregateMs: number; bytesPerSite: number }> {
  const keys = he ? await generateHeKeys() : undefined;
  const hub = memoryHub(false);
  const ws = await mkdtemp(join(root, he ? 'he-' : 'plain-'));
  const server = await ServerEngine.start({ name: 'server', org: 'bench', workspace: ws, listener: hub, authorize: () => true, limits: { deployWaitMs: 60_000 }, ...(keys === undefined ? {} : { schemes: [heAggregationScheme(keys.server)] }) });
  const filters = new Map<string, FilterFactory<unknown>>(keys === undefined ? [] : [['he-encrypt', heEncryptFactory({ context: keys.client }) as FilterFactory<unknown>], ['he-decrypt', heDecryptFactory({ context: keys.client }) as FilterFactory<unknown>]]);
  const engines: ClientEngine[] = [];
  const sites = Array.from({ length: HE_SITES }, (_, i) => `site-${i + 1}`);
  for (const name of sites) {
    engines.push(
      await ClientEngine.start({
        site: { name, org: 'bench' },
        link: memoryLink(() => hub.connect({ name, org: 'bench', kind: 'client' })),
        policy: openPolicy(filters, he),
        learners: new Map([['pass', { name: 'pass', args: { safeParse: (v: unknown) => ({ success: true, data: v }) } as never, create: () => learnerOf(HE_PARAMS) }]]),
        filters,
        workspace: ws,
      }),
    );
  }
  const admin = new AdminClient(await hub.connect({ name: 'admin@bench.org', org: 'bench', role: 'project_admin', kind: 'admin' }));
  const initial = encodeModel(model({ w: tensor(new Float32Array(HE_PARAMS), [HE_PARAMS]) }));
  const id = await admin.submit(jobBundle({ name: 'bench-he', rounds: HE_ROUNDS, min_clients: HE_SITES, round_timeout_s: 300, deploy: sites, learner: { name: 'pass', args: {} } }, initial));
  const rec = await server.waitForJob(id, 600_000);
  admin.close();
  if (rec.status !== 'FINISHED') throw new Error(`bench HE job ended ${rec.status}: ${rec.error?.message ?? ''}`);
  for (const e of engines) await e.close();
  await server.close();
  keys?.client.dispose();
  keys?.server.dispose();
  // Round 0 sends the plaintext initial model down; rounds 1.. move encrypted models both ways.
  const measured = rec.history.slice(1);
  return {
    roundMs: median(measured.map((h) => h.seconds * 1000)),
    aggregateMs: median(measured.map((h) => (h.aggregate_seconds ?? 0) * 1000)),
    bytesPerSite: median(measured.flatMap((h) => Object.values(h.bytes))),
  };
}

async function loginMs(attest: boolean, root: string): Promise<number> {
  const authority = attest ? createTestAuthority() : undefined;
  const options = (): AttestationOptions | undefined =>
    authority === undefined ? undefined : { policy: parseAttestationPolicy({ version: 1, require: ['snp'], snp: {} }), attesters: [new TestAttester(authority, { type: 'snp' })], trust: authority.trust, intervalMs: 0 };
  const hub = memoryHub(true);
  const ws = await mkdtemp(join(root, attest ? 'attest-' : 'noattest-'));
  const attestation = options();
  const server = await ServerEngine.start({ name: 'server', org: 'bench', workspace: ws, listener: hub, authorize: () => true, ...(attestation === undefined ? {} : { attestation }) });
  const times: number[] = [];
  for (let i = 0; i < LOGINS + 1; i++) {
    const name = `site-${i}`;
    const own = options();
    const t0 = performance.now();
    const e = await ClientEngine.start({ site: { name, org: 'bench' }, link: memoryLink(() => hub.connect({ name, org: 'bench', kind: 'client' })), policy: openPolicy(), learners: new Map(), filters: new Map(), workspace: ws, ...(own === undefined ? {} : { attestation: own }) });
    await e.registered(60_000);
    if (i > 0) times.push(performance.now() - t0); // the first login warms up
    await e.close();
  }
  await server.close();
  return median(times);
}

export const suite: Suite = {
  name: 'runtime',
  description: `scatter-and-gather round latency, ${SITES} sites, ${PARAMS / 1e6}M-parameter model (float32), 2 x ${ROUNDS - 1} measured rounds, interleaved: secure (mTLS + auth sessions + audit logs) vs clear (no TLS, no auth, no audit); server peak RSS; an encrypted (HE) round vs plaintext and a login with mutual attestation vs without (in-memory)`,
  async run(): Promise<Row[]> {
    const root = await mkdtemp(join(tmpdir(), 'flare-bench-rt-'));
    try {
      const yaml = `api_version: 3\nname: bench\nparticipants:\n  - name: server\n    type: server\n    org: bench\n${Array.from({ length: SITES }, (_, i) => `  - name: site-${i + 1}\n    type: client\n    org: bench\n`).join('')}  - name: admin@bench.org\n    type: admin\n    org: bench\n    role: project_admin\n`;
      const prov = await provision(parseProject(yaml), { workspace: root });
      const kits = new Map<string, Kit>();
      for (const k of prov.kits) kits.set(k.name, await loadKit(k.dir));
      // Interleaved (clear, secure, clear, secure) so that a change in machine load hits both alike; the
      // figure is the median over every measured round of both runs.
      const runs = { clear: [] as Awaited<ReturnType<typeof runConfig>>[], secure: [] as Awaited<ReturnType<typeof runConfig>>[] };
      for (let i = 0; i < 2; i++) {
        runs.clear.push(await runConfig(false, undefined, root));
        runs.secure.push(await runConfig(true, kits, root));
      }
      const merge = (rs: Awaited<ReturnType<typeof runConfig>>[]) => {
        const all = rs.flatMap((r) => r.rounds).sort((a, b) => a - b);
        return { medianMs: all[Math.floor(all.length / 2)]!, maxRssMiB: Math.max(...rs.map((r) => r.maxRssMiB)) };
      };
      const clear = merge(runs.clear);
      const secure = merge(runs.secure);
      const plainRound = await inMemoryRounds(false, root);
      const heRound = await inMemoryRounds(true, root);
      const plainLogin = await loginMs(false, root);
      const attestLogin = await loginMs(true, root);
      const heLabel = `${HE_SITES} sites, ${HE_PARAMS / 1000}K parameters, in-memory channels, median of ${HE_ROUNDS - 1} rounds`;
      return [
        { label: `encrypted round (CKKS, server without secret key; ${heLabel})`, value: heRound.roundMs, unit: 'ms', baseline: { label: 'the same round in plaintext', value: plainRound.roundMs }, higherIsBetter: false },
        { label: 'server aggregation per encrypted round (accept, mean, heAddDiff)', value: heRound.aggregateMs, unit: 'ms', baseline: { label: 'plaintext FedAvg', value: plainRound.aggregateMs }, higherIsBetter: false },
        { label: 'model bytes per site per encrypted round (down + up)', value: heRound.bytesPerSite / 1e6, unit: 'MB', baseline: { label: 'plaintext', value: plainRound.bytesPerSite / 1e6 }, higherIsBetter: false },
        { label: `site login with mutual SNP attestation (test authority; median of ${LOGINS}, in-memory)`, value: attestLogin, unit: 'ms', baseline: { label: 'login without attestation', value: plainLogin }, higherIsBetter: false },
        { label: 'round latency, secure (mtls + auth + audit)', value: secure.medianMs, unit: 'ms', baseline: { label: 'clear, no auth, no audit', value: clear.medianMs }, higherIsBetter: false, aim: '<= 1.15x (ratio >= 0.87)' },
        { label: 'server peak RSS, secure', value: secure.maxRssMiB, unit: 'MiB', baseline: { label: 'clear', value: clear.maxRssMiB }, higherIsBetter: false },
        { label: 'model bytes per round (10 sites, both directions)', value: (2 * SITES * PARAMS * 4) / 1e6, unit: 'MB' },
      ];
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  },
};
