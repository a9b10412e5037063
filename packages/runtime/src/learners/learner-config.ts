import { mkdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { delimiter, isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LearnerError, silentLogger, type JsonValue, type Learner, type Logger } from '@flare/core';
import { z } from 'zod';
import type { LearnerEnv, LearnerFactory } from '../index.js';
import { ExternalLearner } from './external-learner.js';
import { guardLearner } from './guarded-learner.js';
import { LEARNER_PROTOCOL_VERSION } from './protocol.js';
import { PYTHON_CLIENT_DIR } from './python-client.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const seconds = (max: number, dflt: number) => z.number().positive().max(max).default(dflt);
const DAY = 86_400;

const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.string().max(4096), z.number(), z.boolean(), z.null(), z.array(jsonValue).max(1024), z.record(z.string().max(128), jsonValue)]),
);

/** A relative folder inside the job's workspace (no `..`, not absolute). */
const insideJob = z
  .string()
  .max(1024)
  .refine((p) => !isAbsolute(p) && !p.split(/[\\/]/).includes('..'), 'must be a relative path inside the job folder (no .., not absolute)');

/** What a site sets for any program it runs as a learner: its environment and its limits. */
const programFields = {
  /** Environment variables set for the program (values may use the placeholders). */
  env: z.record(z.string().regex(ENV_NAME), z.string().max(32_768)).default({}),
  /** Variables passed through from the site's own environment (default PATH only). */
  inherit_env: z.array(z.string().regex(ENV_NAME)).max(256).default(['PATH']),
  /** The working folder, relative to the job's folder (default the job's folder itself). */
  cwd: insideJob.default('.'),
  start_timeout_s: seconds(DAY, 120),
  train_timeout_s: seconds(7 * DAY, 3600),
  validate_timeout_s: seconds(7 * DAY, 600),
  stop_timeout_s: seconds(3600, 10),
  /** Starts after a failure allowed per job (default 2). */
  max_restarts: z.int().min(0).max(1000).default(2),
  /** Largest frame accepted from the program whatever the model size, MiB (default 4096). */
  max_frame_mib: z.int().min(1).max(1 << 20).default(4096),
};

/**
 * An external learner as a site defines it in local/components.json: the program (argv, no shell), its
 * environment and its limits. `{job_dir}`, `{custom_dir}` and `{local_dir}` in `command`, `env` values are
 * replaced by the job's folder, the job's verified BYOC folder, and the folder of components.json.
 */
export const ExternalLearnerDefinition = z.strictObject({
  type: z.literal('external'),
  /** argv: the program, then its arguments. */
  command: z.array(z.string().min(1).max(4096)).min(1).max(256),
  ...programFields,
});
/** A parsed external learner definition. */
export type ExternalLearnerDefinition = z.output<typeof ExternalLearnerDefinition>;

/**
 * An in-process learner plugin: an ES module (a path, relative to the folder of components.json, or a package
 * name) whose default export makes a Learner from the job's args and the site's env (with `options`).
 */
export const PluginLearnerDefinition = z.strictObject({
  type: z.literal('module'),
  module: z.string().min(1).max(4096),
  /** Site-side settings handed to the plugin (data paths, ...); the job never sees or sets them. */
  options: z.record(z.string().max(128), jsonValue).default({}),
  train_timeout_s: seconds(7 * DAY, 3600).optional(),
  validate_timeout_s: seconds(7 * DAY, 600).optional(),
});
/** A parsed plugin learner definition. */
export type PluginLearnerDefinition = z.output<typeof PluginLearnerDefinition>;

const interpreter = z.array(z.string().min(1).max(4096)).min(1).max(64);

/**
 * A learner that runs the job's own code (BYOC): the program is a file of the job's `custom/` folder, which the
 * site runs only when it consents to BYOC (`byoc: true`) and the submitter's signature over those files checked.
 * The job names the file in its learner args (`entry`); the site decides the interpreters (argv, no shell), the
 * environment and the limits. The code always runs as a subprocess, never in the site's own process.
 */
