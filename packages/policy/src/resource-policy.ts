import { PolicyError } from '@flare/core';
import { z } from 'zod';
import { isJsonObject, policyJson } from './json-input.js';

/** What this site gives all jobs together (and each job at most, for wall time). Infinity means no limit. */
export interface ResourceLimits {
  /** Jobs running at once (default {@link DEFAULT_MAX_CONCURRENT_JOBS}). */
  readonly maxConcurrentJobs: number;
  /** Host memory shared by all jobs, GiB (default unlimited). */
  readonly memoryGiB: number;
  /** GPUs at this site (FLARE GPUResourceManager `num_of_gpus`; default 0). */
  readonly gpus: number;
  /** Memory of each GPU, GiB (FLARE `mem_per_gpu_in_GiB`; default 0). */
  readonly memPerGpuGiB: number;
  /** Longest a job may run, seconds (default unlimited). */
  readonly maxWallTimeS: number;
}

/** What one job asks of this site (FLARE's per-site `resource_spec` plus memory and wall time). */
export interface ResourceRequest {
  /** GPUs, each with at least `memPerGpuGiB` free. */
  readonly gpus: number;
  readonly memPerGpuGiB: number;
  /** Host memory, GiB. */
  readonly memoryGiB: number;
  /** Wall time, seconds; undefined means the site's maximum. */
  readonly wallTimeS?: number;
}

/** Jobs that may run at once when resources.json sets no limit. */
export const DEFAULT_MAX_CONCURRENT_JOBS = 4;

/** Largest value any limit or request may state (a bound against absurd numbers, not a policy). */
const HUGE = 1e9;
const count = z.number().int().min(0).max(HUGE);
const amount = z.number().min(0).max(HUGE);
const positive = z.number().positive().max(HUGE);

const limitsSchema = z.strictObject({
  max_concurrent_jobs: count.min(1).optional(),
  memory_gib: amount.optional(),
  num_of_gpus: count.optional(),
  mem_per_gpu_in_GiB: amount.optional(),
  max_wall_time_s: positive.optional(),
});

// FLARE's resources.json (format_version 2) keeps its limits in the args of components: a client's
// GPUResourceManager (`num_of_gpus`, `mem_per_gpu_in_GiB`), a server's DefaultJobScheduler (`max_jobs`, the jobs
// that may run at once). We read those args and let FLARE's other keys through unread, so the files FLARE
// provisions (nvflare/lighter/templates/local_client_resources.j2 and local_server_resources.j2: `client`, or
// `servers` and `snapshot_persistor`) and a FLARE site's edited copies load unchanged.
const componentSchema = z.strictObject({ id: z.string(), path: z.string().optional(), name: z.string().optional(), args: z.record(z.string(), z.unknown()).optional() });
const gpuArgsSchema = z.object({ num_of_gpus: count.optional(), mem_per_gpu_in_GiB: amount.optional() });
const schedulerArgsSchema = z.object({ max_jobs: count.min(1).optional() });
const flareSection = z.record(z.string(), z.unknown());

const resourcesSchema = z.strictObject({
  format_version: z.literal(2).optional(),
  limits: limitsSchema.optional(),
  client: flareSection.optional(),
  server: flareSection.optional(),
  servers: z.array(flareSection).max(16).optional(),
  snapshot_persistor: flareSection.optional(),
  components: z.array(componentSchema).max(256).optional(),
});

const requestSchema = z.strictObject({
  num_of_gpus: count.optional(),
  mem_per_gpu_in_GiB: amount.optional(),
  memory_gib: amount.optional(),
  wall_time_s: positive.optional(),
});

const issues = (error: z.ZodError) => error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ');

type Component = z.infer<typeof componentSchema>;
const isGpuManager = (c: Component) => c.id === 'resource_manager' || (c.path ?? c.name ?? '').endsWith('GPUResourceManager');
const isJobScheduler = (c: Component) => c.id === 'job_scheduler' || (c.path ?? c.name ?? '').endsWith('DefaultJobScheduler');

