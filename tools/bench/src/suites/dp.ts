import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileNamePattern, model, tensor, type FLModel } from '@flare/core';
import { cryptoRandomSource, excludeVars, gaussianDp, noiseMultiplierFor, openPrivacyLedger, rdpEpsilon, type DpRandomSource } from '@flare/filters-dp';
import { memoryPrivacyLedger } from '@flare/filters-dp/testing';
import { time, type Row, type Suite } from '../harness.js';

// gaussian-dp on a 10M-parameter float32 update (10 tensors of 1M, a mid-sized CNN's layers), against a plain
// Float32Array add of pre-generated noise into preallocated arrays (the least any noise filter must do; the filter
// also allocates its 40 MB output, the baseline does not) in the same run. The two are measured in alternation,
// round by round, so a busy machine slows both alike; each figure is the median over the rounds, in wall time and
// in CPU time (process.cpuUsage: every thread of the process, so the filter's garbage collection counts too). The
// add's CPU time comes from rounds run before any filter, alone: alternating, the collector's helper threads
// would clean up after the filter during the add and bill it (31 instead of 24 ms here).
// The CSPRNG's share is the time randomFillSync needs for exactly the words the filter consumed, over the
// filter's time.
const PARAMS = 10_000_000;
const TENSORS = 10;
const ROUNDS = 15;

function update(): FLModel {
  const per = PARAMS / TENSORS;
  return model(
    Array.from({ length: TENSORS }, (_, i) => [`layer${i}.weight`, tensor(new Float32Array(per).map((_, j) => (((j * 7919) % 1000) / 1000 - 0.5) * 1e-3), [per / 1000, 1000])] as const),
    'diff',
  );
}

function plainAdd(x: Float32Array, noise: Float32Array, out: Float32Array): void {
  const n = x.length;
  for (let i = 0; i < n; i++) out[i] = x[i]! + noise[i]!;
}

interface Medians {
  readonly wall: number;
  readonly cpu: number;
}

/** Runs the subjects in alternation for `rounds` rounds (after `warmup` rounds) and returns each one's median wall and CPU ms. */
async function alternating(subjects: ReadonlyArray<() => unknown>, rounds: number, warmup: number): Promise<Medians[]> {
  for (let r = 0; r < warmup; r++) for (const fn of subjects) await fn();
  const wall = subjects.map(() => [] as number[]);
  const cpu = subjects.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < subjects.length; k++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await subjects[k]!();
      wall[k]!.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu[k]!.push((c.user + c.system) / 1000);
    }
  }
  const median = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  return subjects.map((_, k) => ({ wall: median(wall[k]!), cpu: median(cpu[k]!) }));
}

