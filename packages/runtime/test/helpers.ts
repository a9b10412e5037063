// Test helpers: in-memory federations on the runtime's own testing channels, sites with real @flare/policy
// policies, a tiny linear learner. The e2e tests run the real transport, kits and learners.
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { META, encodeModel, model, tensor, type AuditEventInput, type FilterFactory, type FLModel, type JsonValue, type Learner } from '@flare/core';
import { CrlStore, createRootCa, issueCertificate, loadKit, parseProject, provision, type Kit } from '@flare/pki';
import type { TestParticipant } from '@flare/pki/testing';
import { ResourceManager, parseAuthorizationPolicy, parseComponentPolicy, parsePrivacyPolicy, parseResourcePolicy } from '@flare/policy';
import { afterEach } from 'vitest';
import { z } from 'zod';
import { AdminClient } from '../src/admin/client.js';
import type { JobBundle } from '../src/protocol/bundle.js';
import { jobTrustFromKit, type AdminSigningKit, type JobTrust } from '../src/protocol/job-trust.js';
import type { PeerIdentity } from '../src/protocol/channel.js';
import { listenForParticipants } from '../src/protocol/network.js';
import { watchCrlFile } from '../src/server/crl-watch.js';
import { ServerEngine, type ServerEngineOptions } from '../src/server/engine.js';
import { ClientEngine, type ClientEngineOptions } from '../src/site/engine.js';
import type { LearnerFactory, SitePolicy } from '../src/site/policy.js';
import type { CyclicSiteIdentity } from '../src/workflows/cyclic-hop.js';
import { memoryHub, memoryLink, type MemoryHub } from '../src/testing/channels.js';

