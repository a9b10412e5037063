import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeModel, encodeModel, model } from '@flare/core';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { describe, expect, it, type TestContext } from 'vitest';
import { checkJob, createJob } from '../src/commands/job.js';
import { parseMetricsCsv } from '../src/commands/metrics.js';
import { runSimulation } from '../src/commands/simulate.js';
import type { Io } from '../src/run.js';

const lines = (): Io & { out: (l: string) => void; text: () => string } => {
  const all: string[] = [];
  return { out: (l) => void all.push(l), err: (l) => void all.push(l), text: () => all.join('\n') };
};

/** The python3 the `command` template uses here; the test is skipped with how to install it when there is none. */
function needNumpy(ctx: TestContext): void {
  const ok = ['python3', '/usr/bin/python3'].some((py) => spawnSync(py, ['-c', 'import numpy'], { stdio: 'ignore', timeout: 120_000 }).status === 0);
  if (!ok) ctx.skip('python3 with numpy is not installed: apt-get install -y python3-numpy');
}

describe('flare job create / check and flare simulate', () => {
  it('tfjs: a created folder checks, and runs unchanged in simulate', { timeout: 600_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flare-job-'));
    const io = lines();
    const job = await createJob({ name: 'spam-tfjs', learner: 'tfjs', dir, rounds: 1 }, io);
    const meta = JSON.parse(await readFile(join(job, 'meta.json'), 'utf8')) as { learner: { name: string }; deploy: string[] };
    expect(meta.learner.name).toBe('tfjs-spam');
    expect(meta.deploy).toEqual(['@ALL']);
    expect((await checkJob(job)).learner).toMatch(/match the built-in learner tfjs-spam/);
    const sim = lines();
    await runSimulation({ jobDir: job, sites: 2 }, sim);
    expect(sim.text()).toMatch(/job spam-tfjs: FINISHED after 1 rounds with 2 simulated sites/);
    expect(sim.text()).toMatch(/^\s+1\s+site-2\s+0\.\d+/m);
  });

  it('command: a created folder (numpy program + site folder) checks against the program and simulates on 3 sites with CSV and plot', { timeout: 600_000 }, async (ctx) => {
    needNumpy(ctx);
    const dir = await mkdtemp(join(tmpdir(), 'flare-job-'));
    const job = await createJob({ name: 'numpy-job', learner: 'command', dir, rounds: 2 }, lines());
    const components = JSON.parse(await readFile(join(job, 'site', 'components.json'), 'utf8')) as { learners: { command: { type: string; command: string[] } } };
    expect(components.learners.command.type).toBe('external');
    expect(components.learners.command.command[1]).toBe('{local_dir}/learner.py');
    expect((await checkJob(job)).learner).toMatch(/match what .*learner\.py --init writes/);
    const sim = lines();
    await runSimulation({ jobDir: job, sites: 3, dataSplit: 'dirichlet:1', csv: join(dir, 'm.csv'), plot: join(dir, 'm.svg'), output: join(dir, 'final.safetensors') }, sim);
    expect(sim.text()).toMatch(/FINISHED after 2 rounds with 3 simulated sites/);
    const rows = parseMetricsCsv(await readFile(join(dir, 'm.csv'), 'utf8'));
    expect(new Set(rows.filter((r) => r.kind === 'validation').map((r) => r.source))).toEqual(new Set(['site-1', 'site-2', 'site-3']));
    expect(rows.some((r) => r.kind === 'global' && r.metric === 'accuracy' && r.round === 2)).toBe(true);
    expect(await readFile(join(dir, 'm.svg'), 'utf8')).toMatch(/^<\?xml/);
    expect([...decodeModel(new Uint8Array(await readFile(join(dir, 'final.safetensors')))).params.keys()].sort()).toEqual(['bias', 'weight']);
  });

  it('refuses an existing folder (E_CLI_JOB_EXISTS), a bad name (E_RUNTIME_JOB_INVALID) and a python without what the template needs (E_CLI_PYTHON_MISSING)', { timeout: 300_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flare-job-'));
    await writeFile(join(dir, 'taken'), 'x');
    expect((await expectFlareCodeAsync(() => createJob({ name: 'taken', learner: 'tfjs', dir }, lines()), 'E_CLI_JOB_EXISTS')).message).toMatch(/taken/);
    await expectFlareCodeAsync(() => createJob({ name: '../up', learner: 'tfjs', dir }, lines()), 'E_RUNTIME_JOB_INVALID');
    const missing = await expectFlareCodeAsync(() => createJob({ name: 'p', learner: 'pytorch', dir, python: join(dir, 'no-such-python') }, lines()), 'E_CLI_PYTHON_MISSING');
    expect(missing.message).toMatch(/torch.*python3-torch/);
    // Nothing half-written is left behind.
    await expect(readFile(join(dir, 'p', 'meta.json'))).rejects.toThrow(/ENOENT/);
  });

  it('check: a model whose tensors differ from the learner\'s (E_CLI_JOB_MODEL_MISMATCH) and learner args out of range (E_RUNTIME_JOB_INVALID, naming the field)', { timeout: 300_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flare-job-'));
    const job = await createJob({ name: 'tj', learner: 'tfjs', dir, rounds: 1 }, lines());
    const good = decodeModel(new Uint8Array(await readFile(join(job, 'model.safetensors'))));
    const [first, ...rest] = [...good.params];
    await writeFile(join(job, 'model.safetensors'), encodeModel(model(new Map([[`${first![0]}_renamed`, first![1]], ...rest]))));
    expect((await expectFlareCodeAsync(() => checkJob(job), 'E_CLI_JOB_MODEL_MISMATCH')).message).toMatch(/model\.safetensors.*is missing/);
    await writeFile(join(job, 'model.safetensors'), encodeModel(good));
    const meta = JSON.parse(await readFile(join(job, 'meta.json'), 'utf8')) as { learner: { args: { features: number } } };
    meta.learner.args.features = 0;
    await writeFile(join(job, 'meta.json'), JSON.stringify(meta));
    expect((await expectFlareCodeAsync(() => checkJob(job), 'E_RUNTIME_JOB_INVALID')).message).toMatch(/meta\.json: learner\.args\.features/);
    await writeFile(join(job, 'meta.json'), '{"name": "tj", "rounds": 1,}');
    expect((await expectFlareCodeAsync(() => checkJob(job), 'E_RUNTIME_JOB_INVALID')).message).toMatch(/meta\.json/);
  });

  it('a learner program that fails: at check (E_CLI_JOB_INIT with its output), in simulate (the job\'s own code, naming the site)', { timeout: 600_000 }, async (ctx) => {
    needNumpy(ctx);
    const dir = await mkdtemp(join(tmpdir(), 'flare-job-'));
    const job = await createJob({ name: 'broken', learner: 'command', dir, rounds: 1 }, lines());
    const file = join(job, 'site', 'components.json');
    const c = JSON.parse(await readFile(file, 'utf8')) as { learners: { command: { command: string[] } } };
    c.learners.command.command = [c.learners.command.command[0]!, '-c', 'import sys; print("cannot load the data"); sys.exit(3)'];
    await writeFile(file, JSON.stringify(c));
    expect((await expectFlareCodeAsync(() => checkJob(job), 'E_CLI_JOB_INIT')).message).toMatch(/exited with 3.*cannot load the data/s);
    // Every site refuses the job with the learner's own code; the simulation fails with the server's, naming them.
    const failed = await expectFlareCodeAsync(() => runSimulation({ jobDir: job, sites: 2 }, lines()), 'E_RUNTIME_DEPLOY_REFUSED');
    expect(failed.message).toMatch(/the simulated job FAILED: .*site-1: E_LEARNER_START/);
  });

  it('simulate refuses what it cannot run: an unknown learner, --data-split for tfjs-spam (E_CLI_SIMULATE_CONFIG), a site count against the deploy list (E_RUNTIME_SIMULATION)', { timeout: 300_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flare-job-'));
    const job = await createJob({ name: 'tj2', learner: 'tfjs', dir, rounds: 1 }, lines());
    expect((await expectFlareCodeAsync(() => runSimulation({ jobDir: job, dataSplit: 'iid' }, lines()), 'E_CLI_SIMULATE_CONFIG')).message).toMatch(/^--data-split/);
    const meta = JSON.parse(await readFile(join(job, 'meta.json'), 'utf8')) as { learner: { name: string }; deploy: string[] };
    await writeFile(join(job, 'meta.json'), JSON.stringify({ ...meta, deploy: ['a', 'b'] }));
    expect((await expectFlareCodeAsync(() => runSimulation({ jobDir: job, sites: 3 }, lines()), 'E_RUNTIME_SIMULATION')).message).toMatch(/2 named sites/);
    await writeFile(join(job, 'meta.json'), JSON.stringify({ ...meta, learner: { name: 'my-trainer', args: {} } }));
    expect((await expectFlareCodeAsync(() => runSimulation({ jobDir: job }, lines()), 'E_CLI_SIMULATE_CONFIG')).message).toMatch(/^meta\.json names the learner my-trainer/);
  });
});
