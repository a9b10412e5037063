import { PolicyError, type AuditHook, type PolicyErrorCode } from '@flare/core';
import type { ResourceLimits, ResourceRequest } from './resource-policy.js';

/** Resources held by one job at this site until {@link Reservation.release}. */
export interface Reservation {
  readonly job: string;
  /** The GPUs assigned to the job (indices 0..gpus-1), each with `memPerGpuGiB` set aside. */
  readonly gpuIds: readonly number[];
  readonly memPerGpuGiB: number;
  readonly memoryGiB: number;
  /** Wall time granted, seconds (Infinity when neither the site nor the job bounds it). */
  readonly wallTimeS: number;
  /** When the wall time runs out, ms since the epoch; undefined when unbounded. */
  readonly deadline: number | undefined;
  /**
   * Aborted when the wall time runs out (reason: PolicyError E_POLICY_WALL_TIME) or when the reservation is
   * released. The engine stops the job on abort, then releases; resources stay held until it does.
   */
  readonly signal: AbortSignal;
  /** Returns the resources to the site; safe to call twice. */
  release(): void;
}

/** The outcome of {@link ResourceManager.check}: `reason` says what is missing, for the submitter. */
export type ResourceCheck =
  | { readonly ok: true; readonly reason: string }
  | { readonly ok: false; readonly code: PolicyErrorCode; readonly reason: string };

