// Hierarchical aggregation relays (issue #18 item 1, second mode): real mtls sockets and @flare/auth sessions,
// a server, aggregating relays (one chained under another) with their own sites, and the server's checks of a
// relay's claims (the sites it names, the steps it counts with).
import { META, decodeModel, model, tensor, type AuditEventInput, type FLModel } from '@flare/core';
import { expectFlareCode, expectFlareCodeAsync } from '@flare/core/testing';
import { parseProject, type Kit } from '@flare/pki';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/admin/client.js';
import { parseJobDefinition } from '../src/protocol/job-definition.js';
import { jobTrustFromKit } from '../src/protocol/job-trust.js';
import { connectToServer, linkToServer, listenForParticipants } from '../src/protocol/network.js';
import { startAggregatingRelay, whyRelayCannotRun, type AggregatingRelay } from '../src/relay/aggregate.js';
import { aggregatingRelayOf, relayModeOf, relayTreeOf } from '../src/relay/path.js';
import { parseAggregationPolicy, policyAggregator } from '../src/server/aggregation-policy.js';
import { ServerEngine } from '../src/server/engine.js';
import { RELAY_SITES_META, checkRelayContribution } from '../src/server/relay-contributions.js';
import { RelayView } from '../src/server/relay-status.js';
import { SiteRegistry } from '../src/server/registry.js';
import { ClientEngine } from '../src/site/engine.js';
import type { LearnerFactory } from '../src/site/policy.js';
import { auditRecorder, bundle, jobDefinition, learnerFactory, sitePolicy, tempDir, until , closedAfterEach, provisionKits } from './helpers.js';

const PROJECT = `api_version: 3
name: rt-relay-agg
description: relays in aggregation mode
participants:
  - name: localhost
    type: server
    org: nvidia
    fed_learn_port: 8002
  - name: agg-a
    type: relay
    org: nvidia
    mode: aggregate
    listening_host: localhost
  - name: agg-b
    type: relay
    org: nvidia
    mode: aggregate
    listening_host: localhost
  - name: agg-c
    type: relay
    org: nvidia
    mode: aggregate
    listening_host: localhost
    parent: agg-b
  - name: fwd
    type: relay
    org: nvidia
    listening_host: localhost
  - name: site-1
    type: client
    org: org1
    parent: agg-a
  - name: site-2
    type: client
    org: org2
    parent: agg-a
  - name: site-3
    type: client
    org: org3
    parent: agg-b
  - name: site-4
    type: client
    org: org4
    parent: agg-c
  - name: site-5
    type: client
    org: org5
  - name: admin@nvidia.com
    type: admin
    org: nvidia
    role: project_admin
`;

let kits: Map<string, Kit>;
const open = closedAfterEach();

beforeAll(async () => {
  kits = await provisionKits(PROJECT);
});

const kit = (name: string): Kit => kits.get(name)!;
const local = (port: number): Array<{ host: string; port: number }> => [{ host: '127.0.0.1', port }];
const trust = (k: Kit): ReturnType<typeof jobTrustFromKit> => jobTrustFromKit({ project: k.project, rootCaPem: k.rootCaPem });
const FAST = { heartbeatMs: 500, schedulerIntervalMs: 50, deployWaitMs: 100 } as const;

async function aggRelay(name: string, upstreamPort: number, audit?: (e: AuditEventInput) => string): Promise<AggregatingRelay> {
  const k = kit(name);
  const r = await startAggregatingRelay({
    kit: k,
    port: 0,
    upstream: local(upstreamPort),
    workspace: await tempDir(),
    policy: { ...sitePolicy(), jobTrust: trust(k) },
    filters: new Map(),
    limits: FAST,
    backoff: { initialMs: 50, maxMs: 200 },
    ...(audit === undefined ? {} : { audit }),
  });
  open.push(r);
  await r.upstream.registered(20_000);
  return r;
}

async function siteAt(name: string, port: number, learner: LearnerFactory<unknown> = learnerFactory(1)): Promise<ClientEngine> {
  const k = kit(name);
  const engine = await ClientEngine.start({
    site: { name, org: k.participant.org },
    link: linkToServer({ kit: k, targets: local(port), backoff: { initialMs: 50, maxMs: 200 } }),
    policy: { ...sitePolicy(), jobTrust: trust(k) },
    learners: new Map([['towards', learner]]),
    filters: new Map(),
    workspace: await tempDir(),
    limits: FAST,
  });
  open.push(engine);
  await engine.registered(20_000);
  return engine;
}

