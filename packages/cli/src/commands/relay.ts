import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FlareRuntimeError, type FilterFactory } from '@flare/core';
import { CRL_STATE_FILE, CrlStore, loadKit, type Kit } from '@flare/pki';
import { loadSitePolicies } from '@flare/policy';
import {
  createLogger,
  jobTrustFromKit,
  parseAggregationPolicy,
  relayModeOf,
  sitePolicyFromFiles,
  startAggregatingRelay,
  startRelay,
  type ClosableLogger,
  type RelayLimits,
} from '@flare/runtime';
import { InvalidArgumentError, type Command } from 'commander';
import { workspaceOf } from '../poc/participants.js';
import { defaultStack } from '../poc/stack.js';
import { runCommand, stdio } from '../run.js';
import { hostPortOption } from '../options.js';

/** Options of {@link runRelay}. */
interface RelayRun {
  readonly kit: string;
  readonly port: number;
  readonly host?: string;
  /** host:port of the server (or the relay above), instead of the kit's. */
  readonly upstream?: string;
  readonly workspace?: string;
  readonly limits?: RelayLimits;
  readonly signal: AbortSignal;
  readonly onListening?: (port: number) => void;
}

/**
 * `flare relay --kit DIR --port N`: verifies the relay kit, listens for the sites (and relays) provisioned
 * under it, and carries their sessions to its upstream until `signal` aborts. Logs go to the console and to
 * `<workspace>/relay.log.jsonl`.
 */
async function runRelay(o: RelayRun): Promise<void> {
  const kit = await loadKit(o.kit);
  if (kit.participant.type !== 'relay') throw new FlareRuntimeError('E_RUNTIME_KIT_TYPE', `${o.kit} is a ${kit.participant.type} kit, not a relay kit`);
  const ws = workspaceOf(o.kit, o.workspace);
  await mkdir(ws, { recursive: true, mode: 0o700 });
  const logger = createLogger({ name: kit.participant.name, file: join(ws, 'relay.log.jsonl'), console: true });
  try {
    if (relayModeOf(kit) === 'aggregate') return await runAggregatingRelay(o, kit, ws, logger);
    return await runForwardingRelay(o, kit, ws, logger);
  } finally {
    await logger.close();
  }
}

/**
 * The relay of a kit in forwarding mode: it carries its sites' end-to-end sessions. It keeps the newest CRL
 * it sees the server hand its sites (persisted in `<workspace>/crl-state.json`, only ever newer), checks the
 * logins it carries against it and cuts what a newer one revokes; its audit log is `<workspace>/audit.jsonl`.
 */
async function runForwardingRelay(o: RelayRun, kit: Kit, ws: string, logger: ClosableLogger): Promise<void> {
  const audit = await defaultStack().openAudit(ws, kit);
  try {
    const upstream = hostPort(o.upstream);
    const crls = await CrlStore.open({ rootCaPem: kit.rootCaPem, file: join(ws, CRL_STATE_FILE), ...(kit.crlPem === undefined ? {} : { seed: kit.crlPem }) });
    const relay = await startRelay({
      kit,
      port: o.port,
      ...(o.host === undefined ? {} : { host: o.host }),
      ...(upstream === undefined ? {} : { upstream: [upstream] }),
      ...(o.limits === undefined ? {} : { limits: o.limits }),
      crls,
      audit: audit.hook,
      logger,
    });
    // Sites behind a relay that lost them are reported here and by the server (their sessions end).
    relay.on('closed', (c) => logger.warn('site behind this relay disconnected', { site: c.site.name, by: c.by, ...(c.error === undefined ? {} : { code: c.error.code }) }));
    o.onListening?.(relay.port);
    await new Promise<void>((r) => (o.signal.aborted ? r() : o.signal.addEventListener('abort', () => r(), { once: true })));
    await relay.close();
  } finally {
    await audit.close();
  }
}

/**
 * The relay of a kit provisioned with `mode: aggregate`: it decides jobs under its own local/ policy (as a
 * site does: authorization.json, privacy.json, components.json, resources.json; local/aggregation.json for its
 * aggregator), runs its sites' rounds and sends one update up. Its audit log is `<workspace>/audit.jsonl`.
 */
