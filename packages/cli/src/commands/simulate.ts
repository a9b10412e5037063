import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CliError, FlareRuntimeError, flareErrorFromCode, isFlareErrorCode, parseStrictJson, writeFileAtomic, type AggregationScheme, type FilterFactory, type JsonValue, type Logger } from '@flare/core';
import type * as FiltersHe from '@flare/filters-he';
import { createLogger, learnerFactories, loadOptionalPeer, parseMetaJson, readJobFolder, simulateJob, simulatedSitePolicy, type ClosableLogger, type JobDefinition, type LearnerFactory, type SimulatedSite } from '@flare/runtime';
import { selectBackend } from '@flare/tfjs';
import { InvalidArgumentError, type Command } from 'commander';
import { DataSources, TFJS_LEARNER, tfjsLearnerFactory } from '../data-sources.js';
import { loadSiteData } from '../poc/dataset.js';
import { spamLearnerFactory } from '../poc/spam-model.js';
import { defaultStack } from '../poc/stack.js';
import { runCommand, stdio, type Io } from '../run.js';
import { showMetrics } from './metrics.js';

/** The learner every `flare client` with site.json data has built in (and so every simulated site). */
export const BUILT_IN_LEARNERS = ['tfjs-spam', 'tfjs'] as const;

/**
 * A site's own folder as a simulation (and `flare job check`) reads it: what a site keeps in its kit's
 * `local/`. `components.json` (its `learners` section: external programs and plugins; `allow`, `byoc`) and
 * `privacy.json` (its scopes) are read when present; everything else is the simulator's default.
 */
export interface SiteFolder {
  readonly dir: string;
  /** components.json's `learners` section, as written (parsed by the runtime's learnerFactories). */
  readonly learners: { readonly [name: string]: JsonValue };
  /** components.json without `learners` (the allow-list and BYOC consent), when the file exists. */
  readonly components?: { readonly allow: readonly string[]; readonly byoc: boolean };
  /** privacy.json as written, when it exists. */
  readonly privacy?: JsonValue;
  /** site.json's `datasets` (the built-in tfjs learner's data sources), when present; paths relative to `dir`. */
  readonly datasets?: DataSources;
}

async function jsonFile(file: string): Promise<JsonValue | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError('E_CLI_SIMULATE_CONFIG', `cannot read ${file} (${(e as Error).message})`, { cause: e });
  }
  try {
    return parseStrictJson(text);
  } catch (e) {
    throw new CliError('E_CLI_SIMULATE_CONFIG', `${file} is not valid JSON (${e instanceof Error ? e.message : 'invalid'})`, { cause: e });
  }
}

