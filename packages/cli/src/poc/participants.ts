import { access, mkdir, readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { FlareRuntimeError, type AggregationScheme, type FilterFactory, type AuditHook } from '@flare/core';
import { BUDGET_FOLDER, openPrivacyLedger, type LedgerHead, type PrivacyLedger } from '@flare/filters-dp';
import type * as FiltersHeModule from '@flare/filters-he';
import type * as CcAttest from '@flare/cc-attest';
import { CRL_STATE_FILE, CrlStore, loadKit, type Kit } from '@flare/pki';
import { PolicyFile, loadSitePolicies, parseAuthorizationPolicy, type AuthorizationPolicy } from '@flare/policy';
import {
  AdminClient,
  ClientEngine,
  ServerEngine,
  authorizerFromPolicy,
  checkpointKeyFromKit,
  connectToServer,
  createLogger,
  jobTrustFromKit,
  learnerFactories,
  linkToServer,
  listenForParticipants,
  openSiteAuthentication,
  loadOptionalPeer,
  parseAggregationPolicy,
  secureAggregation,
  secureAggregationSite,
  signedCyclicSite,
  watchCrlFile,
  relayTreeOf,
  sitePolicyFromFiles,
  type AggregatorFactory,
  type ClosableLogger,
  type AnchorLog,
  type CheckpointHead,
  type JobLedgerEntry,
  type JobTrust,
  type LearnerFactory,
  type RoundRecord,
  type SiteWorkflow,
} from '@flare/runtime';
import { selectBackend } from '@flare/tfjs';
import { TFJS_LEARNER, tfjsLearnerFactory } from '../data-sources.js';
import { attestationFor } from './attestation-config.js';
import type { SiteData } from './dataset.js';
import { secaggExitHook, secaggRecordHook } from './secagg-hook.js';
import { readSiteConfig, type SiteConfig } from './site-config.js';
import { spamLearnerFactory } from './spam-model.js';
import { loadSiteDataOffThread } from './site-data-thread.js';

type FiltersHe = typeof FiltersHeModule;
/** @flare/filters-he, imported only when a kit holds HE keys (an optional peer). */
const filtersHe = (why: string): Promise<FiltersHe> => loadOptionalPeer<FiltersHe>('@flare/filters-he', why);
// The kit files @flare/filters-he's HE builder writes (its HE_*_CONTEXT_FILE), looked for without loading it.
const HE_SERVER_CONTEXT = join('startup', 'server_context.seal');
const HE_CLIENT_CONTEXT = join('startup', 'client_context.seal');

/** The pieces other packages contribute to a participant: audit log, aggregator, filters. */
export interface Stack {
  /** Opens this participant's audit log; returns the hook and a way to close it and read its tail. */
  openAudit(dir: string, kit: Kit): Promise<{ hook: AuditHook; tail(lines: number): Promise<string[]>; close(): Promise<void>; anchors?: AnchorLog; ledgerHeads?: readonly LedgerHead[]; checkpointHeads?: ReadonlyMap<string, CheckpointHead>; auditedJobs?: ReadonlyMap<string, JobLedgerEntry> }>;
  /** The aggregator of a job; undefined: the runtime's (meta.json's `aggregator` under the server's policy). */
  aggregator?: AggregatorFactory;
  /** Filters a site can build by name (privacy.json and jobs name them); DP filters charge `ledger` when given. */
  filters(ledger?: PrivacyLedger): ReadonlyMap<string, FilterFactory<unknown>>;
}

/** Where a participant keeps its state: `--workspace`, else `<kit>/../<name>-workspace`. */
export function workspaceOf(kitDir: string, workspace?: string): string {
  return resolve(workspace ?? join(dirname(resolve(kitDir)), `${basename(resolve(kitDir))}-workspace`));
}

async function openKit(dir: string, want: 'server' | 'client' | 'admin'): Promise<Kit> {
  // loadKit verifies every signature first: a tampered or unsigned file stops the process here, named. A
  // site's own local/attestation_policy.json is accepted only when @flare/cc-attest (an optional peer, loaded
  // only then) finds it at least as strict as the signed default.
  const own = await exists(join(dir, 'local', 'attestation_policy.json'));
  const strictOverrides = own ? [(await loadOptionalPeer<typeof CcAttest>('@flare/cc-attest', "the site's own local/attestation_policy.json")).attestationPolicyOverride] : [];
  const kit = await loadKit(dir, { strictOverrides });
  if (kit.participant.type !== want) throw new FlareRuntimeError('E_RUNTIME_KIT_TYPE', `${dir} is a ${kit.participant.type} kit, not a ${want} kit`);
  return kit;
}

/** How this participant checks the admin signature on every job and abort: its project, root and newest CRL. */
const jobTrustOf = (kit: Kit, crls: CrlStore): JobTrust => jobTrustFromKit({ project: kit.project, rootCaPem: kit.rootCaPem, crl: () => crls.current?.pem ?? kit.crlPem });

/**
 * A participant's memory of the newest CRL (CRL numbers only go up, E_CRL_ROLLBACK): the stored one, the kit's
 * when newer, and `<workspace>/crl.pem` when present and newer (how a server operator hands the federation a
 * revocation without re-provisioning: `flare pki revoke` writes it).
 */
async function openCrls(kit: Kit, ws: string, logger: ClosableLogger): Promise<CrlStore> {
  const crls = await CrlStore.open({ rootCaPem: kit.rootCaPem, file: join(ws, CRL_STATE_FILE), ...(kit.crlPem === undefined ? {} : { seed: kit.crlPem }) });
  const dropped = join(ws, 'crl.pem');
  if (await exists(dropped)) {
    try {
      const { changed, crl } = await crls.accept(await readFile(dropped, 'utf8'));
      if (changed) logger.info(`accepted ${dropped}`, { crlNumber: crl.crlNumber?.toString() });
    } catch (e) {
      logger.warn(`ignored ${dropped}`, { reason: e instanceof Error ? e.message : String(e) });
    }
  }
  return crls;
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

/** `--max-message-mib` as transport limits (the runtime's default, 2 GiB, when not given). */
function messageLimits(mib: number | undefined): { limits: { maxMessageBytes: number } } | Record<string, never> {
  return mib === undefined ? {} : { limits: { maxMessageBytes: mib * 1024 * 1024 } };
}

function until(signal: AbortSignal): Promise<void> {
  return new Promise((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
}

/** Options of {@link runServer}. */
export interface ServerRun {
  readonly kit: string;
  readonly workspace?: string;
  readonly host?: string;
  readonly port?: number;
  /** Resolves the run when aborted (SIGTERM/SIGINT in the CLI). */
  readonly signal: AbortSignal;
  readonly onListening?: (port: number) => void;
  readonly onRound?: (job: string, r: RoundRecord) => void;
  /** The attestation configuration (default `<workspace>/attestation.json` when present). */
  readonly attestation?: string;
  /** Largest message in MiB (default: the runtime's 2 GiB). */
  readonly maxMessageMiB?: number;
}

/** `flare server --kit DIR`: verifies the kit, then serves sites and admins until `signal` aborts. */
export async function runServer(o: ServerRun, stack: Stack): Promise<void> {
  const kit = await openKit(o.kit, 'server');
  const ws = workspaceOf(o.kit, o.workspace);
  await mkdir(ws, { recursive: true, mode: 0o700 });
  // One readable line per event on stderr, terminal or not (services read journald), and JSON Lines in the file.
  const logger = createLogger({ name: kit.participant.name, file: join(ws, 'server.log.jsonl'), console: true });
  const audit = await stack.openAudit(ws, kit);
  // The server needs only its authorization policy (its resources.json.default is FLARE's server file).
  const local = join(kit.dir, 'local');
  const authz = await PolicyFile.load<AuthorizationPolicy>({
    name: 'authorization',
    paths: [join(local, 'authorization.json'), join(local, 'authorization.json.default')],
    parse: (b) => parseAuthorizationPolicy(b),
    audit: audit.hook,
    logger,
  });
  // HE: the server kit's context has the parameters and key-set id only; loadHeContextFromKit refuses one
  // holding a secret key (a client kit copied to the server).
  const heLib = (await exists(join(kit.dir, HE_SERVER_CONTEXT))) ? await filtersHe(`the server kit's ${HE_SERVER_CONTEXT}`) : undefined;
  const he = heLib === undefined ? undefined : await heLib.loadHeContextFromKit(kit.dir, 'server');
  const schemes: AggregationScheme[] = heLib === undefined || he === undefined ? [] : [heLib.heAggregationScheme(he)];
  if (he !== undefined) logger.info('encrypted aggregation available: the server HE context holds no secret key', { params: he.fingerprint });
  // The server's own aggregation policy (what a job gets by default, what every job's aggregator must do).
  const aggregationFile = join(local, 'aggregation.json');
  const aggregation = (await exists(aggregationFile)) ? parseAggregationPolicy(await readFile(aggregationFile), aggregationFile) : undefined;
  const attestation = await attestationFor(kit.dir, ws, o.attestation, logger);
  // The newest CRL: checked at every login, and handed to every site in its welcome.
  const crls = await openCrls(kit, ws, logger);
  const crl = (): string | undefined => crls.current?.pem ?? kit.crlPem;
  const listener = await listenForParticipants({ kit, crl, audit: audit.hook, ...(o.host === undefined ? {} : { host: o.host }), ...(o.port === undefined ? {} : { port: o.port }), ...messageLimits(o.maxMessageMiB), logger });
  const server = await ServerEngine.start({
    name: kit.participant.name,
    org: kit.participant.org,
    workspace: ws,
    listener,
    authorize: authorizerFromPolicy(() => authz.current, kit.participant.org),
    ...(stack.aggregator === undefined ? {} : { aggregator: stack.aggregator }),
    ...(aggregation === undefined ? {} : { aggregation }),
    // Aggregating relays below this server (project.yml mode: aggregate): their updates are checked and capped.
    relays: relayTreeOf(kit),
    schemes,
    // Secure aggregation: with the project root the server checks each site's signed round keys on arrival.
    workflows: [secureAggregation({ rootCaPem: kit.rootCaPem, crlPem: crl })],
    audit: audit.hook,
    auditTail: (n) => audit.tail(n),
    logger,
    ...(attestation === undefined ? {} : { attestation }),
    ...(o.onRound === undefined ? {} : { onRound: o.onRound }),
    jobTrust: jobTrustOf(kit, crls),
    crl,
    // Each site's audit anchor is recorded in the server's log, and the server's in each site's.
    ...(audit.anchors === undefined ? {} : { anchors: audit.anchors }),
    // The newest checkpoint of each job its log recorded: an older one put back on disk is refused (E_RUNTIME_CHECKPOINT_ROLLBACK).
    ...(audit.checkpointHeads === undefined ? {} : { checkpointHeads: audit.checkpointHeads }),
    // Checkpoints and job state are MACed with a key derived from the server kit's key: a planted one is refused.
    checkpointKey: checkpointKeyFromKit(kit.privateKey),
  });
  // A revocation without a restart: `flare pki cert revoke --server-workspace` (or an operator) writes
  // <workspace>/crl.pem; a newer root-signed CRL there cuts the revoked sessions and reaches every site.
  const crlWatch = watchCrlFile({ file: join(ws, 'crl.pem'), store: crls, onNewer: (c) => server.applyCrl(c), audit: audit.hook, logger });
  logger.info(`server ${kit.participant.name} listening`, { port: listener.port, security: kit.connectionSecurity });
  o.onListening?.(listener.port);
  await until(o.signal);
  crlWatch.close();
  await server.close();
  he?.dispose();
  authz.close();
  await audit.close();
  await logger.close();
}

/** Options of {@link runClient}. */
export interface ClientRun {
  readonly kit: string;
  readonly workspace?: string;
  /** Override the kit's server address (`host:port`). */
  readonly server?: string;
  readonly signal: AbortSignal;
  /** The attestation configuration (default `<workspace>/attestation.json` when present). */
  readonly attestation?: string;
  /** Largest message in MiB (default: the runtime's 2 GiB). */
  readonly maxMessageMiB?: number;
  /** Stop after this long without the server (default: never). */
  readonly giveUpAfterMs?: number;
  /** Refuse a job first offered longer than this after its signing (default: the runtime's 7 days). */
  readonly maxJobAgeMs?: number;
}

function target(s: string | undefined): Array<{ host: string; port: number }> | undefined {
  if (s === undefined) return undefined;
  const m = /^(.+):(\d{1,5})$/.exec(s);
  if (m === null) throw new RangeError(`"--server" expected host:port, got ${s}`);
  return [{ host: m[1]!, port: Number(m[2]) }];
}

/** The site side of secure aggregation with this kit's identity, and the test hooks the environment asks for. */
function secaggSite(kit: Kit, ws: string, logger: ClosableLogger, budget: SiteConfig['secagg_dp_budget'], audit: AuditHook, crls: CrlStore): SiteWorkflow {
  const name = kit.participant.name;
  // The same ledger the site's DP filters charge: every DP release of the site composes in one place.
  const ledger = budget === undefined ? undefined : openPrivacyLedger(join(ws, BUDGET_FOLDER), { site: name, audit });
  const beforeAnswer = secaggExitHook(name, (m) => logger.warn(m));
  const onUpdate = secaggRecordHook(ws);
  return secureAggregationSite({
    // Neighbours' certificates are checked against the newest CRL this site holds (pushed by the server).
    identity: { privateKey: kit.privateKey, certPem: kit.certPem, rootCaPem: kit.rootCaPem, ...(kit.crlPem === undefined ? {} : { crlPem: kit.crlPem }), crl: () => crls.current?.pem },
    ...(beforeAnswer === undefined ? {} : { beforeAnswer }),
    ...(onUpdate === undefined ? {} : { onUpdate }),
    ...(ledger === undefined || budget === undefined ? {} : { budget: { ledger, maxEpsilon: budget.max_epsilon, delta: budget.delta } }),
  });
}

/** `flare client --kit DIR`: verifies the kit, enforces this site's policy, and runs tasks until `signal` aborts. */
export async function runClient(o: ClientRun, stack: Stack): Promise<void> {
  const kit = await openKit(o.kit, 'client');
  const ws = workspaceOf(o.kit, o.workspace);
  await mkdir(ws, { recursive: true, mode: 0o700 });
  const logger: ClosableLogger = createLogger({ name: kit.participant.name, file: join(ws, 'client.log.jsonl'), console: true });
  const config = await readSiteConfig(ws);
  const audit = await stack.openAudit(ws, kit);
  try {
    // One privacy ledger per dataset for the whole site, shared by every job (two DP jobs on the same data spend
    // one budget); each new head goes into the site's audit log, and the heads it recorded before are checked.
    const ledger = openPrivacyLedger(join(ws, BUDGET_FOLDER), { site: kit.participant.name, audit: audit.hook, ...(audit.ledgerHeads === undefined ? {} : { trustedHeads: audit.ledgerHeads }) });
    const filters = new Map(stack.filters(ledger));
    // HE: a kit provisioned with the HE step holds the project's client context (secret key, 0600): the site
    // can then name he-encrypt / he-decrypt in its privacy.json. One source object: both share one context.
    if (await exists(join(kit.dir, HE_CLIENT_CONTEXT))) {
      const heLib = await filtersHe(`the site kit's ${HE_CLIENT_CONTEXT}`);
      const source = { kitDir: kit.dir };
      filters.set('he-encrypt', heLib.heEncryptFactory(source) as FilterFactory<unknown>);
      filters.set('he-decrypt', heLib.heDecryptFactory(source) as FilterFactory<unknown>);
    }
    const policies = await loadSitePolicies({
      localDir: join(kit.dir, 'local'),
      registry: filters as ReadonlyMap<string, FilterFactory>,
      defaultComponents: { allow: new Set(config.components.allow), byoc: config.components.byoc },
      audit: audit.hook,
      logger,
    });
    // Edits to local/authorization.json, privacy.json, resources.json and components.json (allow-list, byoc) apply
    // to the next job offered, validated first (an invalid file keeps the policy in force, audited). The learners
    // components.json defines are built below, once: changing them needs a restart.
    policies.watch();
    let login: { close(): void } | undefined;
    try {
      // The learners the site defines in its own local/components.json (external programs, plugins), read at start.
      const learners = new Map<string, LearnerFactory<unknown>>(learnerFactories(policies.components.current.learners, { localDir: join(kit.dir, 'local'), logger }));
      if (config.data !== undefined) {
        const d = config.data;
        await selectBackend({ logger });
        // The data loads in a worker thread at the first deploy: on the event loop it blocked the site for seconds
        // (tens on a busy machine), heartbeats and messages included.
        let pending: Promise<SiteData> | undefined;
        let loaded: SiteData | undefined;
        const spam = spamLearnerFactory(() => loaded!);
        learners.set('tfjs-spam', {
          ...spam,
          create: async (args, env) => {
            // A failed load is tried again at the next deploy, as the in-thread loader was.
            pending ??= loadSiteDataOffThread({ site: d.site, sites: d.sites, seed: d.seed, features: d.features }).catch((e: unknown) => {
              pending = undefined;
              throw e;
            });
            loaded ??= await pending;
            return spam.create(args, env);
          },
        });
      }
      // The built-in tfjs learner on the site's own datasets (site.json `datasets`), unless components.json defines a 'tfjs'.
      if (config.datasets !== undefined && !learners.has(TFJS_LEARNER)) {
        await selectBackend({ logger });
        learners.set(TFJS_LEARNER, tfjsLearnerFactory({ datasets: config.datasets, baseDir: ws, logger }));
      }
      const targets = target(o.server);
      // local/authentication.json (when present): every job must carry a valid token from the site's own identity
      // provider. Re-read when it changes; an invalid new file keeps the login in force (audited, logged).
      const authentication = await openSiteAuthentication(join(kit.dir, 'local'), { audit: audit.hook, logger });
      login = authentication;
      authentication.watch();
      const attestation = await attestationFor(kit.dir, ws, o.attestation, logger);
      const crls = await openCrls(kit, ws, logger);
      const link = linkToServer({ kit, audit: audit.hook, ...(targets === undefined ? {} : { targets }), ...messageLimits(o.maxMessageMiB), logger, ...(o.giveUpAfterMs === undefined ? {} : { giveUpAfterMs: o.giveUpAfterMs }) });
      const engine = await ClientEngine.start({
        site: { name: kit.participant.name, org: kit.participant.org },
        link,
        policy: sitePolicyFromFiles(policies, { jobTrust: jobTrustOf(kit, crls), authenticator: () => authentication.current }),
        crls,
        ...(audit.anchors === undefined ? {} : { anchors: audit.anchors }),
        learners,
        filters,
        // Secure aggregation signs this site's round keys with its kit key; the hooks are for tests only. Cyclic
        // hops are signed with it too, and the hops this site receives are checked against the newest CRL it holds.
        workflows: [
          secaggSite(kit, ws, logger, config.secagg_dp_budget, audit.hook, crls),
          signedCyclicSite({ project: kit.project, privateKey: kit.privateKey, certPem: kit.certPem, rootCaPem: kit.rootCaPem, crl: () => crls.current?.pem ?? kit.crlPem }),
        ],
        workspace: ws,
        audit: audit.hook,
        logger,
        ...(attestation === undefined ? {} : { attestation }),
        ...(o.maxJobAgeMs === undefined ? {} : { maxJobAgeMs: o.maxJobAgeMs }),
        ...(audit.auditedJobs === undefined ? {} : { auditedJobs: audit.auditedJobs }),
      });
      await Promise.race([until(o.signal), engine.done]);
      await engine.close();
      // A site that stopped by itself (it gave up on the server, or was refused for good) exits 1 with the reason.
      if (engine.stopReason !== undefined) throw engine.stopReason;
    } finally {
      login?.close();
      policies.close();
    }
  } finally {
    // Also when the site is refused at start (e.g. its attestation): its audit log stays whole and closed.
    await audit.close();
    await logger.close();
  }
}

/** Connects an admin kit to its server. */
export async function connectAdmin(kitDir: string, server?: string): Promise<AdminClient> {
  const kit = await openKit(kitDir, 'admin');
  const targets = target(server);
  // Every job and abort this admin sends is signed with its kit key: sites obey nothing else.
  return new AdminClient(await connectToServer({ kit, ...(targets === undefined ? {} : { targets }) }), { signer: kit });
}