async function runAggregatingRelay(o: RelayRun, kit: Kit, ws: string, logger: ClosableLogger): Promise<void> {
  const stack = defaultStack();
  const audit = await stack.openAudit(ws, kit);
  const local = join(kit.dir, 'local');
  const filters = stack.filters();
  const policies = await loadSitePolicies({ localDir: local, registry: filters as ReadonlyMap<string, FilterFactory>, audit: audit.hook, logger });
  try {
    const aggregationFile = join(local, 'aggregation.json');
    const hasAggregation = await access(aggregationFile).then(() => true, () => false);
    const aggregation = hasAggregation ? parseAggregationPolicy(await readFile(aggregationFile), aggregationFile) : undefined;
    const upstream = hostPort(o.upstream);
    // The newest CRL this relay saw (only ever newer): upstream's reach it, and it passes them to its sites.
    const crls = await CrlStore.open({ rootCaPem: kit.rootCaPem, file: join(ws, CRL_STATE_FILE), ...(kit.crlPem === undefined ? {} : { seed: kit.crlPem }) });
    const relay = await startAggregatingRelay({
      kit,
      port: o.port,
      ...(o.host === undefined ? {} : { host: o.host }),
      ...(upstream === undefined ? {} : { upstream: [upstream] }),
      workspace: ws,
      policy: sitePolicyFromFiles(policies, { jobTrust: jobTrustFromKit({ project: kit.project, rootCaPem: kit.rootCaPem, crl: () => crls.current?.pem ?? kit.crlPem }) }),
      filters,
      ...(aggregation === undefined ? {} : { aggregation }),
      crls,
      audit: audit.hook,
      logger,
    });
    o.onListening?.(relay.port);
    await Promise.race([new Promise<void>((r) => (o.signal.aborted ? r() : o.signal.addEventListener('abort', () => r(), { once: true }))), relay.upstream.done]);
    await relay.close();
    if (relay.upstream.stopReason !== undefined) throw relay.upstream.stopReason;
  } finally {
    policies.close();
    await audit.close();
  }
}

function hostPort(s: string | undefined): { host: string; port: number } | undefined {
  if (s === undefined) return undefined;
  const m = /^(.+):(\d{1,5})$/.exec(s);
  if (m === null) throw new InvalidArgumentError(`expected host:port, got ${s}`);
  return { host: m[1]!, port: Number(m[2]) };
}

function positive(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} expected a positive number, got ${v}`);
    return n;
  };
}

/** `flare relay`. */
export function register(program: Command): void {
  program
    .command('relay')
    .description("run a relay from its startup kit: in forwarding mode (the default) sites provisioned under it (project.yml parent/connect_to) reach the server through it with their own end-to-end sessions; in aggregation mode (project.yml mode: aggregate) it runs their rounds and sends one weighted update up")
    .requiredOption('--kit <dir>', 'the relay startup kit')
    .requiredOption('--port <n>', 'port the sites connect to (their connect_to port)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`expected a port 0..65535, got ${v}`);
      return n;
    })
    .option('--host <address>', 'address to listen on (default 127.0.0.1; 0.0.0.0 or the relay\'s listening_host to serve other machines)')
    .option('--upstream <host:port>', "override the kit's upstream address (the server, or the relay above)", hostPortOption('--upstream'))
    .option('--workspace <dir>', 'where the relay log, its audit log and its newest CRL (and, aggregating, its job records) go (default <kit>-workspace)')
    .option('--max-sites <n>', 'forwarding: sites carried at once (default 1024)', positive('--max-sites'))
    .option('--max-msgs-per-s <n>', 'forwarding: messages per second one site may send upstream (default 200)', positive('--max-msgs-per-s'))
    .option('--max-mib-per-s <n>', 'forwarding: MiB per second one site may send upstream (default unlimited)', positive('--max-mib-per-s'))
    .action(async (o: { kit: string; port: number; host?: string; upstream?: string; workspace?: string; maxSites?: number; maxMsgsPerS?: number; maxMibPerS?: number }) => {
      await runCommand(async () => {
        const ac = new AbortController();
        const stop = (): void => ac.abort();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
        const limits: RelayLimits = {
          ...(o.maxSites === undefined ? {} : { maxSites: Math.floor(o.maxSites) }),
          ...(o.maxMsgsPerS === undefined ? {} : { maxMessagesPerSecond: o.maxMsgsPerS }),
          ...(o.maxMibPerS === undefined ? {} : { maxBytesPerSecond: o.maxMibPerS * 1024 * 1024 }),
        };
        await runRelay({
          kit: o.kit,
          port: o.port,
          ...(o.host === undefined ? {} : { host: o.host }),
          ...(o.upstream === undefined ? {} : { upstream: o.upstream }),
          ...(o.workspace === undefined ? {} : { workspace: o.workspace }),
          limits,
          signal: ac.signal,
          onListening: (p) => stdio.out(`flare relay listening on port ${p}`),
        });
      });
    });
}
