// `flare job create` folders run unchanged in `flare simulate` (real processes: the built CLI, the learners'
// Python programs as subprocesses): the numpy `command` template always, the PyTorch template where python3 can
// import torch (Debian's python3-torch; skipped with how to install it elsewhere).
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, type TestContext } from 'vitest';
import { flare, tempDir } from './support.js';

/** Skips the test (with how to install it) unless a python3 here imports `modules`. */
function needPython(ctx: TestContext, modules: string, apt: string): void {
  // The first `import torch` on a busy machine takes tens of seconds: a generous bound.
  const ok = ['python3', '/usr/bin/python3'].some((py) => spawnSync(py, ['-c', `import ${modules}`], { stdio: 'ignore', timeout: 300_000 }).status === 0);
  if (!ok) ctx.skip(`python3 cannot import ${modules}: apt-get install -y ${apt}`);
}

/** The global accuracy per round from `flare simulate --csv`. */
async function globalAccuracy(csv: string): Promise<number[]> {
  return (await readFile(csv, 'utf8'))
    .trim()
    .split(/\r?\n/)
    .map((l) => l.split(','))
    .filter((f) => f[2] === 'global' && f[3] === 'accuracy')
    .map((f) => Number(f[4]));
}

describe('flare job create -> flare simulate, unchanged', () => {
  it('command (numpy + flare_ts): 3 sites with a label-skewed split; the model learns', { timeout: 900_000 }, async (ctx) => {
    needPython(ctx, 'numpy', 'python3-numpy');
    const dir = await tempDir('flare-e2e-job-create-');
    const created = await flare(['job', 'create', 'softmax', '--learner', 'command', '--rounds', '3', '--dir', dir], 300_000);
    expect(created.code, created.stderr).toBe(0);
    const job = join(dir, 'softmax');
    const checked = await flare(['job', 'check', job], 300_000);
    expect(checked.code, checked.stderr).toBe(0);
    const sim = await flare(['simulate', job, '--sites', '3', '--data-split', 'dirichlet:0.5', '--csv', join(dir, 'm.csv')], 600_000);
    expect(sim.code, sim.stderr).toBe(0);
    expect(sim.stdout).toMatch(/job softmax: FINISHED after 3 rounds with 3 simulated sites/);
    const acc = await globalAccuracy(join(dir, 'm.csv'));
    expect(acc.length).toBe(3);
    expect(acc[2]!).toBeGreaterThan(0.5);
  });

  it('pytorch: the scaffolded PyTorch script trains on 3 simulated sites (scikit-learn digits when installed)', { timeout: 1_200_000 }, async (ctx) => {
    needPython(ctx, 'numpy, torch', 'python3-torch python3-numpy');
    const dir = await tempDir('flare-e2e-job-create-');
    const created = await flare(['job', 'create', 'digits', '--learner', 'pytorch', '--rounds', '3', '--dir', dir], 600_000);
    expect(created.code, created.stderr).toBe(0);
    const job = join(dir, 'digits');
    const checked = await flare(['job', 'check', job], 600_000);
    expect(checked.code, checked.stderr).toBe(0);
    expect(checked.stdout).toMatch(/match what .*train\.py --init writes/);
    const sim = await flare(['simulate', job, '--sites', '3', '--csv', join(dir, 'm.csv'), '--plot', join(dir, 'm.svg')], 900_000);
    expect(sim.code, sim.stderr).toBe(0);
    expect(sim.stdout).toMatch(/job digits: FINISHED after 3 rounds with 3 simulated sites/);
    const acc = await globalAccuracy(join(dir, 'm.csv'));
    process.stdout.write(`pytorch template, 3 simulated sites: global accuracy per round ${acc.map((a) => a.toFixed(3)).join(', ')}\n`);
    expect(acc.length).toBe(3);
    expect(acc[2]!).toBeGreaterThan(acc[0]!);
    expect(acc[2]!).toBeGreaterThan(0.5);
  });

  it('a python without torch is refused with what to install (E_CLI_PYTHON_MISSING, exit 1), nothing written', async () => {
    const dir = await tempDir('flare-e2e-job-create-');
    const r = await flare(['job', 'create', 'nope', '--learner', 'pytorch', '--python', join(dir, 'no-python'), '--dir', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/E_CLI_PYTHON_MISSING.*python3-torch/);
    expect((await flare(['job', 'check', join(dir, 'nope')])).stderr).toMatch(/E_RUNTIME_JOB_INVALID/);
  });
});