export const suite: Suite = {
  name: 'dp',
  description: 'gaussian-dp (clip + discrete Gaussian noise from the CSPRNG) on a 10M-parameter update vs a plain Float32Array add of pre-generated noise; accountant timings',
  async run(): Promise<Row[]> {
    const m = update();
    const ctx = { site: 'bench', job: 'bench', round: 0 };
    const rate = (ms: number) => PARAMS / (ms / 1000) / 1e6;

    const xs = [...m.params.values()].map((t) => t.data as Float32Array);
    const noise = xs.map((x) => new Float32Array(x.length).map((_, j) => ((j * 104729) % 2000) / 1000 - 1));
    const outs = xs.map((x) => new Float32Array(x.length));
    // The same 10M parameters as one tensor (an embedding table): one long run of the sampler.
    const single = model({ embedding: tensor(new Float32Array(PARAMS).map((_, j) => (((j * 7919) % 1000) / 1000 - 0.5) * 1e-3), [PARAMS / 1000, 1000]) }, 'diff');

    // Timed with the default CSPRNG source; the words one release consumes are counted in a separate, untimed run.
    // Three warm-up rounds: the first releases grow the heap by 40 MB each and run unoptimised code.
    const filter = gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1 });
    const addAll = () => xs.forEach((x, i) => plainAdd(x, noise[i]!, outs[i]!));
    const [addAlone] = await alternating([addAll], ROUNDS, 3);
    const [add, dp, dpSingle] = await alternating([addAll, () => filter.apply(m, ctx), () => filter.apply(single, ctx)], ROUNDS, 3);
    const baseline = { label: 'plain Float32Array add of pre-generated noise', value: rate(add!.wall) };
    const baselineCpu = { label: 'the same add, run alone', value: rate(addAlone!.cpu) };
    let words = 0;
    const counting: DpRandomSource = {
      fill(w) {
        words += w.length;
        cryptoRandomSource.fill(w);
      },
    };
    await gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, random: counting }).apply(m, ctx);
    const wordsPerRun = words;
    const buf = new Uint32Array(16_384);
    const rng = await time(
      () => {
        for (let done = 0; done < wordsPerRun; done += buf.length) randomFillSync(buf);
      },
      { minRuns: 10 },
    );

    // Budgets are per dataset across jobs: a budget far above what the runs spend, so it never runs out here.
    const huge = { maxEpsilon: 1e9, delta: 1e-5 };
    const budgeted = gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget: { ...huge, ledger: memoryPrivacyLedger({ site: ctx.site }) } });
    let round = 0;
    const withBudget = await time(() => budgeted.apply(m, { ...ctx, job: `bench-${round++}` }), { minRuns: 5, warmup: 3 });
    const dir = mkdtempSync(join(tmpdir(), 'flare-bench-dp-'));
    const small = model({ w: tensor(new Float32Array(1000)) }, 'diff');
    const ledger = openPrivacyLedger(dir, { site: ctx.site });
    const onDisk = gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget: { ...huge, ledger } });
    const fileCharge = await time(() => onDisk.apply(small, { ...ctx, job: `bench-${round++}` }), { minRuns: 20 });
    // What a restart costs: reading and verifying a ledger of 1,000 releases (chain, totals) in a new folder.
    for (let i = 0; i < 1000 - fileCharge.runs - 1; i++) await onDisk.apply(small, { ...ctx, job: 'fill' });
    const lines = readdirSync(dir).find((n) => n.startsWith('ledger-'))!;
    const text = readFileSync(join(dir, lines), 'utf8');
    let copies = 0;
    const load = await time(
      async () => {
        const copy = join(dir, `copy-${copies++}`);
        mkdirSync(copy);
        writeFileSync(join(copy, lines), text);
        await openPrivacyLedger(copy, { site: ctx.site }).read('default', 'x');
      },
      { minRuns: 10 },
    );
    const ledgerLines = text.split('\n').length - 1;
    rmSync(dir, { recursive: true, force: true });

    // Job-supplied tensor-name patterns: core's linear-time matcher against RegExp on 10,000 names of a model.
    const names = Array.from({ length: 10_000 }, (_, i) => `encoder.layer.${i % 48}.attention.${i % 3 === 0 ? 'num_batches_tracked' : 'weight'}`);
    const source = '(^|\\.)num_batches_tracked$';
    const linear = compileNamePattern(source);
    const regexp = new RegExp(source, 'u');
    let hits = 0;
    const matchLinear = await time(() => {
      for (const n of names) if (linear.test(n)) hits++;
    }, { minRuns: 10 });
    const matchRegexp = await time(() => {
      for (const n of names) if (regexp.test(n)) hits--;
    }, { minRuns: 10 });
    if (hits !== 0) throw new Error('the two matchers disagree');
    const excluded = await time(() => excludeVars({ pattern: source }).apply(model(Object.fromEntries(names.slice(0, 1000).map((n) => [n, tensor(new Float32Array(1))]))), ctx), { minRuns: 10 });

    const eps = await time(() => rdpEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.04, steps: 2250, delta: 1e-5 }), { minRuns: 20 });
    const calib = await time(() => noiseMultiplierFor({ epsilon: 8, delta: 1e-5, samplingRate: 0.04, steps: 2000 }), { minRuns: 5 });

    return [
      { label: `gaussian-dp, ${PARAMS / 1e6}M float32 parameters in ${TENSORS} tensors (wall, median of ${ROUNDS} alternating runs)`, value: rate(dp!.wall), unit: 'M params/s', baseline, higherIsBetter: true, aim: '>= 0.3x' },
      { label: '  the same in CPU time', value: rate(dp!.cpu), unit: 'M params/s', baseline: baselineCpu, higherIsBetter: true, aim: '>= 0.3x' },
      { label: `  one tensor of ${PARAMS / 1e6}M parameters (wall)`, value: rate(dpSingle!.wall), unit: 'M params/s', baseline, higherIsBetter: true },
      { label: `  CSPRNG share: randomFillSync of the ${(wordsPerRun / PARAMS).toFixed(3)} words/param it consumed`, value: (100 * rng.median) / dp!.wall, unit: '% of filter time' },
      { label: '  gaussian-dp with a budget (memory ledger, RDP charge per round)', value: rate(withBudget.median), unit: 'M params/s', baseline, higherIsBetter: true },
      { label: '  budget charge on disk (1k-param update: one ledger line appended and fdatasync\'ed)', value: fileCharge.median, unit: 'ms' },
      { label: `  ledger read and verified at start (${ledgerLines} lines)`, value: load.median, unit: 'ms' },
      { label: 'tensor-name pattern, 10,000 names: linear-time matcher (core)', value: (names.length / matchLinear.median) * 1e-3, unit: 'M names/s', baseline: { label: "JavaScript's RegExp (backtracking)", value: (names.length / matchRegexp.median) * 1e-3 }, higherIsBetter: true },
      { label: '  exclude-vars with that pattern on a 1,000-tensor model', value: excluded.median, unit: 'ms' },
      { label: 'rdpEpsilon, Opacus standard case (151 orders)', value: eps.median, unit: 'ms' },
      { label: 'noiseMultiplierFor, epsilon 8, q 0.04, 2000 steps', value: calib.median, unit: 'ms' },
    ];
  },
};
