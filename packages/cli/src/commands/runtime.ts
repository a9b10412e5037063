import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readJobFolder } from '@flare/runtime';
import { InvalidArgumentError, type Command } from 'commander';
import { runCommand, stdio } from '../run.js';
import { connectAdmin, runClient, runServer, signJobBundle } from '../poc/participants.js';
import { renderSummary, runPoc, type PocSummary } from '../poc/poc.js';
import { defaultStack, dpScope, verifyAuditLogs } from '../poc/stack.js';

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

function int(_name: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer ${min}..${max}, got ${v}`);
    return n;
  };
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
    .action((o: { kit: string; workspace?: string; host?: string; port?: number }) =>
      run(() =>
        runServer(
          { kit: o.kit, ...(o.workspace === undefined ? {} : { workspace: o.workspace }), ...(o.host === undefined ? {} : { host: o.host }), ...(o.port === undefined ? {} : { port: o.port }), signal: untilSignal(), onListening: (p) => stdio.out(`flare server listening on port ${p}`) },
          defaultStack(),
        ),
      ),
    );

  program
    .command('client')
    .description("run a site from its startup kit: enforces the site's policy and runs the tasks it accepts")
    .requiredOption('--kit <dir>', 'the site startup kit')
    .option('--workspace <dir>', 'site state: site.json, logs, audit log, DP budgets (default <kit>-workspace)')
    .option('--server <host:port>', "override the kit's server address")
    .action((o: { kit: string; workspace?: string; server?: string }) =>
      run(() => runClient({ kit: o.kit, ...(o.workspace === undefined ? {} : { workspace: o.workspace }), ...(o.server === undefined ? {} : { server: o.server }), signal: untilSignal() }, defaultStack())),
    );

  const admin = program
    .command('admin')
    .description('the admin API over the authenticated channel: every command is authorized by the server (and jobs by each site)')
    .requiredOption('--kit <dir>', 'the admin startup kit')
    .option('--server <host:port>', "override the kit's server address");
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
    .action((dir: string) =>
      run(() =>
        withAdmin(async (a) => {
          // A job that brings code (custom/) is signed with this admin's kit key; each site verifies it.
          const bundle = await signJobBundle(admin.opts<{ kit: string }>().kit, await readJobFolder(resolve(dir)));
          stdio.out(await a.submit(bundle));
        }),
      ),
    );
  admin
    .command('list')
    .description('list jobs')
    .action(() => run(() => withAdmin(async (a) => void (await a.list()).forEach((j) => stdio.out(`${j.id}  ${j.status.padEnd(9)}  ${j.name}  rounds ${j.rounds_done}  by ${j.submitter}`)))));
  admin
    .command('status <job>')
    .description("a job's record as JSON")
    .action((job: string) => run(() => withAdmin(async (a) => stdio.out(JSON.stringify(await a.status(job), null, 2)))));
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
          await writeFile(file, await a.download(job));
          stdio.out(file);
        }),
      ),
    );
  admin
    .command('audit')
    .option('-n, --lines <n>', 'how many lines', int('--lines', 1, 10_000), 50)
    .description("tail the server's audit log")
    .action((o: { lines: number }) => run(() => withAdmin(async (a) => void (await a.audit(o.lines)).forEach((l) => stdio.out(l)))));

  program
    .command('poc')
    .description('the main job: a secure federation on this machine, end to end (server and sites as separate processes over mTLS)')
    .option('--clients <n>', 'number of sites', int('--clients', 2, 16), 3)
    .option('--rounds <r>', 'FedAvg rounds', int('--rounds', 1, 100), 5)
    .option('--dp', 'sites demand differential privacy on their updates (privacy scope "private")', false)
    .option('--workspace <dir>', 'where to provision and run (default: a new temporary folder)')
    .option('--json', 'print the summary as one JSON object on stdout', false)
    .action((o: { clients: number; rounds: number; dp: boolean; workspace?: string; json: boolean }) =>
      run(async () => {
        const summary: PocSummary = await runPoc({
          clients: o.clients,
          rounds: o.rounds,
          dp: o.dp,
          json: o.json,
          ...(o.workspace === undefined ? {} : { workspace: o.workspace }),
          progress: (l) => stdio.err(l),
          verifyAudit: verifyAuditLogs,
          ...(o.dp ? { dpScope: dpScope() } : {}),
          tty: process.stderr.isTTY === true,
        });
        if (o.json) stdio.out(JSON.stringify(summary));
        else for (const l of renderSummary(summary)) stdio.out(l);
      }),
    );
}
