// The benchmark harness: timing helpers and the report format every suite uses.
import { cpus, loadavg, totalmem } from 'node:os';

/** One figure: a subject measured against a baseline in the same run, or an absolute measurement. */
export interface Row {
  /** What was measured, e.g. "decode 100 MB model". */
  readonly label: string;
  readonly value: number;
  /** Unit of `value`, e.g. "MB/s", "ms", "ops/s". */
  readonly unit: string;
  /** The baseline measured in the same run, in the same unit. */
  readonly baseline?: { readonly label: string; readonly value: number };
  /** true when a larger value is better (throughput), false for times. Decides how the ratio reads. */
  readonly higherIsBetter?: boolean;
  /** The target, e.g. ">= 0.5x" or "< 20 µs". */
  readonly aim?: string;
}

/** A suite: `npm run bench -- <name>` runs the default export of src/suites/<name>.ts. */
export interface Suite {
  readonly name: string;
  readonly description: string;
  run(): Promise<Row[]>;
}

/** Statistics of repeated runs, in milliseconds. */
export interface Timing {
  readonly median: number;
  readonly min: number;
  readonly runs: number;
}

/**
 * Runs `fn` repeatedly (after `warmup` runs) until both `minRuns` runs and `minMs` milliseconds have passed,
 * bounded by `maxRuns`, and returns the median and minimum time per run.
 */
export async function time(
  fn: () => unknown,
  { warmup = 1, minRuns = 5, minMs = 500, maxRuns = 1000 }: { warmup?: number; minRuns?: number; minMs?: number; maxRuns?: number } = {},
): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < maxRuns && (times.length < minRuns || performance.now() - start < minMs)) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)]!, min: times[0]!, runs: times.length };
}

/** What {@link paired} measured: each side's timing and the median of the per-pair time ratios. */
export interface PairedTiming {
  readonly baseline: Timing;
  readonly subject: Timing;
  /** Median over the pairs of (baseline time / subject time): > 1 means the subject is faster. */
  readonly ratio: number;
}

/**
 * Times `baseline` and `subject` alternately, `runs` times each after one warm-up each, so that load from other
 * processes on a shared machine falls on both alike. The median of per-pair ratios is steadier than the ratio
 * of medians when the load drifts.
 */
export async function paired(baseline: () => unknown, subject: () => unknown, { runs = 9 }: { runs?: number } = {}): Promise<PairedTiming> {
  await baseline();
  await subject();
  const b: number[] = [];
  const s: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t0 = performance.now();
    await baseline();
    b.push(performance.now() - t0);
    t0 = performance.now();
    await subject();
    s.push(performance.now() - t0);
  }
  const med = (a: readonly number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  const stats = (a: readonly number[]): Timing => ({ median: med(a), min: Math.min(...a), runs: a.length });
  return { baseline: stats(b), subject: stats(s), ratio: med(b.map((x, i) => x / s[i]!)) };
}

/** Ratio of subject to baseline, oriented so that > 1 means the subject is better. */
function ratio(row: Row): number | undefined {
  if (!row.baseline) return undefined;
  return row.higherIsBetter === false ? row.baseline.value / row.value : row.value / row.baseline.value;
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const [one, five] = loadavg();
  return `${cpu.trim()}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, ${process.platform}-${process.arch}, load average ${one!.toFixed(1)} (1 min) ${five!.toFixed(1)} (5 min)`;
}

const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3));

/** Prints rows as an aligned table: ratio first, then absolute numbers and the aim. */
export function printRows(suite: string, rows: readonly Row[]): void {
  console.log(`\n## ${suite}`);
  for (const row of rows) {
    const r = ratio(row);
    const head = r === undefined ? '       ' : `${r.toFixed(2).padStart(6)}x`;
    const base = row.baseline ? `  vs ${row.baseline.label}: ${fmt(row.baseline.value)} ${row.unit}` : '';
    const aim = row.aim ? `  (aim ${row.aim})` : '';
    console.log(`${head}  ${row.label}: ${fmt(row.value)} ${row.unit}${base}${aim}`);
  }
}

/**
 * Node flags for a bench's child process: with FLARE_BENCH_PROFILE=<dir>, a V8 CPU profile of the process,
 * written there (named after `name`) when it exits. Node refuses --cpu-prof in NODE_OPTIONS, hence this.
 */
export function profileFlags(name: string): string[] {
  const dir = process.env['FLARE_BENCH_PROFILE'];
  return dir === undefined || dir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}-${process.hrtime.bigint()}.cpuprofile`];
}
