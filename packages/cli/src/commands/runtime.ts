import { join, resolve } from 'node:path';
import { writeFileAtomic, type JsonValue } from '@flare/core';
import { attachAuthTokens, readJobFolder, type JobRecord, type RelayedSiteSighting, type SiteState } from '@flare/runtime';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { runCommand, stdio } from '../run.js';
import { hostPortOption } from '../options.js';
import { connectAdmin, runClient, runServer } from '../poc/participants.js';
import { renderSummary, runPoc, type PocSummary } from '../poc/poc.js';
import { dpScope } from '../poc/dp-config.js';
import { defaultStack, verifyAuditLogs } from '../poc/stack.js';
import { POC_WORKFLOWS, type PocWorkflow } from '../poc/workflows.js';
import { OIDC_TOKEN_ENV, collectTokenFile, readTokenFiles, type TokenFileArg } from './tokens.js';

// Commander awaits an action that returns a promise of nothing; runCommand sets process.exitCode itself.
// Bodies may end on a write's boolean: only a number is an exit code.
async function run(body: () => Promise<unknown>): Promise<void> {
  await runCommand(async () => {
    const r = await body();
    return typeof r === 'number' ? r : undefined;
  });
}

function untilSignal(): AbortSignal {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return ac.signal;
}

/** A duration: `90s`, `5m`, `2h`, `1d`, or milliseconds; `never` (or `forever`) is Infinity. */
function duration(v: string): number {
  if (v === 'never' || v === 'forever') return Infinity;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  const ms = m === null ? Number.NaN : Math.round(Number(m[1]) * unit[(m[2] ?? 'ms') as keyof typeof unit]);
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new InvalidArgumentError(`expected a duration such as 90s, 5m, 2h, 1d or never, got ${v}`);
  return ms;
}