export const ByocLearnerDefinition = z.strictObject({
  type: z.literal('byoc'),
  /** The interpreter of `.py` entries (default `python3`). */
  python: interpreter.default(['python3']),
  /** The interpreter of `.mjs` / `.js` entries (default the Node that runs the site). */
  node: interpreter.optional(),
  ...programFields,
});
/** A parsed BYOC learner definition. */
export type ByocLearnerDefinition = z.output<typeof ByocLearnerDefinition>;

/** Any learner definition of components.json's `learners` section. */
export const LearnerDefinition = z.discriminatedUnion('type', [ExternalLearnerDefinition, PluginLearnerDefinition, ByocLearnerDefinition]);
/** A parsed learner definition. */
export type LearnerDefinition = z.output<typeof LearnerDefinition>;

/** The job's arguments to a learner it names: any small JSON object (the learner validates what it uses). */
const JobArgs = z.record(z.string().max(128), jsonValue);

/** What a plugin's default export receives besides the job's args. */
export interface PluginLearnerEnv {
  readonly site: string;
  readonly job: string;
  readonly workspace: string;
  readonly jobWorkspace: string;
  readonly customDir?: string;
  /** The site's `options` from components.json. */
  readonly options: { readonly [k: string]: JsonValue };
  readonly logger: Logger;
}

/** A plugin module's default export: a function, or an object with `create`. */
type PluginExport = ((args: unknown, env: PluginLearnerEnv) => Learner | Promise<Learner>) | { create(args: unknown, env: PluginLearnerEnv): Learner | Promise<Learner> };

/** Options of {@link learnerFactories}. */
export interface LearnerFactoriesOptions {
  /** The folder of components.json (the kit's `local/`): relative plugin paths and `{local_dir}` resolve here. */
  readonly localDir: string;
  /** The site's own environment, for `inherit_env` (default process.env). */
  readonly environment?: Readonly<Record<string, string | undefined>>;
  readonly logger?: Logger;
}

function configError(name: string, issues: readonly z.core.$ZodIssue[]): LearnerError {
  const first = issues[0];
  const field = first === undefined || first.path.length === 0 ? '' : `.${first.path.join('.')}`;
  return new LearnerError('E_LEARNER_CONFIG', `components.json learners.${name}${field}: ${first?.message ?? 'invalid'}`);
}

/**
 * Parses the `learners` section of a site's local/components.json: `{ name: { type: 'external' | 'module', ... } }`.
 *
 * @throws LearnerError E_LEARNER_CONFIG naming the learner and the field.
 */
export function parseLearnerDefinitions(section: unknown): Map<string, LearnerDefinition> {
  if (section === undefined) return new Map();
  if (typeof section !== 'object' || section === null || Array.isArray(section)) {
    throw new LearnerError('E_LEARNER_CONFIG', 'components.json learners: must be an object of learner definitions by name');
  }
  const out = new Map<string, LearnerDefinition>();
  for (const [name, raw] of Object.entries(section)) {
    const r = LearnerDefinition.safeParse(raw);
    if (!r.success) throw configError(name, r.error.issues);
    out.set(name, r.data);
  }
  return out;
}

function expand(text: string, values: Readonly<Record<string, string | undefined>>, at: string): string {
  return text.replace(/\{(job_dir|custom_dir|local_dir)\}/g, (_, key: string) => {
    const v = values[key];
    if (v === undefined) throw new LearnerError('E_LEARNER_BYOC', `${at}: the learner runs the job's own code ({custom_dir}) but the job brought no verified custom/ folder here`);
    return v;
  });
}

function jobFolder(env: LearnerEnv): string {
  return env.jobWorkspace;
}

