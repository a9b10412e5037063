import { AggregatorSpecSchema } from '@flare/aggregator';
import { CodecError, FlareRuntimeError, parseStrictJson, type JsonValue } from '@flare/core';
import { z } from 'zod';

// Names that reach file paths and audit lines: letters, digits, `_ . -`, no leading dot (FLARE's client-name
// rule plus dots for job names). A name never becomes a path segment without passing this.
const NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/;
const nameSchema = z.string().regex(NAME, 'must be 1-64 letters, digits, _ . - (no leading dot)');

const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.string().max(4096), z.number(), z.boolean(), z.null(), z.array(jsonValue).max(1024), z.record(z.string().max(128), jsonValue)]),
);

/** A component the job asks a site to build from its registry (a learner, a filter), by registered name. */
export const ComponentSpec = z.strictObject({
  /** The registered name (e.g. `tfjs-learner`, `gaussian-dp`); each site admits it or not (allow-list). */
  name: nameSchema,
  /** Arguments the component's own schema validates at the site. */
  args: z.record(z.string().max(128), jsonValue).default({}),
});
/** A component reference in a job definition. */
export type ComponentSpec = z.output<typeof ComponentSpec>;

/** Files a job brings as its own code (BYOC), each with its SHA-256, and the submitter's signature over them. */
export const ByocSpec = z.strictObject({
  /** Relative file name -> hex SHA-256 of its bytes. */
  files: z.record(z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9_./-]{0,200}$/).refine((p) => !p.split('/').includes('..'), 'no ..'), z.string().regex(/^[0-9a-f]{64}$/)),
  /** base64 signature by the submitter's kit key over the files (@flare/policy's `signByoc` manifest). */
  signature: z.string().max(2048),
  /** The submitter's certificate (PEM); each site checks it chains to the project root and names the submitter. */
  certificate: z.string().max(16_384).optional(),
});
/** The BYOC part of a job definition. */
export type ByocSpec = z.output<typeof ByocSpec>;

/**
 * A job definition (the job folder's `meta.json`): which workflow, how many rounds, where it runs, which
 * components and filters, which aggregator, which privacy scope, what resources. Unknown fields are refused,
 * so a typo fails at submit, not at round 3.
 */
export const JobDefinition = z.strictObject({
  name: nameSchema,
  /**
   * The server's workflow, which each site must know too: `scatter_and_gather` (default), `cross_site_eval`,
   * `cyclic`, `secure_aggregation`, or one the server and sites registered (see docs/workflows.md).
   */
  workflow: nameSchema.default('scatter_and_gather'),
  /** The workflow's arguments, validated by the workflow's own schema at the server and at every site. */
  workflow_args: z.record(z.string().max(128), jsonValue).optional(),
  rounds: z.int().min(1).max(100_000),
  /** Results needed to close a round (FLARE's min_clients). */
  min_clients: z.int().min(1).max(10_000),
  /** Seconds a round waits for results before closing with what it has (late results are ignored, audited). */
  round_timeout_s: z.number().positive().max(7 * 24 * 3600).default(300),
  /** How often a round that ended below min_clients is re-run before the job fails. */
  retries: z.int().min(0).max(100).default(1),
  /** Sites that run the job, or `["@ALL"]` for every connected site (FLARE's deploy_map). */
  deploy: z.array(z.union([nameSchema, z.literal('@ALL')])).min(1).max(10_000),
  /** The learner each site builds. */
  learner: ComponentSpec,
  /**
   * How the server combines the sites' updates: @flare/aggregator's spec (`{ name, args?, serverOptimizer? }`:
   * fedavg, fedavgm, fedadam, fedyogi, fedadagrad, median, trimmed-mean, krum, multi-krum, bulyan,
   * geometric-median; `args.normBound` wraps any). Absent: the server's default (FedAvg with an adaptive norm
   * bound), which the server's own policy may make compulsory.
   */
  aggregator: AggregatorSpecSchema.optional(),
  /** The job's filters on data coming in to a site; they run after the site's scope filters. */
  task_data_filters: z.array(ComponentSpec).max(64).default([]),
  /** The job's filters on results leaving a site; they run after the site's scope filters. */
  task_result_filters: z.array(ComponentSpec).max(64).default([]),
  /** The privacy scope (privacy.json) the job asks for; empty: the site's default scope. */
  scope: nameSchema.optional(),
  /** What the job needs at each site (checked against, and reserved in, the site's resources.json). */
  resources: z
    .strictObject({
      num_of_gpus: z.int().min(0).max(1024).default(0),
      mem_per_gpu_in_GiB: z.number().min(0).max(1 << 20).default(0),
      memory_MiB: z.int().min(0).max(1 << 30).default(0),
      /** Longest the job may run at a site, seconds (default: the site's maximum). */
      wall_time_s: z.number().positive().max(365 * 24 * 3600).optional(),
    })
    .default({ num_of_gpus: 0, mem_per_gpu_in_GiB: 0, memory_MiB: 0 }),
  byoc: ByocSpec.optional(),
  /**
   * The submitter's tokens for sites that require their own login (a site's `local/authentication.json`): site
   * name, or `*` for every other site, -> a JWT from that site's identity provider (see docs/deploy.md).
   */
  auth_tokens: z.record(z.union([nameSchema, z.literal('*')]), z.string().min(1).max(16_384)).optional(),
});
/** A parsed, validated job definition. */
export type JobDefinition = z.output<typeof JobDefinition>;