function int(_name: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer ${min}..${max}, got ${v}`);
    return n;
  };
}

const hhmmss = (iso: string | undefined): string => (iso === undefined ? '-' : iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
const num = (x: number | undefined, digits = 4): string => (x === undefined ? '-' : x.toFixed(digits));

/** How many names of the sites behind one relay `status` prints (`--json` has them all). */
const BEHIND_SHOWN = 20;

/** The sites behind aggregating relay `relay`, as the lines under its row: names (the first {@link BEHIND_SHOWN}), and whether the relay is lost. */
function behindLines(relay: string, sightings: readonly RelayedSiteSighting[]): string[] {
  const mine = sightings.filter((s) => s.behind === relay).map((s) => s.name);
  if (mine.length === 0) return [];
  const lost = sightings.some((s) => s.behind === relay && s.relayLost);
  const shown = mine.slice(0, BEHIND_SHOWN).join(', ');
  const more = mine.length > BEHIND_SHOWN ? `, and ${mine.length - BEHIND_SHOWN} more (--json lists them all)` : '';
  return [`${''.padEnd(22)}${mine.length} site${mine.length === 1 ? '' : 's'} behind it${lost ? ' (relay lost: last known)' : ''}: ${shown}${more}`];
}

/**
 * `flare admin status JOB` as lines: the job, why it failed, each site, each round (rounds from 1). An
 * aggregating relay is one contributor of the job; the sites behind it are listed under its row.
 */
export function renderJobStatus(v: { readonly record: JobRecord; readonly sites: readonly SiteState[]; readonly relaySites?: readonly RelayedSiteSighting[] }): string[] {
  const r = v.record;
  const lines = [`job ${r.id}  ${r.name}  ${r.status}  rounds done ${r.rounds_done}  submitted by ${r.submitter.name} at ${hhmmss(r.submitted_at)}${r.ended_at === undefined ? '' : `  ended ${hhmmss(r.ended_at)}`}`];
  if (r.error !== undefined) lines.push(`why: ${r.error.code}: ${r.error.message}`);
  lines.push('', 'site                  connection  last seen             job          rounds contributed');
  for (const s of v.sites) {
    const job = s.running ? 'running' : s.refused !== undefined ? 'refused/left' : s.deployed ? 'deployed' : 'not deployed';
    const rounds = s.contributions.length === 0 ? '-' : s.contributions.map((x) => x + 1).join(',');
    lines.push(`${s.name.padEnd(20)}  ${(s.connected ? 'connected' : 'gone').padEnd(10)}  ${hhmmss(s.last_seen).padEnd(20)}  ${job.padEnd(12)}  ${rounds}`);
    if (s.via !== undefined) lines.push(`${''.padEnd(22)}through relay ${s.via.join(' > ')}`);
    lines.push(...behindLines(s.name, v.relaySites ?? []));
    if (s.refused !== undefined) lines.push(`${''.padEnd(22)}${s.refused.slice(0, 300)}`);
  }
  if (r.history.length > 0) {
    lines.push('', 'round  accuracy (min..max)        loss     seconds  contributors');
    for (const h of r.history) {
      const m = h.metrics;
      const acc = m['accuracy'] === undefined ? '-' : `${num(m['accuracy'])} (${num(m['accuracy_min'])}..${num(m['accuracy_max'])})`;
      lines.push(`${String(h.round + 1).padStart(5)}  ${acc.padEnd(25)}  ${num(m['loss']).padStart(7)}  ${h.seconds.toFixed(2).padStart(7)}  ${h.contributors.join(',')}`);
    }
  }
  return lines;
}

/** One audit event (a JSON line) as a readable line: time, who logged it, action, user, job, message. */
export function auditLine(line: string): string {
  let e: { ts?: unknown; site?: unknown; action?: unknown; user?: unknown; job?: unknown; msg?: unknown };
  try {
    e = JSON.parse(line) as typeof e;
  } catch {
    return line;
  }
  const str = (x: unknown): string => (typeof x === 'string' ? x : '');
  const job = str(e.job);
  return [hhmmss(str(e.ts) || undefined), str(e.site), str(e.action), str(e.user) === '' ? '' : `user=${str(e.user)}`, job === '' ? '' : `job=${job.slice(0, 8)}`, str(e.msg)].filter((x) => x !== '').join('  ');
}

/** `flare server`, `flare client`, `flare admin ...` and `flare poc`. */
export function register(program: Command): void {
  program
    .command('server')
    .description('run the federation server from its startup kit (the kit is verified first)')
    .requiredOption('--kit <dir>', 'the server startup kit')
    .option('--workspace <dir>', 'where jobs, checkpoints, logs and the audit log go (default <kit>-workspace)')
    .option('--host <address>', 'address to listen on (default 127.0.0.1; 0.0.0.0 to serve other machines)')
    .option('--port <n>', 'override fed_learn_port', int('--port', 0, 65535))
    .option('--attestation <file>', 'how this participant attests and re-checks peers (default <workspace>/attestation.json when present); what it requires is its kit\'s attestation policy')
    .option('--max-message-mib <n>', 'largest message accepted or sent, in MiB (default 2048: the largest HE update the aggregator takes)', int('--max-message-mib', 1, 4095))
    .action((o: { kit: string; workspace?: string; host?: string; port?: number; attestation?: string; maxMessageMib?: number }) =>
      run(() =>
        runServer(
          {
            kit: o.kit,
            ...(o.workspace === undefined ? {} : { workspace: o.workspace }),
            ...(o.host === undefined ? {} : { host: o.host }),
            ...(o.port === undefined ? {} : { port: o.port }),
            ...(o.attestation === undefined ? {} : { attestation: o.attestation }),
            ...(o.maxMessageMib === undefined ? {} : { maxMessageMiB: o.maxMessageMib }),
            signal: untilSignal(),
            onListening: (p) => stdio.out(`flare server listening on port ${p}`),
          },
          defaultStack(),
        ),
      ),
    );

  program
    .command('client')
    .description("run a site from its startup kit: enforces the site's policy and runs the tasks it accepts")
    .requiredOption('--kit <dir>', 'the site startup kit')
    .option('--workspace <dir>', 'site state: site.json, logs, audit log, DP budgets (default <kit>-workspace)')
    .option('--server <host:port>', "override the kit's server address", hostPortOption('--server'))
    .option('--attestation <file>', 'how this site attests and re-checks the server (default <workspace>/attestation.json when present); what it requires is its kit\'s attestation policy')
    .option('--max-message-mib <n>', 'largest message accepted or sent, in MiB (default 2048)', int('--max-message-mib', 1, 4095))
    .option('--give-up-after <duration>', 'stop (exit 1, E_RUNTIME_SERVER_UNREACHABLE) after this long without the server, e.g. 10m, 2h (default: never; the site waits and reconnects with backoff)', duration)
    .option('--max-job-age <duration>', 'refuse a job first offered longer than this after its admin signed it (E_POLICY_JOB_EXPIRED), e.g. 12h, 30d (default 7d)', duration)
    .action((o: { kit: string; workspace?: string; server?: string; attestation?: string; maxMessageMib?: number; giveUpAfter?: number; maxJobAge?: number }) =>
      run(() =>
        runClient(
          {
            kit: o.kit,
            ...(o.workspace === undefined ? {} : { workspace: o.workspace }),
            ...(o.server === undefined ? {} : { server: o.server }),
            ...(o.attestation === undefined ? {} : { attestation: o.attestation }),
            ...(o.maxMessageMib === undefined ? {} : { maxMessageMiB: o.maxMessageMib }),
            ...(o.giveUpAfter === undefined || o.giveUpAfter === Infinity ? {} : { giveUpAfterMs: o.giveUpAfter }),
            ...(o.maxJobAge === undefined || o.maxJobAge === Infinity ? {} : { maxJobAgeMs: o.maxJobAge }),
            signal: untilSignal(),
          },
          defaultStack(),
        ),
      ),
    );

  const admin = program
    .command('admin')
    .description('the admin API over the authenticated channel: every command is authorized by the server (and jobs by each site)')
    .requiredOption('--kit <dir>', 'the admin startup kit')
    .option('--server <host:port>', "override the kit's server address", hostPortOption('--server'));
  const withAdmin = async <T>(f: (a: Awaited<ReturnType<typeof connectAdmin>>) => Promise<T>): Promise<T> => {
    const o = admin.opts<{ kit: string; server?: string }>();
    const client = await connectAdmin(o.kit, o.server);
    try {
      return await f(client);
    } finally {
      client.close();
    }
  };
  admin
    .command('submit <jobDir>')
    .description('submit a job folder (meta.json, model.safetensors, optional custom/)')
    .option('--token-file <[site=]file>', `a token from a site's identity provider, for sites that require one (local/authentication.json); site= for one site only (repeatable); default: $${OIDC_TOKEN_ENV}`, collectTokenFile, [])
    .action((dir: string, o: { tokenFile: TokenFileArg[] }) =>
      run(() =>
        withAdmin(async (a) => {
          // Tokens go into meta.json before the whole job is signed with this admin's kit key (each site verifies
          // the signature): they travel inside what the admin signs.
          stdio.out(await a.submit(attachAuthTokens(await readJobFolder(resolve(dir)), await readTokenFiles(o.tokenFile, process.env[OIDC_TOKEN_ENV]))));
        }),
      ),
    );
  admin
    .command('list')
    .description('list jobs, oldest first: the newest 1,000 (--last N for another number)')
    .option('--last <n>', 'list the newest N jobs (1-10000)', int('--last', 1, 10_000))
    .action((o: { last?: number }) =>
      run(() =>
        withAdmin(async (a) => {
          const jobs = await a.list(o.last === undefined ? {} : { last: o.last });
          for (const j of jobs) stdio.out(`${j.id}  ${j.status.padEnd(9)}  ${j.name}  rounds ${j.rounds_done}  by ${j.submitter}`);
        }),
      ),
    );
  admin
    .command('status <job>')
    .description("a job: its status (and why it failed, with the sites' own codes), each site's state, and its rounds")
    .option('--json', 'the record and the sites as JSON', false)
    .action((job: string, o: { json: boolean }) =>
      run(() =>
        withAdmin(async (a) => {
          const view = await a.jobStatus(job);
          // JSON keeps the server's field name for the sites behind relays.
          const { relaySites, ...rest } = view;
          if (o.json) stdio.out(JSON.stringify(relaySites === undefined ? rest : { ...rest, relay_sites: relaySites }, null, 2));
          else for (const l of renderJobStatus(view)) stdio.out(l);
        }),
      ),
    );
  admin
    .command('abort <job>')
    .description('abort a job')
    .action((job: string) => run(() => withAdmin(async (a) => a.abort(job))));
  admin
    .command('download <job>')
    .requiredOption('-o, --output <dir>', 'folder to write the final global model into')
    .description("download a finished job's global model (safetensors)")
    .action((job: string, o: { output: string }) =>
      run(() =>
        withAdmin(async (a) => {
          const file = join(resolve(o.output), `${job}.safetensors`);
          // Written atomically; a missing or unwritable folder is E_FILE_WRITE naming it.
          await writeFileAtomic(file, await a.download(job), { mode: 0o644 });
          stdio.out(file);
        }),
      ),
    );
  admin
    .command('sites')
    .description('the sites the server has seen since it started: connected first, with when each was last seen, and the relays each is behind')
    .action(() =>
      run(() =>
        withAdmin(async (a) => {
          for (const x of await a.sites()) {
            // The tree: a site behind relays names them; one behind an aggregating relay says whether that relay is there.
            const tree = x.behind !== undefined ? `  behind aggregating relay ${x.behind}${x.relayLost === true ? ' (relay lost)' : ''}` : x.via === undefined ? '' : `  via ${x.via.join(' > ')}`;
            stdio.out(`${x.name.padEnd(20)}  ${x.org.padEnd(16)}  ${x.connected ? 'connected' : 'gone     '}  last seen ${x.lastSeen}${x.since === undefined ? '' : `  since ${x.since}`}${tree}`);
          }
        }),
      ),
    );
  admin
    .command('audit')
    .option('-n, --lines <n>', 'how many lines', int('--lines', 1, 10_000), 50)
    .option('--json', 'the raw JSON Lines', false)
    .description("tail the server's audit log: one readable line per event (--json: raw)")
    .action((o: { lines: number; json: boolean }) => run(() => withAdmin(async (a) => void (await a.audit(o.lines)).forEach((l) => stdio.out(o.json ? l : auditLine(l))))));

  program
    .command('poc')
    .description('the main job: a secure federation on this machine, end to end (server and sites as separate processes over mTLS)')
    .option('--clients <n>', 'number of sites', int('--clients', 2, 16), 3)
    .option('--rounds <r>', 'FedAvg rounds', int('--rounds', 1, 100), 5)
    .option('--dp', 'sites demand differential privacy on their updates (privacy scope "private")', false)
    .option('--he', 'sites encrypt their updates (CKKS) and the server aggregates ciphertexts without a secret key; then a plaintext twin runs for the overhead figures', false)
    .option('--secagg', 'secure aggregation (SecAgg+): sites mask their updates, the server unmasks only their sum, surviving sites that drop out', false)
    .addOption(new Option('--attest <mode>', 'attestation at login (both ways), before deploys and every 2 s, with synthetic evidence from a test authority').choices(['test']))
    .option('--attest-debug-site <name>', "with --attest test: this site's evidence shows a debuggable guest, which the default policy refuses (demonstration)")
    .option('--workspace <dir>', 'where to provision and run (default: a new temporary folder, removed at the end)')
    .option('--keep', 'keep the temporary folder', false)
    .option('--aggregator <json>', 'the job\'s aggregator as meta.json names it, e.g. \'{"name":"krum","args":{"f":0}}\' or \'{"name":"fedavg"}\' (default: the server\'s, FedAvg with an adaptive norm bound)', (v: string) => {
      try {
        return JSON.parse(v) as unknown;
      } catch {
        throw new InvalidArgumentError(`expected a JSON object, got ${v}`);
      }
    })
    .addOption(new Option('--workflow <name>', 'the job\'s workflow: scatter-and-gather (FedAvg rounds), cross-site evaluation after training (prints the matrix), or cyclic (the model visits the sites in turn)').choices(Object.keys(POC_WORKFLOWS)).default('scatter-gather'))
    .option('--json', 'print the summary as one JSON object on stdout', false)
    .action((o: { clients: number; rounds: number; dp: boolean; he: boolean; secagg: boolean; attest?: 'test'; attestDebugSite?: string; workspace?: string; keep: boolean; aggregator?: JsonValue; workflow: PocWorkflow; json: boolean }, cmd: Command) => {
      if (o.attestDebugSite !== undefined && o.attest === undefined) cmd.error('error: --attest-debug-site needs --attest test', { exitCode: 2 });
      if (o.secagg && o.workflow !== 'scatter-gather') cmd.error('error: --secagg runs the secure_aggregation workflow: leave out --workflow', { exitCode: 2 });
      if (o.attestDebugSite !== undefined && !/^site-\d+$/.test(o.attestDebugSite)) cmd.error(`error: --attest-debug-site expected a site name site-1..site-${o.clients}, got ${o.attestDebugSite}`, { exitCode: 2 });
      return run(async () => {
        const summary: PocSummary = await runPoc({
          clients: o.clients,
          rounds: o.rounds,
          dp: o.dp,
          he: o.he,
          ...(o.secagg ? { secagg: true } : {}),
          ...(o.attest === undefined ? {} : { attest: o.attest }),
          ...(o.attestDebugSite === undefined ? {} : { attestDebugSite: o.attestDebugSite }),
          json: o.json,
          ...(o.workspace === undefined ? {} : { workspace: o.workspace }),
          keep: o.keep,
          ...(o.aggregator === undefined ? {} : { aggregator: o.aggregator }),
          workflow: o.workflow,
          progress: (l) => stdio.err(l),
          verifyAudit: verifyAuditLogs,
          ...(o.dp ? { dpScope: dpScope() } : {}),
          tty: process.stderr.isTTY === true,
        });
        if (o.json) stdio.out(JSON.stringify(summary));
        else for (const l of renderSummary(summary)) stdio.out(l);
      });
    });
}