/** The program's environment: what the site passes through and sets, then the protocol's own variables. */
function programEnvironment(d: ExternalLearnerDefinition | ByocLearnerDefinition, env: LearnerEnv, jobDir: string, values: Readonly<Record<string, string | undefined>>, at: string, o: LearnerFactoriesOptions): Record<string, string> {
  const site = o.environment ?? process.env;
  const programEnv: Record<string, string> = {};
  for (const k of d.inherit_env) {
    const v = site[k];
    if (v !== undefined) programEnv[k] = v;
  }
  for (const [k, v] of Object.entries(d.env)) programEnv[k] = expand(v, values, at);
  // The protocol's own variables, and the Python client on the path (after the site's own entries).
  programEnv['FLARE_LEARNER_PROTOCOL'] = String(LEARNER_PROTOCOL_VERSION);
  programEnv['FLARE_LEARNER_IN_FD'] = '3';
  programEnv['FLARE_LEARNER_OUT_FD'] = '4';
  programEnv['FLARE_SITE'] = env.site;
  programEnv['FLARE_JOB'] = env.job;
  programEnv['FLARE_JOB_DIR'] = jobDir;
  programEnv['PYTHONPATH'] = programEnv['PYTHONPATH'] === undefined ? PYTHON_CLIENT_DIR : `${programEnv['PYTHONPATH']}${delimiter}${PYTHON_CLIENT_DIR}`;
  // Prints reach the site log as they happen; the client's own folder stays free of __pycache__.
  programEnv['PYTHONUNBUFFERED'] ??= '1';
  programEnv['PYTHONDONTWRITEBYTECODE'] ??= '1';
  return programEnv;
}

/** Starts `command` as the job's learner under definition `d` (its environment, working folder and limits). */
async function startProgram(name: string, d: ExternalLearnerDefinition | ByocLearnerDefinition, command: readonly string[], args: unknown, env: LearnerEnv, o: LearnerFactoriesOptions): Promise<Learner> {
  const at = `learner '${name}' at ${env.site}`;
  const jobDir = resolve(jobFolder(env));
  const values = { job_dir: jobDir, custom_dir: env.customDir, local_dir: resolve(o.localDir) };
  const argv = command.map((a) => expand(a, values, at)) as [string, ...string[]];
  const cwd = resolve(jobDir, d.cwd);
  if (relative(jobDir, cwd).startsWith('..')) throw new LearnerError('E_LEARNER_CONFIG', `${at}: cwd leaves the job folder`);
  await mkdir(cwd, { recursive: true, mode: 0o700 });
  return ExternalLearner.start({
    name,
    site: env.site,
    job: env.job,
    command: argv,
    cwd,
    env: programEnvironment(d, env, jobDir, values, at, o),
    args: args as { [k: string]: JsonValue },
    timeouts: { startMs: d.start_timeout_s * 1000, trainMs: d.train_timeout_s * 1000, validateMs: d.validate_timeout_s * 1000, stopMs: d.stop_timeout_s * 1000 },
    maxRestarts: d.max_restarts,
    maxFrameBytes: d.max_frame_mib * 1024 * 1024,
    logger: env.logger ?? o.logger ?? silentLogger,
  });
}

function externalFactory(name: string, d: ExternalLearnerDefinition, o: LearnerFactoriesOptions): LearnerFactory<unknown> {
  return {
    name,
    args: JobArgs as z.ZodType<unknown>,
    create: (args, env) => startProgram(name, d, d.command, args, env, o),
  };
}

/** A job's BYOC entry: a relative path of a file in custom/ (no `..`), run by the interpreter of its extension. */
const ENTRY = /^[A-Za-z0-9_-][A-Za-z0-9_./-]{0,200}\.(py|mjs|js)$/;
const ByocArgs = JobArgs.refine((a) => typeof a['entry'] === 'string' && ENTRY.test(a['entry']) && !a['entry'].split('/').includes('..'), {
  message: "entry: the job's program, a relative path of a .py, .mjs or .js file in its custom/ folder",
  path: ['entry'],
});

