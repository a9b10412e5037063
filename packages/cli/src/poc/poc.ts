import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FlareRuntimeError, encodeModel, type JsonValue } from '@flare/core';
import { parseProject, provision } from '@flare/pki';
import { readJobFolder, type JobRecord } from '@flare/runtime';
import { readWeights, selectBackend } from '@flare/tfjs';
import { spamAssassin } from './dataset.js';
import { connectAdmin, workspaceOf } from './participants.js';
import { freePort, startParticipant, type Participant } from './processes.js';
import { spamJob, spamNetwork } from './spam-model.js';

/** Options of `flare poc`. */
export interface PocOptions {
  readonly clients: number;
  readonly rounds: number;
  readonly dp: boolean;
  readonly workspace?: string;
  readonly json: boolean;
  /** Hashed bag-of-words width (default 1024) and hidden units (default 0: logistic regression, the model DP is documented for). */
  readonly features?: number;
  readonly hidden?: number;
  /** Where progress lines go (stderr). */
  readonly progress: (line: string) => void;
  /** True when stderr is a terminal: draw a progress bar. */
  readonly tty: boolean;
  /** Extra privacy.json scopes and components for --dp (contributed by the DP stack). */
  readonly dpScope?: { readonly filters: ReadonlyArray<{ readonly name: string; readonly args: Record<string, JsonValue> }>; readonly components: readonly string[] };
  /** Verifies every participant's audit log (contributed by the audit stack). */
  readonly verifyAudit?: (dirs: ReadonlyArray<{ readonly name: string; readonly dir: string; readonly certificate: string }>) => Promise<{ verified: boolean; problems: string[] }>;
}

/** What `flare poc --json` prints. */
export interface PocSummary {
  readonly dataset: string;
  readonly workspace: string;
  readonly job: string;
  readonly status: string;
  readonly rounds: Array<{ round: number; accuracy: number | null; loss: number | null; seconds: number; contributors: string[] }>;
  readonly sites: Array<{ name: string; epsilon: number | null; bytes: number }>;
  readonly audit: { verified: boolean; problems: string[] };
  readonly seconds: number;
}

function projectYaml(name: string, port: number, clients: number): string {
  const sites = Array.from({ length: clients }, (_, i) => `  - name: site-${i + 1}\n    type: client\n    org: hospital_${i + 1}\n`).join('');
  return `api_version: 3
name: ${name}
description: flare poc, one machine
participants:
  - name: localhost
    type: server
    org: flare
    fed_learn_port: ${port}
${sites}  - name: admin@flare.poc
    type: admin
    org: flare
    role: project_admin
`;
}

type Bar = { start(total: number, value: number, payload?: object): void; update(value: number, payload?: object): void; stop(): void };

function progressBar(tty: boolean): Bar | undefined {
  if (!tty) return undefined;
  const require = createRequire(import.meta.url);
  const cp = require('cli-progress') as { SingleBar: new (o: object, preset: object) => Bar; Presets: { shades_classic: object } };
  return new cp.SingleBar({ format: 'round {value}/{total} |{bar}| accuracy {acc}  {secs}s/round', stream: process.stderr, hideCursor: true }, cp.Presets.shades_classic);
}

/**
 * `flare poc`: provisions a project, starts the server and N sites as separate processes over mTLS with
 * @flare/auth sessions, submits the spam job as the project admin, follows the rounds, and summarises:
 * accuracy and loss per round on the held-out split, epsilon per site (with --dp), bytes moved, seconds per
 * round, and the verification of every participant's audit log.
 */
