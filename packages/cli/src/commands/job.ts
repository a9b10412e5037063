import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError, FlareRuntimeError, decodeModel, encodeModel, parameterCount, type FLModel, type JsonValue } from '@flare/core';
import { PYTHON_CLIENT_DIR, parseMetaJson, readJobFolder, type JobDefinition } from '@flare/runtime';
import { loadCsv, readWeights, selectBackend, toDataset } from '@flare/tfjs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { CsvSource, TFJS_LEARNER, TfjsLearnerArgs, readDataSource, sourcePath, tabularNetwork } from '../data-sources.js';
import { SpamLearnerArgs, spamNetwork } from '../poc/spam-model.js';
import { runCommand, stdio, type Io } from '../run.js';
import { BUILT_IN_LEARNERS, readSiteFolder } from './simulate.js';

/** The learners `flare job create` scaffolds a job for. */
const JOB_LEARNERS = ['pytorch', 'tfjs', 'command'] as const;
/** One of {@link JOB_LEARNERS}. */
type JobLearner = (typeof JOB_LEARNERS)[number];

const JOB_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/;

/** Where the template files are: next to the compiled command in a build that copies them, else in the package's src/. */
function templateDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const d of [join(here, '..', 'job-templates'), join(here, '..', '..', 'src', 'job-templates')]) if (existsSync(join(d, 'data.py'))) return d;
  throw new CliError('E_CLI_NOT_BUILT', `the job templates are missing next to ${here} (expected src/job-templates in the @flare/cli package)`);
}

/** What an external (Python) template writes: its program, the import it needs, the learner name. */
const PYTHON_TEMPLATES = {
  pytorch: { program: 'train.py', source: 'pytorch_train.py', needs: ['numpy', 'torch'], install: 'python3-torch and python3-numpy (Debian/Ubuntu: apt-get install python3-torch python3-numpy; elsewhere: pip install torch numpy)', args: { epochs: 2, lr: 0.3, batch_size: 32 } },
  command: { program: 'learner.py', source: 'command_learner.py', needs: ['numpy'], install: 'python3-numpy (Debian/Ubuntu: apt-get install python3-numpy; elsewhere: pip install numpy)', args: { epochs: 1, lr: 0.5, batch_size: 32 } },
} as const;

