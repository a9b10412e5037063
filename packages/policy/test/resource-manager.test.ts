import { expectFlareCode } from '@flare/core/testing';
import type { AuditEventInput } from '@flare/core';
import { FlareError } from '@flare/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseResourcePolicy, parseResourceRequest, ResourceManager } from '../src/index.js';


const limits = parseResourcePolicy({ limits: { max_concurrent_jobs: 3, memory_gib: 64, num_of_gpus: 2, mem_per_gpu_in_GiB: 16, max_wall_time_s: 3600 } });
const req = (spec: Record<string, number>) => parseResourceRequest(spec);

describe('ResourceManager', () => {
  it('reserves GPUs and memory, shares a GPU\'s memory among jobs that fit, and releases', () => {
    const events: AuditEventInput[] = [];
    const rm = new ResourceManager(limits, { audit: (e) => (events.push(e), undefined) });
    const a = rm.reserve('a', req({ num_of_gpus: 1, mem_per_gpu_in_GiB: 10, memory_gib: 16 }));
    expect(a.gpuIds).toEqual([0]);
    // 6 GiB left on GPU 0: a 6 GiB job goes there (best fit), keeping GPU 1 whole.
    const b = rm.reserve('b', req({ num_of_gpus: 1, mem_per_gpu_in_GiB: 6 }));
    expect(b.gpuIds).toEqual([0]);
    const c = rm.reserve('c', req({ num_of_gpus: 1, mem_per_gpu_in_GiB: 16 }));
    expect(c.gpuIds).toEqual([1]);
    expect([...rm.reservations.keys()]).toEqual(['a', 'b', 'c']);
    a.release();
    a.release();
    expect(rm.release('a')).toBe(false);
    expect(rm.reserve('d', req({ num_of_gpus: 1, mem_per_gpu_in_GiB: 10 })).gpuIds).toEqual([0]);
    expect(events.map((e) => e.action)).toEqual(['resources_reserved', 'resources_reserved', 'resources_reserved', 'resources_released', 'resources_reserved']);
    rm.close();
    expect(rm.reservations.size).toBe(0);
  });

  it('refuses over-commit with a reason naming what is held (E_POLICY_RESOURCES_BUSY)', () => {
    const rm = new ResourceManager(limits);
    rm.reserve('a', req({ num_of_gpus: 2, mem_per_gpu_in_GiB: 12, memory_gib: 40 }));
    const gpu = expectFlareCode(() => rm.reserve('b', req({ num_of_gpus: 1, mem_per_gpu_in_GiB: 8 })), 'E_POLICY_RESOURCES_BUSY');
    expect(gpu.message).toBe("job 'b': asks 1 GPU with 8 GiB free each; 0 of 2 have that much free (held by a: GPU 0, 1)");
    const mem = expectFlareCode(() => rm.reserve('b', req({ memory_gib: 30 })), 'E_POLICY_RESOURCES_BUSY');
    expect(mem.message).toBe("job 'b': asks 30 GiB memory; 24 of 64 GiB free (held by a: 40)");
    rm.reserve('b', req({}));
    rm.reserve('c', req({}));
    expect(expectFlareCode(() => rm.reserve('d', req({})), 'E_POLICY_RESOURCES_BUSY').message).toBe("job 'd': 3 of 3 concurrent jobs are running (a, b, c)");
    expect(rm.check('d', req({}))).toMatchObject({ ok: false, code: 'E_POLICY_RESOURCES_BUSY' });
  });

  it('refuses what can never fit here (E_POLICY_RESOURCES_EXCEEDED)', () => {
    const rm = new ResourceManager(limits);
    const cases: Array<[Record<string, number>, string]> = [
      [{ num_of_gpus: 3 }, "job 'x': asks 3 GPUs; this site has 2"],
      [{ num_of_gpus: 1, mem_per_gpu_in_GiB: 40 }, "job 'x': asks 40 GiB per GPU; this site's GPUs have 16 GiB"],
      [{ memory_gib: 65 }, "job 'x': asks 65 GiB memory; this site has 64 GiB"],
      [{ wall_time_s: 7200 }, "job 'x': asks wall time 7200 s; this site allows at most 3600 s"],
    ];
    for (const [spec, message] of cases) expect(expectFlareCode(() => rm.reserve('x', req(spec)), 'E_POLICY_RESOURCES_EXCEEDED').message).toBe(message);
    expect(rm.check('x', req({ num_of_gpus: 3 }))).toMatchObject({ ok: false, code: 'E_POLICY_RESOURCES_EXCEEDED' });
    expect(rm.check('x', req({ num_of_gpus: 2 })).ok).toBe(true);
  });

  it('refuses a second reservation for the same job (E_POLICY_JOB_RESERVED) and audits refusals', () => {
    const events: AuditEventInput[] = [];
    const rm = new ResourceManager(limits, { audit: (e) => (events.push(e), undefined) });
    rm.reserve('a', req({}));
    expectFlareCode(() => rm.reserve('a', req({})), 'E_POLICY_JOB_RESERVED');
    expect(events.at(-1)).toMatchObject({ action: 'resources_refused', job: 'a', data: { code: 'E_POLICY_JOB_RESERVED' } });
  });

  it('aborts the reservation\'s signal when its wall time runs out (E_POLICY_WALL_TIME)', async () => {
    const rm = new ResourceManager(parseResourcePolicy({ limits: { max_wall_time_s: 0.05 } }));
    const r = rm.reserve('short', req({}));
    expect(r.wallTimeS).toBe(0.05);
    expect(r.deadline).toBeGreaterThan(Date.now() - 1000);
    const reason = await new Promise<unknown>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('wall time did not fire within 60 s')), 60_000);
      r.signal.addEventListener('abort', () => (clearTimeout(t), resolve(r.signal.reason)), { once: true });
    });
    expect(reason).toBeInstanceOf(FlareError);
    expect((reason as FlareError).code).toBe('E_POLICY_WALL_TIME');
    // The job still holds its resources until the engine has stopped it and releases.
    expect(rm.reservations.has('short')).toBe(true);
    r.release();
  });

  it('a job may ask less wall time than the site allows; unbounded sites give unbounded time', () => {
    const rm = new ResourceManager(limits);
    expect(rm.reserve('a', req({ wall_time_s: 60 })).wallTimeS).toBe(60);
    const open = new ResourceManager(parseResourcePolicy({}));
    const r = open.reserve('b', req({}));
    expect(r.wallTimeS).toBe(Infinity);
    expect(r.deadline).toBeUndefined();
    rm.close();
    open.close();
  });

  it('new limits apply to new reservations only', () => {
    const rm = new ResourceManager(limits);
    rm.reserve('a', req({ memory_gib: 40 }));
    rm.setLimits(parseResourcePolicy({ limits: { memory_gib: 32 } }));
    expect(rm.limits.memoryGiB).toBe(32);
    expect(rm.reservations.has('a')).toBe(true);
    expectFlareCode(() => rm.reserve('b', req({ memory_gib: 1 })), 'E_POLICY_RESOURCES_BUSY');
    rm.release('a');
    expect(rm.reserve('b', req({ memory_gib: 1 })).memoryGiB).toBe(1);
  });

  it('property: whatever jobs come and go, held resources never exceed the limits', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('reserve' as const), job: fc.integer({ min: 0, max: 5 }), gpus: fc.integer({ min: 0, max: 2 }), mem: fc.integer({ min: 0, max: 16 }), host: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ kind: fc.constant('release' as const), job: fc.integer({ min: 0, max: 5 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const rm = new ResourceManager(limits);
        for (const o of ops) {
          if (o.kind === 'release') rm.release(`j${o.job}`);
          else {
            try {
              rm.reserve(`j${o.job}`, req({ num_of_gpus: o.gpus, mem_per_gpu_in_GiB: o.mem, memory_gib: o.host }));
            } catch (e) {
              expect(e).toBeInstanceOf(FlareError);
            }
          }
          const held = [...rm.reservations.values()];
          expect(held.length).toBeLessThanOrEqual(limits.maxConcurrentJobs);
          expect(held.reduce((s, r) => s + r.memoryGiB, 0)).toBeLessThanOrEqual(limits.memoryGiB);
          for (let g = 0; g < limits.gpus; g++) {
            expect(held.filter((r) => r.gpuIds.includes(g)).reduce((s, r) => s + r.memPerGpuGiB, 0)).toBeLessThanOrEqual(limits.memPerGpuGiB);
          }
          for (const r of held) expect(new Set(r.gpuIds).size).toBe(r.gpuIds.length);
        }
        rm.close();
      }),
      { seed: 6, numRuns: 300 },
    );
  });
});