/**
 * Parses a job definition from untrusted JSON (a file, the wire).
 *
 * @throws FlareRuntimeError E_RUNTIME_JOB_INVALID naming the first bad field.
 * @example
 * ```ts
 * const def = parseJobDefinition(parseStrictJson(await readFile('job/meta.json', 'utf8')));
 * ```
 */
export function parseJobDefinition(value: unknown): JobDefinition {
  const r = JobDefinition.safeParse(value);
  if (!r.success) {
    const first = r.error.issues[0];
    const where = first === undefined || first.path.length === 0 ? '(top)' : first.path.join('.');
    throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `meta.json: ${where}: ${first?.message ?? 'invalid'}`, { cause: r.error });
  }
  if (r.data.min_clients > r.data.deploy.length && !r.data.deploy.includes('@ALL')) {
    throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `meta.json: min_clients ${r.data.min_clients} exceeds the ${r.data.deploy.length} sites in deploy`);
  }
  return r.data;
}

/** Line and column (1-based) of a character offset in `text`. */
function lineOf(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

/**
 * Parses meta.json's bytes (strict JSON: duplicate and prototype keys refused) into the JSON value and its
 * validated definition. A syntax error names the file (`file`, default `meta.json`) and its line and column.
 *
 * @throws FlareRuntimeError E_RUNTIME_JOB_INVALID.
 */
export function parseMetaJson(bytes: Uint8Array, file = 'meta.json'): { readonly raw: JsonValue; readonly definition: JobDefinition } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `${file} is not UTF-8 text`, { cause });
  }
  let raw: JsonValue;
  try {
    raw = parseStrictJson(text, { maxDepth: 32 });
  } catch (e) {
    const m = e instanceof CodecError ? /at offset (\d+): (.*)$/.exec(e.message) : null;
    const at = m === null ? '' : (({ line, column }) => ` at line ${line}, column ${column}`)(lineOf(text, Number(m[1])));
    throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `${file} is not valid JSON${at}: ${m?.[2] ?? (e instanceof Error ? e.message : 'invalid')}`, { cause: e });
  }
  try {
    return { raw, definition: parseJobDefinition(raw) };
  } catch (e) {
    if (e instanceof FlareRuntimeError && file !== 'meta.json') throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', e.message.replace(/^meta\.json/, file), { cause: e });
    throw e;
  }
}
