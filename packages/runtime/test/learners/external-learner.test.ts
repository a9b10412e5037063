import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { META, model, tensor, type FLModel, type Logger } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExternalLearner, type ExternalLearnerOptions } from '../../src/index.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/node-learner.mjs', import.meta.url));
const ctx = { site: 'site-1', job: 'job-1', round: 0 };

/** Waits (bounded) for `find` to return something: output lines arrive on their own pipe, after or before the result. */
async function eventually<T>(find: () => T | undefined, ms = 20_000): Promise<T | undefined> {
  const until = Date.now() + ms;
  let v = find();
  while (v === undefined && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    v = find();
  }
  return v;
}

function globalModel(): FLModel {
  return model({ w: tensor(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]), b: tensor(new Float32Array(3), [3]) }, 'full');
}

function capture(): Logger & { lines: Array<{ msg: string; fields?: Record<string, unknown> }> } {
  const lines: Array<{ msg: string; fields?: Record<string, unknown> }> = [];
  const push = (msg: string, fields?: Record<string, unknown>) => void lines.push({ msg, ...(fields === undefined ? {} : { fields }) });
  return { lines, debug: push, info: push, warn: push, error: push };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits (bounded) until `pid` is gone. */
async function gone(pid: number, ms = 20_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (alive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
  return !alive(pid);
}

let dir: string;
const started: ExternalLearner[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-ext-learner-'));
});
afterAll(async () => {
  await Promise.all(started.map((l) => l.close()));
  await rm(dir, { recursive: true, force: true });
});

async function start(mode: string, o: Partial<ExternalLearnerOptions> = {}): Promise<ExternalLearner> {
  const l = await ExternalLearner.start({
    name: 'fixture',
    site: 'site-1',
    job: 'job-1',
    command: [process.execPath, FIXTURE],
    cwd: dir,
    ...o,
    env: { PATH: process.env['PATH'] ?? '', LEARNER_MODE: mode, ...o.env },
  });
  started.push(l);
  return l;
}

describe('ExternalLearner: the protocol', () => {
  it('trains and validates over rounds with one long-lived program: same names, kind, steps, metrics', async () => {
    const l = await start('good');
    const pid = l.pid;
    for (let round = 0; round < 3; round++) {
      const update = await l.train(globalModel(), { ...ctx, round });
      expect(update.kind).toBe('full');
      expect([...update.params.keys()].sort()).toEqual(['b', 'w']);
      expect(Array.from(update.params.get('w')!.data as Float32Array)).toEqual([2, 3, 4, 5, 6, 7]);
      expect(update.params.get('w')!.shape).toEqual([2, 3]);
      expect(update.meta).toMatchObject({ [META.NUM_STEPS_CURRENT_ROUND]: 12, [META.CURRENT_ROUND]: round, note: 'from node' });
      expect(update.metrics).toEqual({ loss: 0.25 });
      expect(await l.validate(globalModel(), { ...ctx, round })).toEqual({ accuracy: 0.5, round });
    }
    expect(l.pid).toBe(pid);
  });

  it('hands the program the job args, only the environment the site gives, and logs its prints with the learner named', async () => {
    const log = capture();
    const l = await start('print-args', { args: { lr: 0.5 }, logger: log });
    await l.train(globalModel(), ctx);
    const line = await eventually(() => log.lines.find((x) => x.msg.includes('args ')));
    expect(line?.msg).toContain('args {"lr":0.5}');
    expect(line?.msg).toContain('env print-args home -');
    expect(line?.msg).toContain(`cwd ${dir}`);
    expect(line?.fields).toMatchObject({ site: 'site-1', job: 'job-1', learner: 'fixture' });
  });

  it('stops the program on close (stop frame, exit 0), once', async () => {
    const l = await start('good');
    const pid = l.pid!;
    await l.close();
    await l.close();
    expect(await gone(pid)).toBe(true);
    await expect(l.train(globalModel(), ctx)).rejects.toThrow(/closed/);
  });
});

describe('ExternalLearner: a bad program is refused with a code naming the site, and killed', () => {
  it('hangs: E_LEARNER_TIMEOUT after the configured task time; the next task starts it again', async () => {
    const mark = join(dir, 'hang-once');
    // The second task must answer within trainMs too: 4 s leaves a busy machine room for a small answer.
    const l = await start('hang-once', { env: { MARK_FILE: mark }, timeouts: { trainMs: 4000 } });
    const pid = l.pid!;
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_TIMEOUT', message: expect.stringContaining("learner 'fixture' at site-1") });
    expect(await gone(pid)).toBe(true);
    const update = await l.train(globalModel(), { ...ctx, round: 1 });
    expect(update.params.size).toBe(2);
    expect(l.pid).not.toBe(pid);
  });

  it('hangs after starting a child: the kill reaches the whole process group', async () => {
    const mark = join(dir, 'grandchild');
    const l = await start('grandchild', { env: { MARK_FILE: mark }, timeouts: { trainMs: 1500 } });
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_TIMEOUT' });
    const sleeper = Number(await readFile(mark, 'utf8'));
    expect(sleeper).toBeGreaterThan(0);
    expect(await gone(sleeper)).toBe(true);
  });

  it('dies: E_LEARNER_EXITED with its exit code and last stderr line', async () => {
    const l = await start('die');
    const e = await l.train(globalModel(), ctx).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'E_LEARNER_EXITED' });
    expect((e as Error).message).toMatch(/learner 'fixture' at site-1: the program ended \(exit code 3\); last stderr: fatal: out of cheese/);
  });

  it('keeps dying: started again at most max_restarts times, then E_LEARNER_RESTARTS', async () => {
    const log = join(dir, 'starts-die');
    const l = await start('die', { env: { START_LOG: log }, maxRestarts: 1 });
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_EXITED' });
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_EXITED' });
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_RESTARTS' });
    expect((await readFile(log, 'utf8')).trim().split('\n')).toHaveLength(2);
  });

  it('prints garbage on the protocol channel: E_LEARNER_PROTOCOL', async () => {
    const l = await start('garbage');
    const pid = l.pid!;
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_PROTOCOL' });
    expect(await gone(pid)).toBe(true);
  });

  it('answers another task id: E_LEARNER_PROTOCOL', async () => {
    const l = await start('wrong-id');
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_PROTOCOL' });
  });

  it('sends a payload that is not safetensors: E_LEARNER_PROTOCOL', async () => {
    const l = await start('bad-payload');
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_PROTOCOL' });
  });

  it('announces a 1 TiB result: E_LEARNER_OVERSIZED, refused before anything is allocated for it', async () => {
    const l = await start('oversized');
    const before = process.memoryUsage().arrayBuffers;
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_OVERSIZED' });
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('returns NaN weights: E_LEARNER_NOT_FINITE naming the tensor', async () => {
    const l = await start('nan');
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_NOT_FINITE', message: expect.stringContaining("tensor 'w'") });
  });

  it('returns a NaN metric: E_LEARNER_NOT_FINITE', async () => {
    const l = await start('nan-metric');
    await expect(l.validate(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_NOT_FINITE', message: expect.stringContaining("metric 'accuracy'") });
  });

  it('returns a wrong shape or dtype: E_LEARNER_RESULT_SHAPE', async () => {
    await expect((await start('shape')).train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_RESULT_SHAPE', message: expect.stringContaining('float32 [6]') });
    await expect((await start('dtype')).train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_RESULT_SHAPE', message: expect.stringContaining('float64') });
  });

  it('returns wrong or extra names: E_LEARNER_RESULT_NAMES', async () => {
    await expect((await start('names')).train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_RESULT_NAMES' });
    await expect((await start('extra')).train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_RESULT_NAMES', message: expect.stringContaining('more tensors') });
  });

  it('reports its own failure: E_LEARNER_FAILED with its message; the program stays up', async () => {
    const l = await start('error');
    const pid = l.pid;
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_FAILED', message: expect.stringContaining('ValueError: batch of size 0') });
    expect(l.pid).toBe(pid);
  });

  it('speaks another protocol version: E_LEARNER_VERSION at start', async () => {
    await expect(start('version')).rejects.toMatchObject({ code: 'E_LEARNER_VERSION' });
  });

  it('never says hello: E_LEARNER_START after the start timeout', async () => {
    await expect(start('no-hello', { timeouts: { startMs: 1500 } })).rejects.toMatchObject({ code: 'E_LEARNER_START' });
  });

  it('ends before its hello: E_LEARNER_START', async () => {
    await expect(start('not-a-learner')).rejects.toMatchObject({ code: 'E_LEARNER_START', message: expect.stringContaining('exit code 0') });
  });

  it('cannot be run: E_LEARNER_START naming the command', async () => {
    await expect(start('good', { command: ['/nonexistent/learner-program'] })).rejects.toMatchObject({ code: 'E_LEARNER_START', message: expect.stringContaining('/nonexistent/learner-program') });
  });
});

describe('ExternalLearner: the site is not affected', () => {
  it('a good learner keeps training while another one hangs and is killed', async () => {
    const good = await start('good');
    const bad = await start('hang', { timeouts: { trainMs: 2000 } });
    const refused = bad.train(globalModel(), ctx).catch((e: unknown) => e);
    for (let round = 0; round < 3; round++) expect((await good.train(globalModel(), { ...ctx, round })).params.size).toBe(2);
    expect(await refused).toMatchObject({ code: 'E_LEARNER_TIMEOUT' });
    expect((await good.train(globalModel(), { ...ctx, round: 3 })).params.size).toBe(2);
  });

  it('an aborted task kills the program without counting it as a failure; the next task starts it again', async () => {
    const l = await start('hang-once', { env: { MARK_FILE: join(dir, 'abort-once') }, maxRestarts: 0 });
    const ac = new AbortController();
    const pending = l.train(globalModel(), { ...ctx, signal: ac.signal });
    // The first instance is hanging on the task once its mark file exists.
    const until = Date.now() + 20_000;
    while (Date.now() < until && !(await readFile(join(dir, 'abort-once')).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 25));
    ac.abort(new Error('job aborted'));
    await expect(pending).rejects.toThrow('job aborted');
    expect((await l.train(globalModel(), { ...ctx, round: 1 })).params.size).toBe(2);
  });

  it('close during a running task cuts it at once', async () => {
    const l = await start('hang', { timeouts: { trainMs: 600_000 } });
    const pid = l.pid!;
    const pending = l.train(globalModel(), ctx).catch((e: unknown) => e);
    await l.close();
    expect(await gone(pid)).toBe(true);
    expect(await pending).toBeInstanceOf(Error);
  });
});
