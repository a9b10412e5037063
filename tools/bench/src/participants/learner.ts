// One side of the learner bench (suites/learner.ts) in a process of its own, so that its peak resident set is
// the peak of this scenario alone: training rounds of an in-process learner, or of an external Python learner
// through the protocol. Started as
//   node -e "import('<this file>').then((m) => m.main(<json config>))"
// and prints one JSON line: {"median_ms", "min_ms", "site_peak_mib", "program_peak_mib"}.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { model, tensor, type FLModel, type Learner, type LearnerContext } from '@flare/core';
import { ExternalLearner, PYTHON_CLIENT_DIR, guardLearner } from '@flare/runtime';

/** What a learner bench process measures. */
export interface LearnerBenchConfig {
  readonly mode: 'in-process' | 'external';
  readonly params: number;
  readonly rounds: number;
  /** The Python interpreter and the folder of the program (external). */
  readonly python?: string;
  readonly dir?: string;
}

/** The program: the same trivial round as the in-process learner (a difference of 0.001 for every weight). */
export const LEARNER_PROGRAM = `import numpy as np
import flare_ts as flare
flare.init(framework="numpy")
while flare.is_running():
    params = flare.receive()
    flare.send({k: np.full_like(v, 0.001) for k, v in params.items()}, steps=1, kind="diff")
`;

/** The same round in the site's process, checked like a plugin's result (guardLearner). */
const inProcess: Learner = guardLearner(
  {
    train(global: FLModel): Promise<FLModel> {
      const params = new Map([...global.params].map(([k, t]) => [k, tensor(new Float32Array(t.data.length).fill(0.001), t.shape)]));
      return Promise.resolve({ params, kind: 'diff', meta: { NUM_STEPS_CURRENT_ROUND: 1 } });
    },
    validate: () => Promise.resolve({}),
  },
  { name: 'in-process', site: 'site-1' },
);

/** A process's peak resident set (VmHWM, /proc) in MiB. */
function vmHwm(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? null : Number(m[1]) / 1024;
}

/** Runs the scenario, prints its JSON line. */
export async function main(c: LearnerBenchConfig): Promise<void> {
  const global = model({ w: tensor(new Float32Array(c.params).fill(0.5), [c.params]) }, 'full');
  const ctx: LearnerContext = { site: 'site-1', job: 'bench', round: 0, task: 'train' };
  const learner =
    c.mode === 'in-process'
      ? inProcess
      : await ExternalLearner.start({
          name: 'bench',
          site: 'site-1',
          job: 'bench',
          command: [c.python!, join(c.dir!, 'learner.py')],
          cwd: c.dir!,
          env: { PATH: process.env['PATH'] ?? '', PYTHONPATH: PYTHON_CLIENT_DIR, PYTHONDONTWRITEBYTECODE: '1', FLARE_LEARNER_PROTOCOL: '1', OMP_NUM_THREADS: '1' },
        });
  try {
    await learner.train(global, ctx);
    const times: number[] = [];
    for (let i = 0; i < c.rounds; i++) {
      const t0 = performance.now();
      await learner.train(global, { ...ctx, round: i + 1 });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const programPeak = learner instanceof ExternalLearner ? vmHwm(learner.pid) : null;
    const sitePeak = process.resourceUsage().maxRSS / 1024;
    process.stdout.write(`${JSON.stringify({ median_ms: times[times.length >> 1], min_ms: times[0], site_peak_mib: sitePeak, program_peak_mib: programPeak })}\n`);
  } finally {
    await learner.close?.();
  }
}