/** Reads one limit from a FLARE component's args; it must agree with the same limit stated elsewhere. */
function fromComponent(c: Component, key: string, mine: number | undefined, theirs: number | undefined, ours: string): number | undefined {
  if (mine !== undefined && theirs !== undefined && mine !== theirs) {
    throw new PolicyError('E_POLICY_RESOURCES_PARSE', `resource policy: ${ours} (${mine}) and component ${JSON.stringify(c.id)} args.${key} (${theirs}) disagree`);
  }
  return mine ?? theirs;
}

/**
 * Parses a resources.json: our `limits` object (`max_concurrent_jobs`, `memory_gib`, `num_of_gpus`,
 * `mem_per_gpu_in_GiB`, `max_wall_time_s`) and FLARE's format_version 2 files, client and server: a
 * GPUResourceManager's args give `num_of_gpus` and `mem_per_gpu_in_GiB`, a DefaultJobScheduler's `max_jobs`
 * gives the jobs that may run at once. When `limits` and a component state the same figure they must agree.
 *
 * @throws PolicyError E_POLICY_RESOURCES_PARSE naming the field at fault.
 */
export function parseResourcePolicy(json: unknown): ResourceLimits {
  const parsed = resourcesSchema.safeParse(policyJson(json, 'E_POLICY_RESOURCES_PARSE', 'resource policy'));
  if (!parsed.success) throw new PolicyError('E_POLICY_RESOURCES_PARSE', `resource policy: ${issues(parsed.error)}`);
  const limits = parsed.data.limits ?? {};
  let gpus = limits.num_of_gpus;
  let memPerGpu = limits.mem_per_gpu_in_GiB;
  let maxJobs = limits.max_concurrent_jobs;
  for (const c of parsed.data.components ?? []) {
    if (isGpuManager(c)) {
      const args = gpuArgsSchema.safeParse(c.args ?? {});
      if (!args.success) throw new PolicyError('E_POLICY_RESOURCES_PARSE', `resource policy: component ${JSON.stringify(c.id)} args: ${issues(args.error)}`);
      gpus = fromComponent(c, 'num_of_gpus', gpus, args.data.num_of_gpus, 'limits.num_of_gpus');
      memPerGpu = fromComponent(c, 'mem_per_gpu_in_GiB', memPerGpu, args.data.mem_per_gpu_in_GiB, 'limits.mem_per_gpu_in_GiB');
    } else if (isJobScheduler(c)) {
      const args = schedulerArgsSchema.safeParse(c.args ?? {});
      if (!args.success) throw new PolicyError('E_POLICY_RESOURCES_PARSE', `resource policy: component ${JSON.stringify(c.id)} args: ${issues(args.error)}`);
      maxJobs = fromComponent(c, 'max_jobs', maxJobs, args.data.max_jobs, 'limits.max_concurrent_jobs');
    }
  }
  return Object.freeze({
    maxConcurrentJobs: maxJobs ?? DEFAULT_MAX_CONCURRENT_JOBS,
    memoryGiB: limits.memory_gib ?? Infinity,
    gpus: gpus ?? 0,
    memPerGpuGiB: memPerGpu ?? 0,
    maxWallTimeS: limits.max_wall_time_s ?? Infinity,
  });
}

/**
 * Parses one site's entry of a job's resource spec (FLARE `{"num_of_gpus": 1, "mem_per_gpu_in_GiB": 8}`, plus
 * `memory_gib` and `wall_time_s`). Missing fields ask for nothing (and the site's maximum wall time).
 *
 * @throws PolicyError E_POLICY_RESOURCES_PARSE when the spec is not an object of such numbers.
 */
export function parseResourceRequest(json: unknown): ResourceRequest {
  const value = policyJson(json, 'E_POLICY_RESOURCES_PARSE', 'resource request');
  if (value !== undefined && value !== null && !isJsonObject(value)) throw new PolicyError('E_POLICY_RESOURCES_PARSE', 'resource request: expecting an object');
  const parsed = requestSchema.safeParse(value ?? {});
  if (!parsed.success) throw new PolicyError('E_POLICY_RESOURCES_PARSE', `resource request: ${issues(parsed.error)}`);
  const r = parsed.data;
  return Object.freeze({
    gpus: r.num_of_gpus ?? 0,
    memPerGpuGiB: r.mem_per_gpu_in_GiB ?? 0,
    memoryGiB: r.memory_gib ?? 0,
    ...(r.wall_time_s === undefined ? {} : { wallTimeS: r.wall_time_s }),
  });
}