const isObject = (v: unknown): v is { [k: string]: JsonValue } => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads a site folder (components.json, privacy.json, site.json's `datasets`). A missing folder or file is the
 * default (none).
 *
 * @throws CliError E_CLI_SIMULATE_CONFIG naming the file and field at fault.
 */
export async function readSiteFolder(dir: string): Promise<SiteFolder> {
  const file = join(dir, 'components.json');
  const components = await jsonFile(file);
  const privacy = await jsonFile(join(dir, 'privacy.json'));
  if (components !== undefined && !isObject(components)) throw new CliError('E_CLI_SIMULATE_CONFIG', `${file}: must be an object with allow, byoc and learners`);
  const learners = components?.['learners'] ?? {};
  if (!isObject(learners)) throw new CliError('E_CLI_SIMULATE_CONFIG', `${file}: learners must be an object of learner definitions by name`);
  const allow = components?.['allow'] ?? [];
  if (!Array.isArray(allow) || !allow.every((a) => typeof a === 'string')) throw new CliError('E_CLI_SIMULATE_CONFIG', `${file}: allow must be an array of component names`);
  const byoc = components?.['byoc'] ?? false;
  if (typeof byoc !== 'boolean') throw new CliError('E_CLI_SIMULATE_CONFIG', `${file}: byoc must be true or false`);
  const siteFile = join(dir, 'site.json');
  const site = await jsonFile(siteFile);
  const datasets = isObject(site) && site['datasets'] !== undefined ? DataSources.safeParse(site['datasets']) : undefined;
  if (datasets?.success === false) {
    const issue = datasets.error.issues[0];
    throw new CliError('E_CLI_SIMULATE_CONFIG', `${siteFile}: datasets${issue === undefined || issue.path.length === 0 ? '' : `.${issue.path.join('.')}`}: ${issue?.message ?? 'invalid'}`);
  }
  return {
    dir: resolve(dir),
    learners,
    ...(datasets?.success === true ? { datasets: datasets.data } : {}),
    ...(components === undefined ? {} : { components: { allow: allow as string[], byoc } }),
    ...(privacy === undefined ? {} : { privacy }),
  };
}

/** `--data-split`: `iid` or `dirichlet:ALPHA` (label skew). */
function dataSplit(v: string): string {
  if (v === 'iid' || (/^dirichlet:\d+(\.\d+)?$/.test(v) && Number(v.slice(10)) > 0)) return v;
  throw new InvalidArgumentError(`expected iid or dirichlet:ALPHA (ALPHA > 0), got ${v}`);
}

const HE_IN = { name: 'he-decrypt', args: {} };
const HE_OUT = { name: 'he-encrypt', args: {} };

/**
 * The sites' privacy.json with HE (`--he`): in every scope, the global model is decrypted before the scope's other
 * data filters and the update encrypted after its other result filters (so DP noise is added before encryption),
 * as a site with an HE kit writes it. Without a privacy.json: one scope, named as the job asks, with HE only.
 */
export function withHe(privacy: JsonValue | undefined, scope: string): JsonValue {
  const p: JsonValue = privacy ?? { format_version: '1.0', scopes: [{ name: scope }], default_scope: scope };
  if (!isObject(p) || !Array.isArray(p['scopes'])) return p;
  const list = (v: JsonValue | undefined): JsonValue[] => (Array.isArray(v) ? v : []);
  return {
    ...p,
    scopes: p['scopes'].map((sc) => (isObject(sc) ? { ...sc, task_data_filters: [HE_IN, ...list(sc['task_data_filters'])], task_result_filters: [...list(sc['task_result_filters']), HE_OUT] } : sc)),
  };
}

/** Options of {@link runSimulation}. */
export interface SimulateRun {
  readonly jobDir: string;
  readonly sites?: number;
  /** The simulated sites' own folder (default `<jobDir>/site` when present). */
  readonly siteDir?: string;
  readonly dataSplit?: string;
  readonly seed?: number;
  /** Keep everything here (default: a temporary folder, removed at the end). */
  readonly workspace?: string;
  /** Write the final global model here. */
  readonly output?: string;
  readonly csv?: string;
  readonly plot?: string;
  /** Show the sites' and the server's log lines on stderr. */
  readonly verbose?: boolean;
  /**
   * Homomorphic encryption, as at a site whose kit has the HE context: a CKKS key set made for this run, every
   * virtual site's scope decrypting the global model first (he-decrypt) and encrypting its update last
   * (he-encrypt), and the server aggregating ciphertexts it cannot read (@flare/filters-he, an optional peer).
   */
  readonly he?: boolean;
  readonly signal?: AbortSignal;
}

/**
 * The learners of one simulated site, as a real site has them: the built-in tfjs-spam learner on this site's
 * share of the poc data, the built-in tfjs learner on this site's share of the site folder's datasets (or its own
 * file, for a path with `{site}`), and the site folder's components.json learners, each external program told which share of
 * the data is its own (FLARE_SITE_INDEX, FLARE_NUM_SITES, FLARE_DATA_SPLIT, FLARE_DATA_SEED in its env).
 */
function siteLearners(folder: SiteFolder, definition: JobDefinition, s: SimulatedSite, split: string, seed: number, logger: Logger): Map<string, LearnerFactory<unknown>> {
  const share = { FLARE_SITE_INDEX: String(s.index), FLARE_NUM_SITES: String(s.sites), FLARE_DATA_SPLIT: split, FLARE_DATA_SEED: String(seed) };
  const section = Object.fromEntries(
    Object.entries(folder.learners).map(([name, d]) => [name, isObject(d) && d['type'] === 'external' ? { ...d, env: { ...(isObject(d['env']) ? d['env'] : {}), ...share } } : d]),
  );
  const learners = new Map(learnerFactories(section, { localDir: folder.dir, logger }));
  if (!learners.has('tfjs-spam')) {
    const features = definition.learner.args['features'];
    let cached: ReturnType<typeof loadSiteData> | undefined;
    learners.set('tfjs-spam', spamLearnerFactory(() => (cached ??= loadSiteData({ site: s.index, sites: s.sites, seed, ...(typeof features === 'number' ? { features } : {}) }))));
  }
  if (!learners.has(TFJS_LEARNER) && folder.datasets !== undefined) {
    learners.set(TFJS_LEARNER, tfjsLearnerFactory({ datasets: folder.datasets, baseDir: folder.dir, share: { index: s.index, sites: s.sites, split, seed }, logger }));
  }
  return learners;
}

/**
 * `flare simulate JOB_DIR`: runs the job folder with virtual sites in this process (the runtime's simulator):
 * prints each round as it completes, then the metrics table; writes the final model, CSV and plot when asked.
 *
 * @throws the job's own error (its code) when it does not finish; CliError E_CLI_SIMULATE_CONFIG for a site
 *   folder or option at fault.
 */
export async function runSimulation(o: SimulateRun, io: Io = stdio): Promise<void> {
  const jobDir = resolve(o.jobDir);
  const job = await readJobFolder(jobDir);
  const { definition } = parseMetaJson(job.meta, join(jobDir, 'meta.json'));
  const siteDir = o.siteDir ?? join(jobDir, 'site');
  const folder = await readSiteFolder(siteDir);
  const name = definition.learner.name;
  if (folder.learners[name] === undefined && !(BUILT_IN_LEARNERS as readonly string[]).includes(name)) {
    throw new CliError('E_CLI_SIMULATE_CONFIG', `meta.json names the learner ${name}, which no simulated site has: define it in the learners section of ${join(siteDir, 'components.json')} or use a built-in one (${BUILT_IN_LEARNERS.join(', ')})`);
  }
  if (name === TFJS_LEARNER && folder.learners[name] === undefined && folder.datasets === undefined) {
    throw new CliError('E_CLI_SIMULATE_CONFIG', `meta.json names the built-in learner tfjs, which trains on the sites' own data: name a dataset in the datasets section of ${join(siteDir, 'site.json')} (see docs/learners.md)`);
  }
  if (name === 'tfjs-spam' && o.dataSplit !== undefined) {
    throw new CliError('E_CLI_SIMULATE_CONFIG', '--data-split: the built-in tfjs-spam learner splits the poc corpus its own way (label-skewed by site); leave --data-split out');
  }
  if (name === 'tfjs-spam' || name === TFJS_LEARNER) await selectBackend({});
  const split = o.dataSplit ?? 'iid';
  const seed = o.seed ?? 42;
  const ws = o.workspace === undefined ? await mkdtemp(join(tmpdir(), 'flare-simulate-')) : resolve(o.workspace);
  const filters = new Map(defaultStack().filters());
  let schemes: AggregationScheme[] | undefined;
  let heKeys: Awaited<ReturnType<typeof FiltersHe.generateHeKeys>> | undefined;
  if (o.he === true) {
    const heLib = await loadOptionalPeer<typeof FiltersHe>('@flare/filters-he', 'flare simulate --he');
    io.err('simulate: making a CKKS key set for this run (--he)');
    heKeys = await heLib.generateHeKeys();
    const source = { context: heKeys.client };
    filters.set('he-encrypt', heLib.heEncryptFactory(source) as FilterFactory<unknown>);
    filters.set('he-decrypt', heLib.heDecryptFactory(source) as FilterFactory<unknown>);
    schemes = [heLib.heAggregationScheme(heKeys.server)];
  }
  const privacy = o.he === true ? withHe(folder.privacy, definition.scope ?? 'public') : folder.privacy;
  // A site admits what its own scope runs: with --he and no components.json, the job's components and HE's.
  const heComponents = o.he === true ? [HE_IN.name, HE_OUT.name] : [];
  const own = [name, ...definition.task_data_filters.map((f) => f.name), ...definition.task_result_filters.map((f) => f.name)];
  const loggers: ClosableLogger[] = [];
  let open = true;
  // Engines may log a late line while they shut down: after the end it goes nowhere instead of into a closed file.
  const logger = (who: string): Logger => {
    const l = createLogger({ name: who, file: join(ws, `${who}.log.jsonl`), console: o.verbose === true });
    loggers.push(l);
    const at =
      (level: keyof Logger) =>
      (msg: string, fields?: Record<string, unknown>): void => {
        if (open) l[level](msg, fields);
      };
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  };
  const started = Date.now();
  try {
    io.err(`simulate: job ${definition.name} (${definition.workflow}, ${definition.rounds} rounds, learner ${name}${o.he === true ? ', HE' : ''}) in ${ws}`);
    const result = await simulateJob({
      job,
      ...(o.sites === undefined ? {} : { sites: o.sites }),
      workspace: ws,
      filters,
      learners: (s) => siteLearners(folder, definition, s, split, seed, logger(`${s.name}-learners`)),
      policy: (_s, d) => {
        try {
          return simulatedSitePolicy(d, filters, {
            ...(privacy === undefined ? {} : { privacy }),
            ...(folder.components === undefined
              ? o.he === true
                ? { components: { format_version: '1.0', allow: [...new Set([...own, ...heComponents])], byoc: false } }
                : {}
              : { components: { format_version: '1.0', allow: [...new Set([...folder.components.allow, ...Object.keys(folder.learners), ...heComponents])], byoc: folder.components.byoc } }),
          });
        } catch (e) {
          throw new CliError('E_CLI_SIMULATE_CONFIG', `the site folder ${siteDir}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        }
      },
      ...(schemes === undefined ? {} : { schemes }),
      logger: logger('server'),
      siteLogger: (s) => logger(s.name),
      onRound: (h) => {
        const train = Object.entries(h.site_metrics)
          .map(([site, m]) => {
            const loss = m['train_loss'] ?? m['loss'];
            return loss === undefined ? site : `${site} ${loss.toFixed(4)}`;
          })
          .join(', ');
        io.err(`round ${h.round + 1}/${definition.rounds}: ${h.contributors.length} sites in ${h.seconds.toFixed(1)} s${h.encrypted === true ? ', encrypted' : ''}${train === '' ? '' : ` (training loss: ${train})`}`);
      },
      ...(o.signal === undefined ? {} : { signal: o.signal }),
    });
    const r = result.record;
    await showMetrics(r, { csv: o.csv, plot: o.plot }, (l) => io.out(l));
    io.out(`job ${r.name}: ${r.status} after ${r.rounds_done} rounds with ${result.sites.length} simulated sites in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    for (const [site, why] of Object.entries(r.refused)) io.out(`  ${site} refused or left: ${why}`);
    if (result.model !== undefined && o.output !== undefined) {
      await writeFileAtomic(resolve(o.output), result.model, { mode: 0o644 });
      io.out(`final model: ${resolve(o.output)}`);
    }
    if (r.status !== 'FINISHED') {
      const code = r.error?.code;
      const message = `the simulated job ${r.status}: ${r.error?.message ?? 'no reason recorded'}`;
      throw isFlareErrorCode(code) ? flareErrorFromCode(code, message) : new FlareRuntimeError('E_RUNTIME_SIMULATION', message);
    }
  } finally {
    heKeys?.client.dispose();
    heKeys?.server.dispose();
    open = false;
    for (const l of loggers) await l.close();
    if (o.workspace === undefined) await rm(ws, { recursive: true, force: true });
  }
}

function sitesCount(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError(`expected an integer 1..64, got ${v}`);
  return n;
}

/** `flare simulate JOB_DIR --sites N [--data-split ...] [--workspace DIR]`. */
export function register(program: Command): void {
  program
    .command('simulate <jobDir>')
    .description("run a job folder with N virtual sites in this process: the server's workflow and aggregation, each site's policy, privacy scope, filters and learners, over in-memory channels (no PKI)")
    .option('--sites <n>', 'how many virtual sites for a job deployed to @ALL (default 2; a deploy list names its own)', sitesCount)
    .option('--site-dir <dir>', "the simulated sites' own folder, as a site's kit local/: components.json (learners, allow), privacy.json (default <jobDir>/site)")
    .option('--data-split <split>', "how the sites share the data: iid or dirichlet:ALPHA (label skew); external learners get it as FLARE_DATA_SPLIT, the built-in tfjs learner deals a dataset whose path has no {site} this way (default iid)", dataSplit)
    .option('--seed <n>', 'seed of the data split (default 42)', (v: string) => {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got ${v}`);
      return n;
    })
    .option('--workspace <dir>', "keep the server's job store, each site's folder and the logs here (default: a temporary folder, removed)")
    .option('-o, --output <file>', 'write the final global model (safetensors) here')
    .option('--csv <file>', 'write the per-round metrics as CSV')
    .option('--plot <file>', 'draw the per-round metrics as an SVG')
    .option('--he', "encrypt every site's update (CKKS, a key set made for this run): the sites' scopes decrypt and encrypt, the server aggregates ciphertexts (needs @flare/filters-he)", false)
    .option('-v, --verbose', "show the server's and the sites' log lines (and the learners' output) on stderr", false)
    .action((jobDir: string, o: { sites?: number; siteDir?: string; dataSplit?: string; seed?: number; workspace?: string; output?: string; csv?: string; plot?: string; verbose: boolean; he: boolean }) => {
      const ac = new AbortController();
      const stop = (): void => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return runCommand(() => runSimulation({ jobDir, ...o, signal: ac.signal })).then(() => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      });
    });
}