export async function runPoc(o: PocOptions): Promise<PocSummary> {
  const started = performance.now();
  if (!Number.isInteger(o.clients) || o.clients < 2 || o.clients > 16) throw new RangeError(`"--clients" expected 2..16, got ${o.clients}`);
  if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 100) throw new RangeError(`"--rounds" expected 1..100, got ${o.rounds}`);
  const ws = resolve(o.workspace ?? (await mkdtemp(join(tmpdir(), 'flare-poc-'))));
  await mkdir(ws, { recursive: true });
  const features = o.features ?? 1024;
  const hidden = o.hidden ?? 0;
  const dataset = spamAssassin() === undefined ? 'iris' : 'spam-assassin';
  const width = dataset === 'iris' ? 4 : features;
  const port = await freePort();
  o.progress(`poc: provisioning a project with a server and ${o.clients} sites in ${ws}`);
  const prov = await provision(parseProject(projectYaml('flare_poc', port, o.clients)), { workspace: ws, newRoot: true });
  const kitOf = (name: string) => join(prov.prodDir, name);
  const sites = Array.from({ length: o.clients }, (_, i) => `site-${i + 1}`);
  for (const [i, s] of sites.entries()) {
    const sws = workspaceOf(kitOf(s));
    await mkdir(sws, { recursive: true, mode: 0o700 });
    const components = ['tfjs-spam', ...(o.dpScope?.components ?? [])];
    await writeFile(join(sws, 'site.json'), JSON.stringify({ data: { dataset, site: i, sites: o.clients, seed: 42, features: width }, components: { allow: components, byoc: false } }, null, 2));
    // Each site's own privacy policy: `public` adds nothing; `private` demands the site's DP filters.
    const scopes: JsonValue[] = [{ name: 'public', properties: {}, task_result_filters: [], task_data_filters: [] }];
    if (o.dpScope !== undefined) scopes.push({ name: 'private', properties: {}, task_result_filters: o.dpScope.filters.map((f) => ({ name: f.name, args: f.args })), task_data_filters: [] });
    await writeFile(join(kitOf(s), 'local', 'privacy.json'), JSON.stringify({ format_version: '1.0', scopes, default_scope: 'public' }, null, 2));
  }
  const procs: Participant[] = [];
  const logs = join(ws, 'logs');
  await mkdir(logs, { recursive: true });
  try {
    const server = startParticipant('server', ['server', '--kit', kitOf('localhost')], join(logs, 'server.log'));
    procs.push(server);
    await server.waitFor(/listening on port (\d+)/, 60_000);
    for (const s of sites) procs.push(startParticipant(s, ['client', '--kit', kitOf(s)], join(logs, `${s}.log`)));
    // The admin builds the initial global model (seeded) and the job folder, then submits it.
    await selectBackend({});
    const initial = readWeights(spamNetwork(width, hidden));
    const jobDir = join(ws, 'jobs', 'spam');
    await mkdir(jobDir, { recursive: true });
    const definition = spamJob({ sites, rounds: o.rounds, features: width, hidden, dp: o.dp });
    await writeFile(join(jobDir, 'meta.json'), JSON.stringify(definition, null, 2));
    await writeFile(join(jobDir, 'model.safetensors'), encodeModel(initial));
    const admin = await connectAdmin(kitOf('admin@flare.poc'));
    let rec: JobRecord;
    try {
      const id = await admin.submit(await readJobFolder(jobDir));
      o.progress(`poc: job ${id} submitted (${dataset}, ${o.rounds} rounds, ${o.clients} sites${o.dp ? ', DP' : ''})`);
      const bar = progressBar(o.tty);
      bar?.start(o.rounds, 0, { acc: '-', secs: '-' });
      let shown = 0;
      const deadline = Date.now() + 170_000;
      for (;;) {
        rec = await admin.status(id);
        while (shown < rec.history.length) {
          const h = rec.history[shown]!;
          const acc = rec.history[shown - 1]?.metrics['accuracy'];
          if (bar !== undefined) bar.update(shown + 1, { acc: acc === undefined ? '-' : acc.toFixed(3), secs: h.seconds.toFixed(1) });
          else o.progress(`round ${h.round + 1}/${o.rounds}: ${h.contributors.length} updates aggregated in ${h.seconds.toFixed(1)} s${acc === undefined ? '' : ` (held-out accuracy after round ${shown}: ${acc.toFixed(3)})`}`);
          shown += 1;
        }
        if (rec.status === 'FINISHED' || rec.status === 'FAILED' || rec.status === 'ABORTED') break;
        if (Date.now() > deadline) throw new FlareRuntimeError('E_RUNTIME_TIMEOUT', `job ${id} did not finish in 170 s`);
        await new Promise((r) => setTimeout(r, 250));
      }
      // The final round's accuracy arrives with the final validation, just after the last checkpoint.
      for (let i = 0; i < 20 && rec.status === 'FINISHED' && rec.history.at(-1)?.metrics['accuracy'] === undefined; i++) {
        await new Promise((r) => setTimeout(r, 100));
        rec = await admin.status(id);
      }
      const last = rec.history.at(-1)?.metrics['accuracy'];
      if (last !== undefined) bar?.update(rec.history.length, { acc: last.toFixed(3), secs: (rec.history.at(-1)?.seconds ?? 0).toFixed(1) });
      bar?.stop();
      if (bar === undefined && last !== undefined) o.progress(`held-out accuracy after round ${rec.history.length}: ${last.toFixed(3)}`);
    } finally {
      admin.close();
    }
    for (const p of procs.splice(0).reverse()) await p.stop();
    const audit = o.verifyAudit === undefined ? { verified: false, problems: ['no audit verifier is installed'] } : await o.verifyAudit([{ name: 'localhost', dir: workspaceOf(kitOf('localhost')), certificate: join(kitOf('localhost'), 'startup', 'server.crt') }, ...sites.map((s) => ({ name: s, dir: workspaceOf(kitOf(s)), certificate: join(kitOf(s), 'startup', 'client.crt') }))]);
    const bytes = new Map<string, number>();
    const eps = new Map<string, number>();
    for (const h of rec.history) {
      for (const [s, b] of Object.entries(h.bytes)) bytes.set(s, (bytes.get(s) ?? 0) + b);
      for (const [s, m] of Object.entries(h.site_metrics)) {
        const e = m['epsilon'] ?? m['epsilon_spent'] ?? m['epsilon_total'];
        if (e !== undefined) eps.set(s, e);
      }
    }
    const summary: PocSummary = {
      dataset,
      workspace: ws,
      job: rec.id,
      status: rec.status,
      rounds: rec.history.map((h) => ({ round: h.round, accuracy: h.metrics['accuracy'] ?? null, loss: h.metrics['loss'] ?? null, seconds: Number(h.seconds.toFixed(3)), contributors: h.contributors })),
      sites: sites.map((s) => ({ name: s, epsilon: eps.get(s) ?? null, bytes: bytes.get(s) ?? 0 })),
      audit,
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    };
    if (rec.status !== 'FINISHED') throw Object.assign(new FlareRuntimeError('E_RUNTIME_MIN_CLIENTS', `the job ended ${rec.status}: ${rec.error?.code ?? ''} ${rec.error?.message ?? ''}`), { summary });
    return summary;
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
}

/** The human summary `flare poc` prints at the end. */
export function renderSummary(s: PocSummary): string[] {
  const lines = [`FLARE-TS poc: ${s.status} in ${s.seconds} s on ${s.dataset} (workspace ${s.workspace})`, '', 'round  accuracy  loss     seconds  sites'];
  for (const r of s.rounds) lines.push(`${String(r.round + 1).padStart(5)}  ${r.accuracy === null ? '   -    ' : r.accuracy.toFixed(4).padStart(8)}  ${r.loss === null ? '   -   ' : r.loss.toFixed(4).padStart(7)}  ${r.seconds.toFixed(2).padStart(7)}  ${r.contributors.join(',')}`);
  lines.push('', 'site        epsilon   bytes moved');
  for (const x of s.sites) lines.push(`${x.name.padEnd(10)}  ${x.epsilon === null ? '   -    ' : x.epsilon.toFixed(3).padStart(8)}  ${x.bytes}`);
  lines.push('', s.audit.verified ? 'audit: every participant\'s audit log verified (hash chain and signed checkpoints intact)' : `audit: NOT verified: ${s.audit.problems.join('; ')}`);
  return lines;
}