describe('provisioning the aggregation tree', () => {
  it('names the aggregating relay as the server identity of what is below it, and writes each receiver its relay_tree', () => {
    expect(relayModeOf(kit('agg-a'))).toBe('aggregate');
    expect(relayModeOf(kit('fwd'))).toBe('forward');
    expect(kit('site-1').server.name).toBe('agg-a');
    expect(aggregatingRelayOf(kit('site-1'))).toBe('agg-a');
    expect(aggregatingRelayOf(kit('agg-c'))).toBe('agg-b');
    expect(aggregatingRelayOf(kit('site-5'))).toBeUndefined();
    expect(aggregatingRelayOf(kit('agg-a'))).toBeUndefined();
    expect(Object.fromEntries(relayTreeOf(kit('localhost')))).toEqual({ 'agg-a': ['site-1', 'site-2'], 'agg-b': ['site-3', 'site-4'], 'agg-c': ['site-4'] });
    expect(Object.fromEntries(relayTreeOf(kit('agg-b')))).toEqual({ 'agg-b': ['site-3', 'site-4'], 'agg-c': ['site-4'] });
  });

  it('refuses a chain that mixes modes, and an unknown mode (E_PROJECT_INVALID)', () => {
    const mixed = PROJECT.replace('    listening_host: localhost\n    parent: agg-b', '    listening_host: localhost\n    parent: fwd');
    expectFlareCode(() => parseProject(mixed), 'E_PROJECT_INVALID');
    expectFlareCode(() => parseProject(PROJECT.replace('mode: aggregate', 'mode: sideways')), 'E_PROJECT_INVALID');
  });

  it('refuses to run an aggregating relay from a forwarding relay kit or a site kit (E_RUNTIME_CONFIG)', async () => {
    for (const name of ['fwd', 'site-1']) {
      await expectFlareCodeAsync(startAggregatingRelay({ kit: kit(name), port: 0, workspace: await tempDir(), policy: sitePolicy(), filters: new Map() }), 'E_RUNTIME_CONFIG');
    }
  });
});

