import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { model, tensor, type FLModel } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExternalLearner, PYTHON_CLIENT_DIR } from '../../src/index.js';
import { findPython } from './python.js';

const fixture = (f: string) => fileURLToPath(new URL(`./fixtures/${f}`, import.meta.url));
const ctx = { site: 'site-1', job: 'job-py', round: 0 };
const numpy = findPython(['numpy']);
// The pytest suite's torch test runs where torch is importable too; without torch it is skipped inside pytest.
const withTorch = findPython(['numpy', 'pytest', 'torch']);
const pytest = withTorch.python === undefined ? findPython(['numpy', 'pytest']) : withTorch;
const torch = findPython(['numpy', 'torch']);

let dir: string;
const started: ExternalLearner[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-py-learner-'));
});
afterAll(async () => {
  await Promise.all(started.map((l) => l.close()));
  await rm(dir, { recursive: true, force: true });
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env['PATH'] ?? '', PYTHONPATH: PYTHON_CLIENT_DIR, PYTHONDONTWRITEBYTECODE: '1', FLARE_LEARNER_PROTOCOL: '1', ...extra };
}

async function start(python: string, script: string, extra: Record<string, string> = {}): Promise<ExternalLearner> {
  const l = await ExternalLearner.start({ name: 'py', site: 'site-1', job: 'job-py', command: [python, fixture(script)], cwd: dir, env: env(extra), args: { lr: 0.5 } });
  started.push(l);
  return l;
}

function globalModel(): FLModel {
  return model({ w: tensor(Float32Array.of(1, 2, 3, 4), [2, 2]), b: tensor(Float32Array.of(0, 0), [2]) }, 'full');
}

describe('the Python client (flare_ts)', () => {
  it('passes its pytest suite', (t) => {
    t.skip(pytest.python === undefined, pytest.reason);
    const r = spawnSync(pytest.python!, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests'], {
      cwd: PYTHON_CLIENT_DIR,
      encoding: 'utf8',
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
      timeout: 300_000,
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/\d+ passed/);
  });

  it('runs a numpy training script as an external learner across rounds in one process', async (t) => {
    t.skip(numpy.python === undefined, numpy.reason);
    const l = await start(numpy.python!, 'py_learner.py');
    const pid = l.pid;
    for (let round = 0; round < 3; round++) {
      const u = await l.train(globalModel(), { ...ctx, round, task: 'train', totalRounds: 3 });
      // float64 arithmetic in the script, float32 back on the wire: the client keeps the received dtype.
      expect(u.params.get('w')).toMatchObject({ dtype: 'float32', shape: [2, 2] });
      expect(Array.from(u.params.get('w')!.data as Float32Array)).toEqual([1.5, 2.5, 3.5, 4.5]);
      expect(u.meta).toMatchObject({ NUM_STEPS_CURRENT_ROUND: 5 + round, pid });
      expect(u.metrics).toEqual({ loss: 1 / (round + 1) });
      expect(await l.validate(globalModel(), { ...ctx, round })).toEqual({ accuracy: 0.75, n: 10, round });
    }
    expect(l.pid).toBe(pid);
  });

  it('an exception in the script reaches the site as E_LEARNER_FAILED with its message', async (t) => {
    t.skip(numpy.python === undefined, numpy.reason);
    const l = await start(numpy.python!, 'py_learner.py', { LEARNER_MODE: 'raise' });
    await l.train(globalModel(), ctx);
    await expect(l.train(globalModel(), { ...ctx, round: 1 })).rejects.toMatchObject({ code: 'E_LEARNER_FAILED', message: expect.stringContaining('ValueError: the data loader found no rows') });
  });

  it('NaN in a tensor the script sends: E_LEARNER_NOT_FINITE', async (t) => {
    t.skip(numpy.python === undefined, numpy.reason);
    const l = await start(numpy.python!, 'py_learner.py', { LEARNER_MODE: 'nan' });
    await expect(l.train(globalModel(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_NOT_FINITE' });
  });

  it('a PyTorch script gets tensors and sends its state_dict back', async (t) => {
    t.skip(torch.python === undefined, torch.reason);
    const l = await start(torch.python!, 'py_torch_learner.py');
    const g = model({ weight: tensor(new Float32Array(6).fill(0.1), [2, 3]), bias: tensor(new Float32Array(2), [2]) }, 'full');
    const u = await l.train(g, ctx);
    expect([...u.params.keys()].sort()).toEqual(['bias', 'weight']);
    expect(u.params.get('weight')!.shape).toEqual([2, 3]);
    expect(Array.from(u.params.get('weight')!.data as Float32Array).every((v) => v < 0.1)).toBe(true);
  });
});
