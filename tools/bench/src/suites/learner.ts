import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LEARNER_PROGRAM, type LearnerBenchConfig } from '../participants/learner.js';
import type { Row, Suite } from '../harness.js';

// One training round through the external learner protocol (the site sends the global model to a Python
// program over fds 3/4, the program answers with a difference, the site checks it) against the same round of
// an in-process learner with the same result checks (guardLearner), for 1 M and 25 M float32 parameters. The
// "training" is the same trivial arithmetic on both sides (every weight + 0.001), so the difference is the
// protocol: encoding, the pipes, decoding and the process boundary. Each side runs in a fresh process of its
// own (participants/learner.ts), so its peak resident set (maxRSS) is that scenario's alone; the sides
// alternate twice per size so that the load of a shared machine falls on both.
const SIZES = [1_000_000, 25_000_000];
const ROUNDS = 5;
const PARTICIPANT = fileURLToPath(new URL('../participants/learner.js', import.meta.url));

interface Measured {
  readonly median_ms: number;
  readonly min_ms: number;
  readonly site_peak_mib: number;
  readonly program_peak_mib: number | null;
}

/** A Python with numpy (Debian's first, where apt puts python3-numpy), or undefined. */
function python(): string | undefined {
  return [process.env['FLARE_PYTHON'], '/usr/bin/python3', 'python3'].find((p) => p !== undefined && p !== '' && spawnSync(p, ['-c', 'import numpy'], { stdio: 'ignore', timeout: 60_000 }).status === 0);
}

/** Runs one scenario in its own process (bounded: 10 minutes) and parses its JSON line. */
function measure(c: LearnerBenchConfig): Promise<Measured> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['-e', `import(${JSON.stringify(PARTICIPANT)}).then((m) => m.main(${JSON.stringify(c)}))`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) done(JSON.parse(out.trim().split('\n').pop()!) as Measured);
      else fail(new Error(`learner bench ${c.mode} ${c.params} exited ${code}: ${err.slice(-2000)}`));
    });
  });
}

const median = (a: readonly number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;

export const suite: Suite = {
  name: 'learner',
  description: `learner: one training round through the external protocol (a Python numpy program on fds 3/4) vs an in-process learner with the same result checks, 1 M and 25 M float32 parameters (median of ${ROUNDS} rounds, each side twice in fresh processes); peak memory of the site process and of the program`,
  async run(): Promise<Row[]> {
    const py = python();
    if (py === undefined) throw new Error('the learner bench needs Python 3 with numpy (apt-get install -y python3-numpy)');
    const dir = await mkdtemp(join(tmpdir(), 'flare-bench-learner-'));
    const rows: Row[] = [];
    try {
      await writeFile(join(dir, 'learner.py'), LEARNER_PROGRAM);
      for (const params of SIZES) {
        const local: Measured[] = [];
        const external: Measured[] = [];
        for (let i = 0; i < 2; i++) {
          local.push(await measure({ mode: 'in-process', params, rounds: ROUNDS }));
          external.push(await measure({ mode: 'external', params, rounds: ROUNDS, python: py, dir }));
        }
        const label = `${params / 1e6} M params`;
        const [lt, et] = [median(local.map((m) => m.median_ms)), median(external.map((m) => m.median_ms))];
        const [lm, em] = [Math.max(...local.map((m) => m.site_peak_mib)), Math.max(...external.map((m) => m.site_peak_mib))];
        rows.push(
          { label: `${label}: one round through the protocol`, value: et, unit: 'ms', baseline: { label: 'in-process', value: lt }, higherIsBetter: false },
          { label: `${label}: the protocol's overhead per round`, value: et - lt, unit: 'ms' },
          { label: `${label}: site process peak RSS (model ${((params * 4) / 2 ** 20).toFixed(0)} MiB)`, value: em, unit: 'MiB', baseline: { label: 'in-process', value: lm }, higherIsBetter: false },
          { label: `${label}: the Python program's peak RSS`, value: Math.max(...external.map((m) => m.program_peak_mib ?? Number.NaN)), unit: 'MiB' },
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return rows;
  },
};