describe("the server's checks of a relay's contribution", () => {
  const update = (w: number, steps: number, sites?: readonly string[]): FLModel =>
    model({ w: tensor(new Float32Array([w]), [1]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: steps, ...(sites === undefined ? {} : { [RELAY_SITES_META]: [...sites] }) });
  const tree = new Map([['agg-a', ['site-1', 'site-2']]]);

  it('refuses a relay naming a site not provisioned below it, naming one twice or none, and a site claiming to aggregate (E_RUNTIME_RELAY_WEIGHT)', () => {
    expectFlareCode(() => checkRelayContribution(update(1, 1, ['site-1', 'site-9']), 'agg-a', tree, 10), 'E_RUNTIME_RELAY_WEIGHT');
    expectFlareCode(() => checkRelayContribution(update(1, 1, ['site-1', 'site-1']), 'agg-a', tree, 10), 'E_RUNTIME_RELAY_WEIGHT');
    expectFlareCode(() => checkRelayContribution(update(1, 1), 'agg-a', tree, 10), 'E_RUNTIME_RELAY_WEIGHT');
    expectFlareCode(() => checkRelayContribution(update(1, 1, []), 'agg-a', tree, 10), 'E_RUNTIME_RELAY_WEIGHT');
    expectFlareCode(() => checkRelayContribution(update(1, 1, ['site-1']), 'site-5', tree, 10), 'E_RUNTIME_RELAY_WEIGHT');
  });

  it('refuses a status report of sites from a site, or naming a site not provisioned below the relay (E_RUNTIME_RELAY_WEIGHT)', () => {
    const view = new RelayView(tree);
    expectFlareCode(() => view.report('site-5', ['site-1']), 'E_RUNTIME_RELAY_WEIGHT');
    expectFlareCode(() => view.report('agg-a', ['site-1', 'site-3']), 'E_RUNTIME_RELAY_WEIGHT');
    view.report('agg-a', ['site-2', 'site-1']);
    expect(view.sightings(new SiteRegistry({ timeoutMs: 1000 })).map((x) => [x.name, x.behind, x.relayLost])).toEqual([['site-1', 'agg-a', true], ['site-2', 'agg-a', true]]);
  });

  it('caps a hostile relay that claims a huge weight at its named sites\' caps: it cannot replace the model (E_RUNTIME_RELAY_WEIGHT audited)', () => {
    const audit = auditRecorder('srv');
    const global = model({ w: tensor(new Float32Array([0]), [1]) }, 'full');
    const def = jobDefinition();
    const agg = policyAggregator(parseAggregationPolicy({ require: 'none', default: { name: 'fedavg' }, max_steps: 10 }), tree)(
      parseJobDefinition(def),
      { global, round: 0, audit: audit.hook },
    );
    agg.beginRound?.(0);
    agg.accept(update(1, 10), { from: 'site-5', round: 0 });
    // One site behind agg-a claims 1e9 steps: it counts as at most 10 (one named site x max_steps 10).
    agg.accept(update(-1, 1e9, ['site-1']), { from: 'agg-a', round: 0 });
    const w = (agg.result().params.get('w')!.data as Float32Array)[0]!;
    expect(w).toBeCloseTo(0, 5);
    const capped = audit.events.find((e) => e.action === 'relay_contribution');
    expect(capped?.data).toMatchObject({ relay: 'agg-a', sites: ['site-1'], steps: 1e9, cap: 10, code: 'E_RUNTIME_RELAY_WEIGHT' });
    expectFlareCode(() => agg.accept(update(-1, 1, ['site-3']), { from: 'agg-a', round: 0 }), 'E_RUNTIME_RELAY_WEIGHT');
  });
});

describe('a federation with aggregating relays', () => {
  it('runs a whole job: two aggregating relays (one with a chained relay below it) and a direct site; the audit logs show the tree', async () => {
    const serverAudit = auditRecorder('srv');
    const relayAudit = auditRecorder('agg-a');
    const listener = await listenForParticipants({ kit: kit('localhost'), port: 0 });
    const server = await ServerEngine.start({
      name: 'localhost', org: 'nvidia', workspace: await tempDir(), listener, authorize: () => true, limits: FAST,
      relays: relayTreeOf(kit('localhost')), aggregation: parseAggregationPolicy({ max_steps: 100 }), audit: serverAudit.hook,
    });
    open.push(server);
    const a = await aggRelay('agg-a', listener.port, relayAudit.hook);
    const b = await aggRelay('agg-b', listener.port);
    const c = await aggRelay('agg-c', b.port);
    await siteAt('site-1', a.port);
    await siteAt('site-2', a.port);
    await siteAt('site-3', b.port);
    await siteAt('site-4', c.port);
    await siteAt('site-5', listener.port);
    await until(() => (a.sites().length === 2 && b.sites().length === 2 && c.sites().length === 1 ? true : undefined), 20_000, 'sites registered with their relays');
    const admin = new AdminClient(await connectToServer({ kit: kit('admin@nvidia.com'), targets: local(listener.port) }), { signer: kit('admin@nvidia.com') });
    open.push({ close: async () => admin.close() });
    const id = await admin.submit(bundle(jobDefinition({ deploy: ['@ALL'], rounds: 2, min_clients: 3 })));
    const rec = await server.waitForJob(id, 60_000);
    expect(rec.error).toBeUndefined();
    expect(rec.status).toBe('FINISHED');
    // The server aggregated three contributors: two relays and the direct site.
    expect([...rec.history[1]!.contributors].sort()).toEqual(['agg-a', 'agg-b', 'site-5']);
    // Its audit log names the sites behind each relay's update, the chained relay's site included.
    const contributions = serverAudit.events.filter((e) => e.action === 'relay_contribution' && e.job === id);
    const sitesOf = (relay: string): unknown => contributions.find((e) => e.data?.['relay'] === relay)?.data?.['sites'];
    expect(sitesOf('agg-a')).toEqual(['site-1', 'site-2']);
    expect(sitesOf('agg-b')).toEqual(['site-3', 'site-4']);
    // Two rounds x two relays.
    expect(contributions).toHaveLength(4);
    // The relay's own audit log records its round of its sites.
    expect(relayAudit.events.filter((e) => e.action === 'relay_round_aggregated').map((e) => e.data?.['sites'])).toEqual([['site-1', 'site-2'], ['site-1', 'site-2']]);
    // Every site trained towards 1 with half steps: after two rounds the model is 0.75.
    const final = decodeModel(await admin.download(id));
    expect((final.params.get('w')!.data as Float32Array)[0]).toBeCloseTo(0.75, 3);

    // `flare admin sites` shows the tree: each site behind its aggregating relay (a chained relay's sites behind
    // the relay the server sees); when a relay goes away its sites are listed behind a lost relay.
    const behind = async (): Promise<Record<string, string>> =>
      Object.fromEntries((await admin.sites()).filter((x) => x.behind !== undefined).map((x) => [x.name, `${x.behind!}${x.relayLost === true ? ' lost' : ''}`]));
    expect(await until(async () => ((await behind())['site-4'] === 'agg-b' ? behind() : undefined), 20_000, 'the relays to report their sites')).toEqual({ 'site-1': 'agg-a', 'site-2': 'agg-a', 'site-3': 'agg-b', 'site-4': 'agg-b' });
    await a.close();
    expect(await until(async () => ((await behind())['site-1'] === 'agg-a lost' ? behind() : undefined), 20_000, 'agg-a to be lost')).toMatchObject({ 'site-1': 'agg-a lost', 'site-2': 'agg-a lost', 'site-3': 'agg-b' });
  });

  it('refuses at the relay\'s deploy, with E_RUNTIME_RELAY_MODE, a job it cannot aggregate (a server optimizer, encrypted updates): the server records the refusal and the job runs with its direct site', async () => {
    const listener = await listenForParticipants({ kit: kit('localhost'), port: 0 });
    const server = await ServerEngine.start({
      name: 'localhost', org: 'nvidia', workspace: await tempDir(), listener, authorize: () => true, limits: FAST,
      relays: relayTreeOf(kit('localhost')), aggregation: parseAggregationPolicy({ require: 'none' }),
    });
    open.push(server);
    const a = await aggRelay('agg-a', listener.port);
    await siteAt('site-1', a.port);
    await siteAt('site-5', listener.port);
    await until(() => (a.sites().length === 1 ? true : undefined), 20_000, 'site-1 registered with agg-a');
    const admin = new AdminClient(await connectToServer({ kit: kit('admin@nvidia.com'), targets: local(listener.port) }), { signer: kit('admin@nvidia.com') });
    open.push({ close: async () => admin.close() });
    const id = await admin.submit(bundle(jobDefinition({ deploy: ['agg-a', 'site-5'], rounds: 1, min_clients: 1, aggregator: { name: 'fedadam' } })));
    const rec = await server.waitForJob(id, 60_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.refused['agg-a']).toMatch(/^E_RUNTIME_RELAY_MODE: .*server optimizer \(fedadam\)/);
    expect(rec.history[0]!.contributors).toEqual(['site-5']);
  });

  it('a relay whose connection to the server is cut mid-round reconnects and goes on with the job: its sites keep it (deployed once, no restart), it contributes again', async () => {
    const serverAudit = auditRecorder('srv');
    const relayAudit = auditRecorder('agg-a');
    const listener = await listenForParticipants({ kit: kit('localhost'), port: 0 });
    const server = await ServerEngine.start({
      name: 'localhost', org: 'nvidia', workspace: await tempDir(), listener, authorize: () => true, limits: FAST,
      relays: relayTreeOf(kit('localhost')), aggregation: parseAggregationPolicy({ require: 'none' }), audit: serverAudit.hook,
    });
    open.push(server);
    const a = await aggRelay('agg-a', listener.port, relayAudit.hook);
    // The relay's sites take a while to train, so the cut falls inside their round.
    for (const name of ['site-1', 'site-2']) {
      const k = kit(name);
      const engine = await ClientEngine.start({
        site: { name, org: k.participant.org },
        link: linkToServer({ kit: k, targets: local(a.port), backoff: { initialMs: 50, maxMs: 200 } }),
        policy: { ...sitePolicy(), jobTrust: trust(k) },
        learners: new Map([['towards', learnerFactory(1, { delayMs: 300 })]]),
        filters: new Map(),
        workspace: await tempDir(),
        limits: FAST,
      });
      open.push(engine);
      await engine.registered(20_000);
    }
    // site-5 alone meets min_clients: it holds its round-1 update until the relay has resumed the job, or the
    // job could finish without the relay on a busy machine (what the test is about would then never happen).
    let relayBack!: () => void;
    const resumed = new Promise<void>((r) => (relayBack = r));
    const held = learnerFactory(1);
    const holding: LearnerFactory<unknown> = {
      ...held,
      create: async (args, env) => {
        const inner = await held.create(args, env);
        return {
          ...inner,
          train: async (global, ctx) => {
            if (ctx.round >= 1) await resumed;
            return inner.train(global, ctx);
          },
        };
      },
    };
    await siteAt('site-5', listener.port, holding);
    const admin = new AdminClient(await connectToServer({ kit: kit('admin@nvidia.com'), targets: local(listener.port) }), { signer: kit('admin@nvidia.com') });
    open.push({ close: async () => admin.close() });
    const id = await admin.submit(bundle(jobDefinition({ deploy: ['agg-a', 'site-5'], rounds: 4, min_clients: 1, round_timeout_s: 120 })));
    void until(() => relayAudit.events.find((e) => e.action === 'relay_job_resumed' && e.job === id), 120_000, 'relay_job_resumed').then(relayBack, relayBack);
    // Round 1 is sent to the relay: cut its connection (from the server's side) while its sites train.
    await until(() => serverAudit.events.find((e) => e.action === 'task_sent' && e.job === id && e.data?.['site'] === 'agg-a' && e.data?.['round'] === 1), 30_000, 'round 1 sent to agg-a');
    server.registry.get('agg-a')!.channel.close();
    const rec = await server.waitForJob(id, 180_000);
    expect(rec.error).toBeUndefined();
    expect(rec.status).toBe('FINISHED');
    // The relay parked the job at its sites and resumed it when the server offered it again.
    expect(relayAudit.events.filter((e) => e.job === id).map((e) => e.action)).toEqual(expect.arrayContaining(['relay_job_parked', 'relay_job_resumed']));
    expect(relayAudit.events.some((e) => e.action === 'relay_job_released')).toBe(false);
    // Each site below was deployed once: the job was not restarted there.
    for (const s of ['site-1', 'site-2']) expect(relayAudit.events.filter((e) => e.action === 'deploy_sent' && e.job === id && e.data?.['site'] === s)).toHaveLength(1);
    // After the reconnect the relay contributed again, for its two sites.
    expect(rec.history.at(-1)!.contributors).toContain('agg-a');
    const last = serverAudit.events.filter((e) => e.action === 'relay_contribution' && e.job === id).at(-1);
    expect(last?.data?.['sites']).toEqual(['site-1', 'site-2']);
  });

  it('whyRelayCannotRun names what an aggregating relay cannot do: another workflow, a server optimizer (also after a robust aggregator or inside norm-bound), HE', () => {
    const def = (over: Record<string, unknown>) => parseJobDefinition({ ...jobDefinition(), ...over });
    expect(whyRelayCannotRun(def({}))).toBeUndefined();
    expect(whyRelayCannotRun(def({ aggregator: { name: 'trimmed-mean', args: { beta: 0.1 } } }))).toBeUndefined();
    expect(whyRelayCannotRun(def({ workflow: 'cyclic' }))).toMatch(/scatter_and_gather only/);
    expect(whyRelayCannotRun(def({ aggregator: { name: 'fedyogi' } }))).toMatch(/server optimizer \(fedyogi\)/);
    expect(whyRelayCannotRun(def({ aggregator: { name: 'median', serverOptimizer: { name: 'fedavgm' } } }))).toMatch(/server optimizer \(fedavgm\)/);
    expect(whyRelayCannotRun(def({ aggregator: { name: 'norm-bound', args: 'adaptive', aggregator: { name: 'fedadagrad' } } }))).toMatch(/server optimizer \(fedadagrad\)/);
    expect(whyRelayCannotRun(def({ task_result_filters: [{ name: 'he-encrypt', args: {} }] }))).toMatch(/encrypts updates/);
  });

  it('refuses a site behind an aggregating relay that logs in to the server itself, and a forwarding relay logging in as a contributor', async () => {
    const listener = await listenForParticipants({ kit: kit('localhost'), port: 0 });
    open.push(listener);
    // site-1's kit names agg-a as whom it logs in to: the server is not agg-a.
    await expectFlareCodeAsync(connectToServer({ kit: kit('site-1'), targets: local(listener.port) }), 'E_CERT_WRONG_TYPE');
    await expectFlareCodeAsync(connectToServer({ kit: kit('fwd'), targets: local(listener.port) }), 'E_CERT_UNTRUSTED');
  });
});