/** Runs a program (no shell) with a bounded time; resolves its exit code and the tail of its output. */
function runProgram(argv: readonly [string, ...string[]], o: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<{ code: number | null; output: string; error?: Error }> {
  return new Promise((done) => {
    let output = '';
    const child = spawn(argv[0], argv.slice(1), { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b: Buffer): void => void (output = (output + b.toString('utf8')).slice(-4000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      done({ code: null, output, error });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

/**
 * The first interpreter (of `--python`, else `python3` on PATH, else /usr/bin/python3) that imports `needs`.
 *
 * @throws CliError E_CLI_PYTHON_MISSING naming what to install.
 */
async function findPython(needs: readonly string[], install: string, given?: string): Promise<string> {
  const candidates = given !== undefined ? [given] : ['python3', '/usr/bin/python3'];
  const tried: string[] = [];
  for (const py of [...new Set(candidates)]) {
    // Importing torch the first time on a busy machine takes tens of seconds: a generous bound.
    const r = await runProgram([py, '-c', `import ${needs.join(', ')}`], { cwd: tmpdir(), env: process.env, timeoutMs: 300_000 });
    if (r.code === 0) return py;
    tried.push(`${py}: ${r.error !== undefined ? 'not found' : (r.output.trim().split('\n').pop() ?? `exit ${r.code}`)}`);
  }
  throw new CliError('E_CLI_PYTHON_MISSING', `this template needs a python3 that imports ${needs.join(' and ')}; install ${install}, or pass --python (tried ${tried.join('; ')})`);
}

/** The environment a learner program runs with for `--init` (the flare_ts client on its path). */
function pythonEnv(): NodeJS.ProcessEnv {
  const path = process.env['PYTHONPATH'];
  return { ...process.env, PYTHONPATH: path === undefined || path === '' ? PYTHON_CLIENT_DIR : `${PYTHON_CLIENT_DIR}${delimiter}${path}`, PYTHONDONTWRITEBYTECODE: '1' };
}

/**
 * Asks a learner program for its initial weights: runs `argv --init FILE` in `cwd` and reads FILE.
 *
 * @throws CliError E_CLI_JOB_INIT with the command, its exit code and the end of its output.
 */
async function initialModelFrom(argv: readonly [string, ...string[]], cwd: string): Promise<FLModel> {
  const dir = await mkdtemp(join(tmpdir(), 'flare-job-init-'));
  try {
    const file = join(dir, 'model.safetensors');
    const r = await runProgram([...argv, '--init', file], { cwd, env: pythonEnv(), timeoutMs: 600_000 });
    const shown = [...argv, '--init', file].join(' ');
    if (r.code !== 0) throw new CliError('E_CLI_JOB_INIT', `\`${shown}\` (in ${cwd}) ${r.error === undefined ? `exited with ${r.code ?? 'a signal'}` : `could not start (${r.error.message})`}: ${r.output.trim().slice(-1500)}`);
    try {
      return decodeModel(new Uint8Array(await readFile(file)));
    } catch (e) {
      throw new CliError('E_CLI_JOB_INIT', `\`${shown}\` wrote no valid safetensors model (${e instanceof Error ? e.message : String(e)})`, { cause: e });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function readme(name: string, learner: JobLearner, python: string | undefined, csv = false): string {
  const steps = [
    `flare job check ${name}`,
    `flare simulate ${name} --sites 2`,
    `flare admin --kit ADMIN_KIT submit ${name}`,
  ];
  const external = learner !== 'tfjs';
  return [
    `# ${name}`,
    '',
    `A FLARE-TS job made by \`flare job create ${name} --learner ${learner}\`. See docs/jobs.md for every meta.json field.`,
    '',
    '```',
    'meta.json           the job: rounds, sites, learner and its args, aggregation, privacy scope',
    "model.safetensors   the initial global model, from the learner's own initial weights",
    ...(external ? [`site/                what each site puts in its kit's local/ folder (the site decides what runs)`, '  components.json   names the learner program (an external learner) and admits it', `  ${PYTHON_TEMPLATES[learner].program.padEnd(16)}  the training program (flare_ts client${learner === 'pytorch' ? ', PyTorch' : ', numpy'})`, '  data.py           loads the site\'s data: replace load() with your own'] : []),
    '```',
    '',
    '## Run it',
    '',
    '```sh',
    ...steps,
    '```',
    '',
    '`flare simulate` runs the folder with virtual sites in one process: the same workflow, aggregation, privacy scopes',
    'and learners as a deployed federation, over in-memory channels (no PKI).',
    ...(external
      ? [
          '',
          '## At a real site',
          '',
          `Each site copies \`site/\` into its kit's \`local/\` folder (or merges components.json with its own) and sets its`,
          'data variables in the learner\'s `env` there: `FLARE_SITE_INDEX` and `FLARE_NUM_SITES` (which share of the',
          'example data it trains on; a site with its own data keeps 0 and 1 and edits data.py). The program runs',
          `with \`${python ?? 'python3'}\`; change \`command\` in components.json if the site's interpreter is elsewhere.`,
        ]
      : csv
        ? [
            '',
            '## At a real site',
            '',
            'The `tfjs` learner is built into `flare client`: each site names its own CSV file (same columns) as its',
            'dataset `default` in its workspace\'s site.json, as `site/site.json` does here for the simulation, and',
            'admits `tfjs` in its components allow-list. The path stays at the site; see docs/learners.md.',
          ]
        : [
          '',
          '## At a real site',
          '',
          'The `tfjs-spam` learner is built into `flare client`: a site gives it its data in its workspace\'s site.json',
          '(`"data": { "site": 0, "sites": 3 }`, the poc corpus split between 3 sites) and admits it in its components',
          'allow-list.',
        ]),
    '',
  ].join('\n');
}

/**
 * The job of the built-in `tfjs` learner for a CSV file: a dense network with as many inputs as the file has
 * feature columns and as many outputs as it has classes, and `site/site.json` naming the file as the sites'
 * dataset `default` (its classes in index order, so every site maps names to the same indices).
 */
async function tabularJob(
  name: string,
  rounds: number,
  csv: string,
  label: string,
  task: 'classification' | 'regression',
  work: string,
  io: Io,
): Promise<{ definition: { [k: string]: JsonValue }; initial: FLModel }> {
  const file = resolve(csv);
  const data = await loadCsv(file, { label, task });
  let classes: number | undefined;
  if (task === 'classification') {
    let max = 0;
    for (const v of data.labels) max = Math.max(max, v);
    classes = data.classes?.length ?? max + 1;
    if (classes < 2) throw new CliError('E_CLI_JOB_OPTIONS', `${file}: the label column '${label}' has one class only; classification needs two or more (or --task regression)`);
  }
  const raw: { [k: string]: JsonValue } = { dataset: 'default', features: data.features, task, ...(classes === undefined ? {} : { classes }), hidden: [16], epochs: 10, batch_size: 16, optimizer: 'adam', learning_rate: 0.05 };
  const args = TfjsLearnerArgs.parse(raw);
  await selectBackend({});
  const initial = readWeights(tabularNetwork(args));
  const site = join(work, 'site');
  await mkdir(site);
  const source = CsvSource.parse({ type: 'csv', path: file, label, validation_split: 0.2, ...(data.classes === undefined ? {} : { classes: data.classes }) });
  await writeFile(join(site, 'site.json'), `${JSON.stringify({ datasets: { default: source } }, null, 2)}\n`);
  io.err(`job create: ${file} has ${data.n} rows, ${data.features} features (${data.featureNames.slice(0, 8).join(', ')}${data.features > 8 ? ', ...' : ''})${classes === undefined ? '' : ` and ${classes} classes`}`);
  const definition = { name, rounds, min_clients: 2, round_timeout_s: 300, deploy: ['@ALL'], learner: { name: TFJS_LEARNER, args: raw } };
  return { definition, initial };
}

/** Options of {@link createJob}. */
export interface CreateJob {
  readonly name: string;
  readonly learner: JobLearner;
  /** The folder the job folder goes in (default the working folder). */
  readonly dir?: string;
  /** The Python interpreter for pytorch and command (default: the first python3 that has what they need). */
  readonly python?: string;
  readonly rounds?: number;
  /** tfjs: the site's CSV file the job is made for (its feature count and classes); written into `site/site.json`. */
  readonly csv?: string;
  /** tfjs with `csv`: the label column. */
  readonly label?: string;
  /** tfjs with `csv`: classification (default) or regression. */
  readonly task?: 'classification' | 'regression';
}

/**
 * `flare job create NAME --learner ...`: writes a job folder that runs as created (meta.json, the initial
 * model from the learner's own initial weights, README.md, and for external learners the site folder with the
 * training program). Written in a temporary folder next to the target and renamed into place: a failure
 * leaves nothing behind.
 *
 * @throws CliError E_CLI_JOB_EXISTS, E_CLI_PYTHON_MISSING, E_CLI_JOB_INIT; E_RUNTIME_JOB_INVALID for a bad name.
 * @returns the job folder.
 */
export async function createJob(o: CreateJob, io: Io = stdio): Promise<string> {
  if (!JOB_NAME.test(o.name)) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `the job name ${JSON.stringify(o.name.slice(0, 80))} must be 1-64 letters, digits, _ . - (no leading dot): it becomes meta.json's name and the folder's`);
  const target = resolve(o.dir ?? '.', o.name);
  const existing = await stat(target).catch(() => undefined);
  if (existing !== undefined && (!existing.isDirectory() || (await readdir(target)).length > 0)) throw new CliError('E_CLI_JOB_EXISTS', `${target} already exists and is not an empty folder; nothing was written`);
  await mkdir(dirname(target), { recursive: true });
  const work = await mkdtemp(join(dirname(target), `.${basename(target)}.tmp-`));
  try {
    const rounds = o.rounds ?? 5;
    let definition: { [k: string]: JsonValue };
    let initial: FLModel;
    let python: string | undefined;
    if (o.learner !== 'tfjs' && (o.csv !== undefined || o.label !== undefined)) throw new CliError('E_CLI_JOB_OPTIONS', '--csv and --label make a job for the built-in tfjs learner: use them with --learner tfjs');
    if (o.learner === 'tfjs' && (o.csv === undefined) !== (o.label === undefined)) throw new CliError('E_CLI_JOB_OPTIONS', '--csv FILE and --label COLUMN go together: the label column of that CSV file');
    if (o.learner === 'tfjs' && o.csv !== undefined && o.label !== undefined) {
      ({ definition, initial } = await tabularJob(o.name, rounds, o.csv, o.label, o.task ?? 'classification', work, io));
    } else if (o.learner === 'tfjs') {
      const args = { features: 1024, hidden: 16, epochs: 1, batch_size: 32, optimizer: 'adam', learning_rate: 0.01 };
      await selectBackend({});
      initial = readWeights(spamNetwork(args.features, args.hidden));
      definition = { name: o.name, rounds, min_clients: 2, round_timeout_s: 300, deploy: ['@ALL'], learner: { name: 'tfjs-spam', args } };
    } else {
      const t = PYTHON_TEMPLATES[o.learner];
      python = await findPython(t.needs, t.install, o.python);
      const site = join(work, 'site');
      await mkdir(site);
      const src = templateDir();
      await writeFile(join(site, t.program), await readFile(join(src, t.source)));
      await writeFile(join(site, 'data.py'), await readFile(join(src, 'data.py')));
      const components = {
        format_version: '1.0',
        allow: [o.learner],
        byoc: false,
        learners: {
          [o.learner]: {
            type: 'external',
            command: [python, `{local_dir}/${t.program}`],
            env: { FLARE_SITE_INDEX: '0', FLARE_NUM_SITES: '1', OMP_NUM_THREADS: '1' },
            // The first `import torch` can take a minute on a busy machine.
            start_timeout_s: 300,
            train_timeout_s: 1800,
          },
        },
      };
      await writeFile(join(site, 'components.json'), `${JSON.stringify(components, null, 2)}\n`);
      io.err(`job create: asking ${t.program} for its initial weights (${python})`);
      initial = await initialModelFrom([python, join(site, t.program)], site);
      definition = { name: o.name, rounds, min_clients: 2, round_timeout_s: 900, deploy: ['@ALL'], learner: { name: o.learner, args: t.args } };
    }
    parseMetaJson(new TextEncoder().encode(JSON.stringify(definition)), join(target, 'meta.json'));
    await writeFile(join(work, 'meta.json'), `${JSON.stringify(definition, null, 2)}\n`);
    await writeFile(join(work, 'model.safetensors'), encodeModel(initial));
    await writeFile(join(work, 'README.md'), readme(o.name, o.learner, python, o.csv !== undefined));
    if (existing !== undefined) await rm(target, { recursive: true });
    await rename(work, target);
    io.out(`created ${target} (${o.learner}: ${initial.params.size} tensors, ${parameterCount(initial)} parameters)`);
    return target;
  } catch (e) {
    await rm(work, { recursive: true, force: true });
    throw e;
  }
}

/** Compares a model's tensors with what a learner expects: every name present, no extra, same shapes. */
function compareTensors(model: FLModel, expected: FLModel, file: string, learner: string): void {
  const problems: string[] = [];
  for (const [name, t] of expected.params) {
    const got = model.params.get(name);
    if (got === undefined) problems.push(`${name} is missing`);
    else if (got.shape.join('x') !== t.shape.join('x')) problems.push(`${name} has shape [${got.shape.join(', ')}], the learner's is [${t.shape.join(', ')}]`);
  }
  for (const name of model.params.keys()) if (!expected.params.has(name)) problems.push(`${name} is not a tensor of the learner`);
  if (problems.length > 0) throw new CliError('E_CLI_JOB_MODEL_MISMATCH', `${file} does not fit learner ${learner}: ${problems.slice(0, 8).join('; ')}${problems.length > 8 ? `; and ${problems.length - 8} more` : ''}`);
}

/** What `flare job check` found. */
export interface JobCheck {
  readonly definition: JobDefinition;
  readonly tensors: number;
  readonly parameters: number;
  /** How the tensor names were checked: against the learner, or why not. */
  readonly learner: string;
}

/**
 * `flare job check DIR`: validates a job folder offline. meta.json against the job schema (the runtime's, as the
 * server and every site check it), model.safetensors, the learner args of a built-in learner, and the model's
 * tensor names and shapes against the learner when it can ask it: the built-in tfjs learner, or a program in the
 * job's site folder that writes its initial weights with `--init FILE` (as the templates do).
 *
 * @throws FlareRuntimeError E_RUNTIME_JOB_INVALID naming the file and field; CliError E_CLI_JOB_MODEL_MISMATCH
 *   naming the tensor; E_CLI_JOB_INIT when the learner program fails to answer.
 */
export async function checkJob(dir: string, o: { readonly siteDir?: string } = {}): Promise<JobCheck> {
  const jobDir = resolve(dir);
  const bundle = await readJobFolder(jobDir);
  const metaFile = join(jobDir, 'meta.json');
  const modelFile = join(jobDir, 'model.safetensors');
  const { definition } = parseMetaJson(bundle.meta, metaFile);
  const model = decodeModel(bundle.model ?? new Uint8Array(0));
  const base = { definition, tensors: model.params.size, parameters: parameterCount(model) };
  const name = definition.learner.name;
  if (name === 'tfjs-spam') {
    const r = SpamLearnerArgs.safeParse(definition.learner.args);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `${metaFile}: learner.args${issue === undefined || issue.path.length === 0 ? '' : `.${issue.path.join('.')}`}: ${issue?.message ?? 'invalid'} (learner tfjs-spam)`);
    }
    await selectBackend({});
    compareTensors(model, readWeights(spamNetwork(r.data.features, r.data.hidden)), modelFile, name);
    return { ...base, learner: `tensor names and shapes match the built-in learner ${name}` };
  }
  const siteDir = o.siteDir ?? join(jobDir, 'site');
  const folder = await readSiteFolder(siteDir);
  if (name === TFJS_LEARNER && folder.learners[name] === undefined) {
    const r = TfjsLearnerArgs.safeParse(definition.learner.args);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `${metaFile}: learner.args${issue === undefined || issue.path.length === 0 ? '' : `.${issue.path.join('.')}`}: ${issue?.message ?? 'invalid'} (learner tfjs)`);
    }
    await selectBackend({});
    compareTensors(model, readWeights(tabularNetwork(r.data)), modelFile, name);
    // The simulated sites' dataset, when the site folder names one file for all: it must fit the network.
    const source = folder.datasets?.[r.data.dataset];
    if (source === undefined || source.path.includes('{site}')) return { ...base, learner: `tensor names and shapes match the built-in learner ${name}` };
    const path = sourcePath(source, folder.dir, 'site-1');
    const data = await readDataSource(source, { path, task: r.data.task, name: path });
    if (data.features !== r.data.features) throw new CliError('E_CLI_JOB_MODEL_MISMATCH', `${path} has ${data.features} features, meta.json's learner.args.features is ${r.data.features}`);
    toDataset(data, { task: r.data.task, ...(r.data.classes === undefined ? {} : { classes: r.data.classes }) }, path);
    return { ...base, learner: `tensor names and shapes match the built-in learner ${name}, and so does ${path} (${data.n} rows, ${data.features} features)` };
  }
  const d = folder.learners[name];
  const command = typeof d === 'object' && d !== null && !Array.isArray(d) && d['type'] === 'external' && Array.isArray(d['command']) ? d['command'] : undefined;
  if (command === undefined || command.length === 0 || !command.every((c) => typeof c === 'string')) {
    const known = (BUILT_IN_LEARNERS as readonly string[]).concat(Object.keys(folder.learners));
    return { ...base, learner: `learner ${name} is not an external learner of ${join(siteDir, 'components.json')} (known here: ${known.join(', ')}): tensor names not checked` };
  }
  if (command.some((c) => c.includes('{job_dir}') || c.includes('{custom_dir}'))) return { ...base, learner: `learner ${name} runs the job's own code: tensor names not checked` };
  const argv = command.map((c) => c.replaceAll('{local_dir}', folder.dir)) as [string, ...string[]];
  compareTensors(model, await initialModelFrom(argv, folder.dir), modelFile, name);
  return { ...base, learner: `tensor names and shapes match what ${argv.slice(1).join(' ')} --init writes` };
}

/** `flare job create` and `flare job check`. */
export function register(program: Command): void {
  const job = program.command('job').description('author job folders: scaffold one that runs as created, check one offline');
  job
    .command('create <name>')
    .description("scaffold a job folder: meta.json, model.safetensors from the learner's own initial weights, README.md, and for external learners the site folder with the training program")
    .addOption(new Option('--learner <kind>', 'pytorch (a PyTorch script with the flare_ts client), tfjs (the built-in tfjs learner), command (a numpy program with the flare_ts client)').choices(JOB_LEARNERS).makeOptionMandatory())
    .option('--dir <dir>', 'create the job folder in this folder (default: the working folder)')
    .option('--python <path>', 'the Python interpreter for pytorch and command (default: python3, else /usr/bin/python3, whichever imports what they need)')
    .option('--rounds <n>', 'rounds to run (default 5)', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new InvalidArgumentError(`expected an integer 1..100000, got ${v}`);
      return n;
    })
    .option('--csv <file>', "tfjs: make the job for this CSV file's columns (its feature count and classes); written as the sites' dataset in site/site.json")
    .option('--label <column>', 'tfjs with --csv: the label column')
    .addOption(new Option('--task <task>', 'tfjs with --csv: what the label is (default classification)').choices(['classification', 'regression']))
    .action((name: string, o: { learner: JobLearner; dir?: string; python?: string; rounds?: number; csv?: string; label?: string; task?: 'classification' | 'regression' }) => runCommand(() => createJob({ name, ...o }).then(() => undefined)).then(() => undefined));
  job
    .command('check <dir>')
    .description("validate a job folder offline: meta.json (the runtime's job schema), model.safetensors, and its tensor names against the learner when it can be asked")
    .option('--site-dir <dir>', "the site folder defining external learners (default <dir>/site)")
    .action((dir: string, o: { siteDir?: string }) =>
      runCommand(async () => {
        const r = await checkJob(dir, o);
        const d = r.definition;
        stdio.out(`meta.json: ok (${d.name}: ${d.workflow}, ${d.rounds} rounds, min_clients ${d.min_clients}, deploy ${d.deploy.join(',')}, learner ${d.learner.name}${d.scope === undefined ? '' : `, scope ${d.scope}`})`);
        stdio.out(`model.safetensors: ok (${r.tensors} tensors, ${r.parameters} parameters)`);
        stdio.out(`learner: ${r.learner}`);
      }).then(() => undefined),
    );
}