export async function tempDir(prefix = 'flare-rt-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Learner: moves w towards `target` by half the distance each round; validates |w - target|. */
export function towardsLearner(target: number, opts: { delayMs?: number; fail?: boolean | (() => boolean); onClose?: () => void; steps?: number; update?: (w: Float32Array) => FLModel } = {}): Learner & { close(): Promise<void> } {
  return {
    async train(global, ctx) {
      if (opts.delayMs !== undefined) {
        await new Promise((r, j) => {
          const t = setTimeout(r, opts.delayMs);
          ctx.signal?.addEventListener('abort', () => {
            clearTimeout(t);
            j(ctx.signal?.reason);
          });
        });
      }
      if (opts.fail === true || (typeof opts.fail === 'function' && opts.fail())) throw new Error('learner broke');
      const w = global.params.get('w')!.data as Float32Array;
      if (opts.update !== undefined) return opts.update(w);
      const d = Float32Array.from(w, (x) => (target - x) / 2);
      return model({ w: tensor(d, [d.length]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: opts.steps ?? 1 });
    },
    async validate(global) {
      const w = global.params.get('w')!.data as Float32Array;
      return { loss: Math.abs(w[0]! - target), accuracy: 1 / (1 + Math.abs(w[0]! - target)), n: 10 };
    },
    async close() {
      opts.onClose?.();
    },
  };
}

export function learnerFactory(target: number, opts: Parameters<typeof towardsLearner>[1] = {}): LearnerFactory<unknown> {
  return { name: 'towards', args: z.object({}).passthrough(), create: () => towardsLearner(target, opts) };
}

export function initialModelBytes(): Uint8Array {
  return encodeModel(model({ w: tensor(new Float32Array([0, 0]), [2]) }));
}

/** The test project: a root CA, the trust every test site checks job signatures with, and admin kits. */
export const PROJECT = 'test_project';
/** The test project's root CA (certificate and key), e.g. to issue CRLs. */
export const TEST_ROOT = await createRootCa({ commonName: PROJECT });
const root = TEST_ROOT;
/** How test sites (and servers that check) verify job and abort signatures. */
export const JOB_TRUST: JobTrust = jobTrustFromKit({ project: PROJECT, rootCaPem: root.certPem });
const kits = new Map<string, Promise<AdminSigningKit>>();

/** An admin's signing kit issued by the test root (cached per identity); `project` binds what it signs. */
export function adminKit(who: { readonly name: string; readonly org: string; readonly role?: string | undefined }, project = PROJECT): Promise<AdminSigningKit> {
  const key = `${who.name}|${who.org}|${who.role ?? ''}|${project}`;
  let kit = kits.get(key);
  if (kit === undefined) {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    kit = issueCertificate({ issuer: root, subject: { name: who.name, org: who.org, type: 'admin', role: who.role ?? 'project_admin' }, publicKey: pair.publicKey }).then((certPem) => ({ project, certPem, privateKey: pair.privateKey }));
    kits.set(key, kit);
  }
  return kit;
}

/**
 * A site's kit identity for signing cyclic hops: a client certificate for `name` issued by `issuer` (default the
 * test root), a fresh P-256 key, and the newest CRL `crl()` returns (none by default). Returns the serial too.
 */
export async function siteIdentity(name: string, o: { issuer?: typeof TEST_ROOT; crl?: () => string | undefined } = {}): Promise<CyclicSiteIdentity & { serial: string }> {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueCertificate({ issuer: o.issuer ?? root, subject: { name, org: `org-${name}`, type: 'client' }, publicKey: pair.publicKey });
  return { project: PROJECT, privateKey: pair.privateKey, certPem, rootCaPem: root.certPem, ...(o.crl === undefined ? {} : { crl: o.crl }), serial: new X509Certificate(certPem).serialNumber.toLowerCase().replace(/^0+/, '') };
}

/** An admin client over the hub that signs every job and abort with `who`'s kit, as `flare admin` does. */
export async function signingAdmin(hub: MemoryHub, who: PeerIdentity = ADMIN, timeoutMs = 10_000): Promise<AdminClient> {
  return new AdminClient(await hub.connect(who), { timeoutMs, signer: await adminKit(who) });
}

export interface PolicyOptions {
  /** Rights of project_admin at this site (FLARE authorization.json), default: everything. */
  permissions?: Record<string, string>;
  scopes?: Array<{ name: string; task_result_filters?: JsonValue[]; task_data_filters?: JsonValue[]; secure_aggregation?: 'allowed' | 'required'; share_local_model?: boolean }>;
  /** A site without privacy.json. */
  noPrivacy?: boolean;
  allowList?: string[];
  byocConsent?: boolean;
  maxJobs?: number;
  maxWallTimeS?: number;
  filters?: ReadonlyMap<string, FilterFactory<unknown>>;
}

/** A site policy from real @flare/policy files (parsed from objects). */
export function sitePolicy(o: PolicyOptions = {}): SitePolicy {
  const authorization = parseAuthorizationPolicy({ format_version: '1.0', permissions: { project_admin: o.permissions ?? 'any', lead: 'any', member: 'none' } });
  const privacy = o.noPrivacy === true ? undefined : parsePrivacyPolicy({ scopes: o.scopes ?? [{ name: 'public' }], default_scope: (o.scopes ?? [{ name: 'public' }])[0]!.name }, { registry: (o.filters ?? new Map()) as ReadonlyMap<string, FilterFactory> });
  const components = parseComponentPolicy({ allow: o.allowList ?? ['towards', 'scale-by'], byoc: o.byocConsent ?? false });
  const resources = new ResourceManager(parseResourcePolicy({ limits: { max_concurrent_jobs: o.maxJobs ?? 2, ...(o.maxWallTimeS === undefined ? {} : { max_wall_time_s: o.maxWallTimeS }) } }));
  return { authorization: () => authorization, privacy: () => privacy, components: () => components, resources, jobTrust: JOB_TRUST };
}

/** An audit hook recording events with ids e1, e2, ... */
export function auditRecorder(prefix: string): { hook: (e: AuditEventInput) => string; events: Array<AuditEventInput & { id: string }> } {
  const events: Array<AuditEventInput & { id: string }> = [];
  return {
    events,
    hook: (e) => {
      const id = `${prefix}-${events.length + 1}`;
      events.push({ ...e, id });
      return id;
    },
  };
}

export const SERVER: PeerIdentity = { name: 'server', org: 'nvidia', type: 'server' };
export const ADMIN: PeerIdentity = { name: 'admin@nvidia.com', org: 'nvidia', role: 'project_admin', type: 'admin' };
export const site = (n: number): PeerIdentity => ({ name: `site-${n}`, org: `org${n}`, type: 'client' });

export function jobDefinition(over: Record<string, JsonValue> = {}): { [k: string]: JsonValue } {
  return { name: 'towards', rounds: 3, min_clients: 2, round_timeout_s: 10, deploy: ['site-1', 'site-2', 'site-3'], learner: { name: 'towards', args: {} }, ...over };
}

/** A job bundle as `readJobFolder` makes it. */
export function bundle(definition: JsonValue = jobDefinition(), files: ReadonlyMap<string, Uint8Array> = new Map(), initial = initialModelBytes()): JobBundle {
  return { meta: new TextEncoder().encode(JSON.stringify(definition)), model: initial, files };
}

/** Polls `check` until it returns a value, at most `ms` milliseconds. */
export async function until<T>(check: () => T | undefined | Promise<T | undefined>, ms = 60_000, what = 'condition'): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const open: Array<{ close(): Promise<void> }> = [];
/** Closes every engine the helpers started (call in afterEach). */
export async function closeAll(): Promise<void> {
  for (const x of open.splice(0).reverse()) await x.close();
}

export async function startServer(workspace: string, o: Partial<ServerEngineOptions> & { hub?: MemoryHub; deny?: string[] } = {}): Promise<{ server: ServerEngine; hub: MemoryHub; audit: ReturnType<typeof auditRecorder> }> {
  const hub = o.hub ?? memoryHub(SERVER);
  const audit = auditRecorder('srv');
  const { deny = [], ...rest } = o;
  const server = await ServerEngine.start({
    name: 'server',
    org: 'nvidia',
    workspace,
    listener: hub,
    authorize: ({ user, right }) => !deny.includes(`${user.name}:${right}`),
    audit: audit.hook,
    ...rest,
    limits: { deployWaitMs: 200, schedulerIntervalMs: 50, ...rest.limits },
  });
  open.push(server);
  return { server, hub, audit };
}

export interface SiteOptions extends Partial<Omit<ClientEngineOptions, 'site' | 'link'>> {
  learner?: LearnerFactory<unknown>;
  giveUpAfterMs?: number;
}

export async function startSite(n: number, hub: MemoryHub, o: SiteOptions = {}): Promise<{ engine: ClientEngine; audit: ReturnType<typeof auditRecorder> }> {
  const audit = auditRecorder(`s${n}`);
  const { learner, giveUpAfterMs, ...rest } = o;
  const engine = await ClientEngine.start({
    site: { name: `site-${n}`, org: `org${n}` },
    link: memoryLink(() => hub.connect(site(n)), { retryMs: 20, ...(giveUpAfterMs === undefined ? {} : { giveUpAfterMs }) }),
    policy: sitePolicy(),
    learners: new Map([['towards', learner ?? learnerFactory(n)]]),
    filters: new Map(),
    workspace: await tempDir(),
    audit: audit.hook,
    ...rest,
    limits: { heartbeatMs: 200, ...rest.limits },
  });
  open.push(engine);
  return { engine, audit };
}

export interface Federation {
  server: ServerEngine;
  hub: MemoryHub;
  admin: AdminClient;
  serverAudit: ReturnType<typeof auditRecorder>;
  sites: Map<string, { engine: ClientEngine; audit: ReturnType<typeof auditRecorder> }>;
  workspace: string;
}

/** A server, sites 1..n (each with its options) registered, and an admin. */
export async function federation(sites: SiteOptions[] = [{}, {}, {}], o: { admin?: PeerIdentity; server?: Partial<ServerEngineOptions> & { deny?: string[] } } = {}): Promise<Federation> {
  const workspace = await tempDir();
  const { server, hub, audit } = await startServer(workspace, o.server);
  const started = new Map<string, { engine: ClientEngine; audit: ReturnType<typeof auditRecorder> }>();
  for (const [i, s] of sites.entries()) started.set(`site-${i + 1}`, await startSite(i + 1, hub, s));
  await Promise.all([...started.values()].map((s) => s.engine.registered(60_000)));
  const admin = await signingAdmin(hub, o.admin ?? ADMIN);
  return { server, hub, admin, serverAudit: audit, sites: started, workspace };
}

/** Provisions `projectYaml` into a temporary workspace and loads every kit it wrote, by participant name. */
export async function provisionKits(projectYaml: string): Promise<Map<string, Kit>> {
  const r = await provision(parseProject(projectYaml), { workspace: await tempDir() });
  const kits = new Map<string, Kit>();
  for (const k of r.kits) kits.set(k.name, await loadKit(join(r.prodDir, k.name)));
  return kits;
}

/** A list the test pushes what it opens onto; after each test they are closed, newest first. Call at module level. */
export function closedAfterEach(): Array<{ close(): Promise<unknown> }> {
  const open: Array<{ close(): Promise<unknown> }> = [];
  afterEach(async () => {
    for (const x of open.splice(0).reverse()) await x.close();
  });
  return open;
}

/**
 * Forwarding relays in a chain as project.yml participants: relay-top below the server, relay-1 below relay-top,
 * site-1 behind relay-1, site-2 behind relay-top, site-3 direct (ports 8101/8102 are what kits name; tests dial
 * the ports they listen on).
 */
export const FORWARDING_CHAIN: readonly TestParticipant[] = [
  { name: 'relay-top', type: 'relay', org: 'nvidia', listening_host: 'localhost' },
  { name: 'relay-1', type: 'relay', org: 'nvidia', listening_host: 'localhost', parent: 'relay-top', connect_to: { host: 'localhost', port: 8101 } },
  { name: 'site-1', type: 'client', org: 'org1', parent: 'relay-1', connect_to: { host: 'localhost', port: 8102 } },
  { name: 'site-2', type: 'client', org: 'org2', parent: 'relay-top', connect_to: { host: 'localhost', port: 8101 } },
  { name: 'site-3', type: 'client', org: 'org3' },
];

/**
 * A real server (mtls + @flare/auth) of `kit` whose logins and welcome use its CrlStore (seeded with `seed`),
 * watching `<its workspace>/crl.pem`; what it opens is pushed onto `open` (a {@link closedAfterEach} list).
 */
export async function crlWatchingServer(kit: Kit, open: Array<{ close(): Promise<unknown> }>, seed?: string): Promise<{ server: ServerEngine; port: number; crls: CrlStore; file: string; audit: ReturnType<typeof auditRecorder> }> {
  const dir = await tempDir();
  const crls = await CrlStore.open({ rootCaPem: kit.rootCaPem, file: join(dir, 'crl-state.json'), ...(seed === undefined ? {} : { seed }) });
  const audit = auditRecorder('srv');
  const crl = (): string | undefined => crls.current?.pem;
  const listener = await listenForParticipants({ kit, port: 0, crl });
  const server = await ServerEngine.start({ name: 'localhost', org: 'nvidia', workspace: dir, listener, authorize: () => true, audit: audit.hook, crl });
  open.push(server);
  const file = join(dir, 'crl.pem');
  const watch = watchCrlFile({ file, store: crls, onNewer: (c) => server.applyCrl(c), audit: audit.hook, intervalMs: 50 });
  open.push({ close: async () => watch.close() });
  return { server, port: listener.port, crls, file, audit };
}