/** Options of {@link ResourceManager}. */
export interface ResourceManagerOptions {
  /** Where reservations, releases and refusals are reported (`resources_reserved`, `resources_released`, `resources_refused`). */
  readonly audit?: AuditHook;
  /** Clock, ms since the epoch (default Date.now). */
  readonly now?: () => number;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
// setTimeout's delay is a signed 32-bit number of ms: longer wall times re-arm the timer.
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Held {
  readonly reservation: Reservation;
  readonly controller: AbortController;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Reserves and releases this site's resources per job and refuses over-commit, like FLARE's
 * GPUResourceManager (each GPU's memory is shared by the jobs that fit on it) plus limits on concurrent jobs,
 * host memory and wall time. Synchronous and single-process: the client engine calls it at deploy time.
 *
 * @example
 * ```ts
 * const rm = new ResourceManager(parseResourcePolicy(text));
 * const r = rm.reserve(jobId, parseResourceRequest(meta.resource_spec?.[site]));
 * r.signal.addEventListener('abort', () => stopJob(jobId)); ... r.release();
 * ```
 */
export class ResourceManager {
  #limits: ResourceLimits;
  readonly #held = new Map<string, Held>();
  readonly #audit: AuditHook | undefined;
  readonly #now: () => number;

  constructor(limits: ResourceLimits, options: ResourceManagerOptions = {}) {
    this.#limits = limits;
    this.#audit = options.audit;
    this.#now = options.now ?? Date.now;
  }

  /** The limits new reservations are checked against. */
  get limits(): ResourceLimits {
    return this.#limits;
  }

  /**
   * Replaces the limits (a reloaded resources.json). Running jobs keep what they hold; new reservations are
   * checked against the new limits, so shrinking below current use refuses new jobs until enough are released.
   */
  setLimits(limits: ResourceLimits): void {
    this.#limits = limits;
  }

  /** Current reservations by job id. */
  get reservations(): ReadonlyMap<string, Reservation> {
    return new Map([...this.#held].map(([job, h]) => [job, h.reservation]));
  }

  /** Whether `request` fits now, and if not, why (FLARE's check_resources, without reserving). */
  check(job: string, request: ResourceRequest): ResourceCheck {
    return this.#plan(job, request).check;
  }

  /**
   * Reserves `request` for `job`.
   *
   * @throws PolicyError E_POLICY_RESOURCES_EXCEEDED (can never fit here), E_POLICY_RESOURCES_BUSY (does not fit
   * now) or E_POLICY_JOB_RESERVED (the job already holds a reservation).
   */
  reserve(job: string, request: ResourceRequest): Reservation {
    const { check, gpuIds, wallTimeS } = this.#plan(job, request);
    if (!check.ok) {
      this.#audit?.({ action: 'resources_refused', job, msg: check.reason, data: { code: check.code } });
      throw new PolicyError(check.code, check.reason);
    }
    const controller = new AbortController();
    const deadline = Number.isFinite(wallTimeS) ? this.#now() + wallTimeS * 1000 : undefined;
    let released = false;
    const reservation: Reservation = Object.freeze({
      job,
      gpuIds: Object.freeze(gpuIds),
      memPerGpuGiB: request.memPerGpuGiB,
      memoryGiB: request.memoryGiB,
      wallTimeS,
      deadline,
      signal: controller.signal,
      release: () => {
        if (released) return;
        released = true;
        this.release(job);
      },
    });
    const held: Held = { reservation, controller, timer: undefined };
    this.#held.set(job, held);
    if (deadline !== undefined) this.#arm(held, deadline);
    this.#audit?.({
      action: 'resources_reserved',
      job,
      msg: `reserved ${plural(gpuIds.length, 'GPU')}${gpuIds.length ? ` [${gpuIds.join(', ')}]` : ''}, ${request.memoryGiB} GiB memory, wall time ${Number.isFinite(wallTimeS) ? `${wallTimeS} s` : 'unbounded'}`,
      data: { gpus: gpuIds, memoryGiB: request.memoryGiB, memPerGpuGiB: request.memPerGpuGiB, ...(deadline === undefined ? {} : { wallTimeS }) },
    });
    return reservation;
  }

  /** Releases `job`'s reservation; returns false when it held none. */
  release(job: string): boolean {
    const held = this.#held.get(job);
    if (held === undefined) return false;
    this.#held.delete(job);
    if (held.timer !== undefined) clearTimeout(held.timer);
    if (!held.controller.signal.aborted) held.controller.abort(new PolicyError('E_POLICY_WALL_TIME', `job '${job}' released its resources`));
    this.#audit?.({ action: 'resources_released', job, msg: `released resources of job '${job}'` });
    return true;
  }

  /** Releases every reservation (site shutdown). */
  close(): void {
    for (const job of [...this.#held.keys()]) this.release(job);
  }

  #arm(held: Held, deadline: number): void {
    const left = deadline - this.#now();
    if (left <= 0) {
      const job = held.reservation.job;
      const reason = new PolicyError('E_POLICY_WALL_TIME', `job '${job}' reached its wall time of ${held.reservation.wallTimeS} s`);
      this.#audit?.({ action: 'wall_time_exceeded', job, msg: reason.message });
      held.controller.abort(reason);
      return;
    }
    held.timer = setTimeout(() => this.#arm(held, deadline), Math.min(left, MAX_TIMER_MS));
    // A pending wall-time timer must not keep a process alive on its own.
    held.timer.unref();
  }

  #plan(job: string, request: ResourceRequest): { check: ResourceCheck; gpuIds: number[]; wallTimeS: number } {
    const L = this.#limits;
    const refuse = (code: PolicyErrorCode, reason: string) => ({ check: { ok: false as const, code, reason: `job '${job}': ${reason}` }, gpuIds: [], wallTimeS: 0 });
    if (typeof job !== 'string' || job === '') throw new TypeError('job must be a non-empty string');
    if (this.#held.has(job)) return refuse('E_POLICY_JOB_RESERVED', 'already holds a reservation at this site');
    // Never fits: the request exceeds the site's totals.
    if (request.gpus > L.gpus) return refuse('E_POLICY_RESOURCES_EXCEEDED', `asks ${plural(request.gpus, 'GPU')}; this site has ${L.gpus}`);
    if (request.gpus > 0 && request.memPerGpuGiB > L.memPerGpuGiB) {
      return refuse('E_POLICY_RESOURCES_EXCEEDED', `asks ${request.memPerGpuGiB} GiB per GPU; this site's GPUs have ${L.memPerGpuGiB} GiB`);
    }
    if (request.memoryGiB > L.memoryGiB) return refuse('E_POLICY_RESOURCES_EXCEEDED', `asks ${request.memoryGiB} GiB memory; this site has ${L.memoryGiB} GiB`);
    const wallTimeS = request.wallTimeS ?? L.maxWallTimeS;
    if (wallTimeS > L.maxWallTimeS) return refuse('E_POLICY_RESOURCES_EXCEEDED', `asks wall time ${wallTimeS} s; this site allows at most ${L.maxWallTimeS} s`);
    // Does not fit now: compare with what running jobs hold.
    const held = [...this.#held.values()].map((h) => h.reservation);
    if (held.length >= L.maxConcurrentJobs) {
      return refuse('E_POLICY_RESOURCES_BUSY', `${held.length} of ${L.maxConcurrentJobs} concurrent jobs are running (${held.map((r) => r.job).join(', ')})`);
    }
    const memoryUsed = held.reduce((sum, r) => sum + r.memoryGiB, 0);
    if (memoryUsed + request.memoryGiB > L.memoryGiB) {
      const holders = held.filter((r) => r.memoryGiB > 0).map((r) => `${r.job}: ${r.memoryGiB}`).join(', ');
      return refuse('E_POLICY_RESOURCES_BUSY', `asks ${request.memoryGiB} GiB memory; ${L.memoryGiB - memoryUsed} of ${L.memoryGiB} GiB free (held by ${holders})`);
    }
    const gpuIds: number[] = [];
    if (request.gpus > 0) {
      const free = Array.from({ length: L.gpus }, (_, id) => ({ id, free: L.memPerGpuGiB }));
      for (const r of held) for (const id of r.gpuIds) if (free[id]) free[id].free -= r.memPerGpuGiB;
      // Best fit: the fullest GPUs that still fit, so large requests later find whole GPUs free.
      const fits = free.filter((g) => g.free >= request.memPerGpuGiB).sort((a, b) => a.free - b.free || a.id - b.id);
      if (fits.length < request.gpus) {
        const holders = held.filter((r) => r.gpuIds.length > 0).map((r) => `${r.job}: GPU ${r.gpuIds.join(', ')}`).join('; ');
        return refuse(
          'E_POLICY_RESOURCES_BUSY',
          `asks ${plural(request.gpus, 'GPU')} with ${request.memPerGpuGiB} GiB free each; ${fits.length} of ${L.gpus} have that much free (held by ${holders})`,
        );
      }
      gpuIds.push(...fits.slice(0, request.gpus).map((g) => g.id).sort((a, b) => a - b));
    }
    return { check: { ok: true, reason: `job '${job}' fits` }, gpuIds, wallTimeS };
  }
}