function byocFactory(name: string, d: ByocLearnerDefinition, o: LearnerFactoriesOptions): LearnerFactory<unknown> {
  return {
    name,
    args: ByocArgs as z.ZodType<unknown>,
    async create(args, env) {
      const at = `learner '${name}' at ${env.site}`;
      // Only a folder the site wrote after @flare/policy verified the submitter's signature and the site's consent.
      if (env.customDir === undefined) {
        throw new LearnerError('E_LEARNER_BYOC', `${at}: the learner runs the job's own code, but the job brought no custom/ folder this site verified and consented to`);
      }
      const entry = (args as { entry: string }).entry;
      const file = resolve(env.customDir, entry);
      if (relative(resolve(env.customDir), file).startsWith('..')) throw new LearnerError('E_LEARNER_BYOC', `${at}: entry ${JSON.stringify(entry)} leaves the job's custom/ folder`);
      if (!(await isFile(file))) throw new LearnerError('E_LEARNER_BYOC', `${at}: entry ${JSON.stringify(entry)} is not a file of the job's signed custom/ folder`);
      const interp = entry.endsWith('.py') ? d.python : (d.node ?? [process.execPath]);
      return startProgram(name, d, [...interp, file], args, env, o);
    },
  };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function importPlugin(spec: string, localDir: string, at: string): Promise<PluginExport> {
  let url: string;
  if (isAbsolute(spec) || spec.startsWith('./') || spec.startsWith('../')) {
    url = pathToFileURL(resolve(localDir, spec)).href;
  } else {
    // A package: resolved from the site's folder first (its own node_modules), then from the runtime's.
    try {
      url = pathToFileURL(createRequire(join(resolve(localDir), 'components.json')).resolve(spec)).href;
    } catch {
      url = spec;
    }
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(url)) as { default?: unknown };
  } catch (e) {
    throw new LearnerError('E_LEARNER_PLUGIN', `${at}: cannot load module ${JSON.stringify(spec)} (${e instanceof Error ? e.message.slice(0, 300) : String(e)})`, { cause: e });
  }
  const d = mod.default;
  if (typeof d === 'function' || (typeof d === 'object' && d !== null && typeof (d as { create?: unknown }).create === 'function')) return d as PluginExport;
  throw new LearnerError('E_LEARNER_PLUGIN', `${at}: module ${JSON.stringify(spec)} has no default export that makes a Learner (a function (args, env) or an object with create)`);
}

function pluginFactory(name: string, d: PluginLearnerDefinition, o: LearnerFactoriesOptions): LearnerFactory<unknown> {
  return {
    name,
    args: JobArgs as z.ZodType<unknown>,
    async create(args, env) {
      const at = `learner '${name}' at ${env.site}`;
      const make = await importPlugin(d.module, o.localDir, at);
      const penv: PluginLearnerEnv = {
        site: env.site,
        job: env.job,
        workspace: env.workspace,
        jobWorkspace: jobFolder(env),
        ...(env.customDir === undefined ? {} : { customDir: env.customDir }),
        options: d.options,
        logger: env.logger ?? o.logger ?? silentLogger,
      };
      let learner: Learner;
      try {
        learner = await (typeof make === 'function' ? make(args, penv) : make.create(args, penv));
      } catch (e) {
        if (e instanceof Error && 'code' in e && typeof e.code === 'string' && e.code.startsWith('E_')) throw e;
        throw new LearnerError('E_LEARNER_PLUGIN', `${at}: the plugin could not make a learner (${e instanceof Error ? e.message.slice(0, 300) : String(e)})`, { cause: e });
      }
      if (typeof learner?.train !== 'function' || typeof learner.validate !== 'function') {
        throw new LearnerError('E_LEARNER_PLUGIN', `${at}: the plugin returned something that is not a Learner (train and validate functions)`);
      }
      return guardLearner(learner, {
        name,
        site: env.site,
        ...(d.train_timeout_s === undefined ? {} : { trainMs: d.train_timeout_s * 1000 }),
        ...(d.validate_timeout_s === undefined ? {} : { validateMs: d.validate_timeout_s * 1000 }),
      });
    },
  };
}

/**
 * The learners a site defines in its local/components.json (`learners` section), as factories for the site's
 * learner registry: external programs (`type: 'external'`), the job's own signed code run as an external
 * program (`type: 'byoc'`) and in-process plugins (`type: 'module'`). The site decides what runs; a job only
 * names a learner and gives it JSON args.
 *
 * @throws LearnerError E_LEARNER_CONFIG for an invalid definition (at site start, not at the first job).
 * @example
 * ```ts
 * const learners = learnerFactories(policies.components.current.learners, { localDir: join(kit.dir, 'local'), logger });
 * ```
 */
export function learnerFactories(section: unknown, options: LearnerFactoriesOptions): Map<string, LearnerFactory<unknown>> {
  const out = new Map<string, LearnerFactory<unknown>>();
  for (const [name, d] of parseLearnerDefinitions(section)) {
    out.set(name, d.type === 'external' ? externalFactory(name, d, options) : d.type === 'byoc' ? byocFactory(name, d, options) : pluginFactory(name, d, options));
  }
  return out;
}
