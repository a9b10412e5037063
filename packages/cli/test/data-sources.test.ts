import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeModel } from '@flare/core';
import { expectFlareCodeAsync } from '@flare/core/testing';
import type { LearnerEnv } from '@flare/runtime';
import { readWeights, selectBackend, type TabularData } from '@flare/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DataSources, TfjsLearnerArgs, shareOf, tabularNetwork, tfjsLearnerFactory } from '../src/data-sources.js';
import { checkJob, createJob } from '../src/commands/job.js';
import { runSimulation, withHe } from '../src/commands/simulate.js';
import { SiteConfig } from '../src/poc/site-config.js';
import type { Io } from '../src/run.js';

const CSV = ['a,b,id,kind', ...Array.from({ length: 40 }, (_, i) => `${(i % 4) / 4},${i % 2},${i},${['x', 'y', 'z'][i % 3]}`)].join('\n');

let dir: string;
beforeAll(async () => {
  await selectBackend({ prefer: 'cpu' });
  dir = await mkdtemp(join(tmpdir(), 'flare-data-sources-'));
  await writeFile(join(dir, 'site-1.csv'), CSV);
});

const env = (site = 'site-1'): LearnerEnv => ({ site, workspace: dir, job: 'job-1', jobWorkspace: join(dir, 'job-1') });
const args = (a: Record<string, unknown> = {}) => TfjsLearnerArgs.parse({ features: 2, classes: 3, hidden: [4], ...a });
const records: Array<Record<string, unknown>> = [];
const logger = { debug: () => undefined, info: () => undefined, error: () => undefined, warn: (_m: string, f?: Record<string, unknown>) => void records.push(f ?? {}) };

describe('site.json datasets', () => {
  it('accepts CSV and array sources and refuses unknown fields and types', () => {
    expect(SiteConfig.parse({ datasets: { default: { type: 'csv', path: 'a.csv', label: 'y' }, scans: { type: 'arrays', path: '/d', features: 'x', labels: 'y' } } }).datasets?.['default']?.max_mib).toBe(256);
    expect(SiteConfig.safeParse({ datasets: { d: { type: 'csv', path: 'a.csv', label: 'y', url: 'http://x' } } }).success).toBe(false);
    expect(SiteConfig.safeParse({ datasets: { d: { type: 'parquet', path: 'a' } } }).success).toBe(false);
    expect(DataSources.safeParse({ '../x': { type: 'csv', path: 'a.csv', label: 'y' } }).success).toBe(false);
  });

  it('the learner args need classes for classification only', () => {
    expect(TfjsLearnerArgs.safeParse({ features: 2 }).success).toBe(false);
    expect(TfjsLearnerArgs.safeParse({ features: 2, task: 'regression', classes: 3 }).success).toBe(false);
    expect(TfjsLearnerArgs.safeParse({ features: 2, task: 'regression' }).success).toBe(true);
  });
});

describe('the built-in tfjs learner on a site dataset', () => {
  it('trains on a CSV named with {site}, relative to site.json, and reports no path or row count in meta', async () => {
    const f = tfjsLearnerFactory({ datasets: DataSources.parse({ default: { type: 'csv', path: '{site}.csv', label: 'kind', ignore: ['id'], validation_split: 0.25 } }), baseDir: dir });
    const a = args();
    const learner = await f.create(a, env());
    const global = readWeights(tabularNetwork(a));
    const update = await learner.train(global, { site: 'site-1', job: 'job-1', round: 0 });
    expect(Object.keys(update.meta).sort()).toEqual(['NUM_STEPS_CURRENT_ROUND', 'current_round']);
    expect(JSON.stringify(update.meta) + JSON.stringify(update.metrics)).not.toMatch(/site-1\.csv|flare-data-sources/);
    const m = await learner.validate(global, { site: 'site-1', job: 'job-1', round: 0 });
    expect(m['n']).toBe(10);
    expect(m['accuracy']).toBeGreaterThanOrEqual(0);
  });

  it('refuses a dataset the site does not have (E_ML_DATA_FILE)', async () => {
    const f = tfjsLearnerFactory({ datasets: {}, baseDir: dir });
    const e = await expectFlareCodeAsync(() => Promise.resolve(f.create(args({ dataset: 'other' }), env())), 'E_ML_DATA_FILE');
    expect(e.message).toMatch(/site-1 has no dataset 'other'/);
  });

  it('refuses a missing file naming the dataset, not the path, which only the site log has (E_ML_DATA_FILE)', async () => {
    records.length = 0;
    const f = tfjsLearnerFactory({ datasets: DataSources.parse({ default: { type: 'csv', path: 'secret-cohort/{site}.csv', label: 'kind' } }), baseDir: dir, logger });
    const e = await expectFlareCodeAsync(() => Promise.resolve(f.create(args(), env('site-9'))), 'E_ML_DATA_FILE');
    expect(e.message).toBe("dataset 'default' cannot be read (no such file)");
    expect(records[0]?.['path']).toBe(join(dir, 'secret-cohort', 'site-9.csv'));
  });

  it("refuses data with another feature count than the job's network (E_ML_DATA_SHAPE)", async () => {
    const f = tfjsLearnerFactory({ datasets: DataSources.parse({ default: { type: 'csv', path: 'site-1.csv', label: 'kind' } }), baseDir: dir });
    const e = await expectFlareCodeAsync(() => Promise.resolve(f.create(args(), env())), 'E_ML_DATA_SHAPE');
    expect(e.message).toBe("dataset 'default' has 3 features, the job's network takes 2");
  });

  it('refuses more classes than the model has outputs, and a non-numeric feature with its line and column (E_ML_DATA_LABEL, E_ML_DATA_FORMAT)', async () => {
    const f = tfjsLearnerFactory({ datasets: DataSources.parse({ default: { type: 'csv', path: 'site-1.csv', label: 'kind', ignore: ['id'] }, words: { type: 'csv', path: 'site-1.csv', label: 'a', ignore: ['id'] } }), baseDir: dir });
    await expectFlareCodeAsync(() => Promise.resolve(f.create(args({ classes: 2 }), env())), 'E_ML_DATA_LABEL');
    const e = await expectFlareCodeAsync(() => Promise.resolve(f.create(args({ dataset: 'words' }), env())), 'E_ML_DATA_FORMAT');
    expect(e.message).toBe("dataset 'words':2: column 'kind' is not a number");
  });

  it('refuses a file over max_mib (E_ML_DATA_TOO_LARGE)', async () => {
    await writeFile(join(dir, 'big.csv'), `a,kind\n${'0.5,x\n'.repeat(200_000)}`);
    const f = tfjsLearnerFactory({ datasets: DataSources.parse({ default: { type: 'csv', path: 'big.csv', label: 'kind', max_mib: 1 } }), baseDir: dir });
    await expectFlareCodeAsync(() => Promise.resolve(f.create(args({ features: 1 }), env())), 'E_ML_DATA_TOO_LARGE');
  });
});

describe('shareOf', () => {
  const data: TabularData = { x: Float32Array.from({ length: 300 }, (_, i) => i), labels: Float32Array.from({ length: 300 }, (_, i) => i % 3), features: 1, n: 300 };
  const rowsOf = (d: TabularData): number[] => [...d.x];

  for (const split of ['iid', 'dirichlet:0.3']) {
    it(`${split}: the sites' shares are disjoint and cover every row`, () => {
      const shares = [0, 1, 2, 3].map((index) => shareOf(data, { index, sites: 4, split, seed: 5 }, 'classification'));
      const all = shares.flatMap(rowsOf).sort((a, b) => a - b);
      expect(all).toEqual(Array.from({ length: 300 }, (_, i) => i));
    });
  }

  it('iid gives near-equal shares; dirichlet with a small alpha skews the labels', () => {
    expect([0, 1, 2].map((index) => shareOf(data, { index, sites: 3, split: 'iid', seed: 1 }, 'classification').n)).toEqual([100, 100, 100]);
    const skewed = [0, 1, 2].map((index) => shareOf(data, { index, sites: 3, split: 'dirichlet:0.1', seed: 1 }, 'classification'));
    const maxShare = Math.max(...skewed.map((s) => Math.max(...[0, 1, 2].map((c) => [...s.labels].filter((l) => l === c).length)) / Math.max(1, s.n)));
    expect(maxShare).toBeGreaterThan(0.6);
  });
});

const quiet = (): Io & { text: () => string } => {
  const all: string[] = [];
  return { out: (l) => void all.push(l), err: (l) => void all.push(l), text: () => all.join('\n') };
};

describe('flare job create --learner tfjs --csv', () => {
  it('makes a job whose model fits the CSV, checks it, and simulates it on 2 sites', { timeout: 600_000 }, async () => {
    const jobs = join(dir, 'jobs');
    await mkdir(jobs);
    const csv = join(dir, 'words.csv');
    await writeFile(csv, ['f1,f2,f3,animal', ...Array.from({ length: 60 }, (_, i) => `${i % 2},${(i % 3) / 2},${i % 5},${['cat', 'dog'][i % 2]}`)].join('\n'));
    const io = quiet();
    const job = await createJob({ name: 'animals', learner: 'tfjs', dir: jobs, rounds: 2, csv, label: 'animal' }, io);
    const meta = JSON.parse(await readFile(join(job, 'meta.json'), 'utf8')) as { learner: { name: string; args: { features: number; classes: number } } };
    expect(meta.learner).toMatchObject({ name: 'tfjs', args: { features: 3, classes: 2 } });
    const site = JSON.parse(await readFile(join(job, 'site', 'site.json'), 'utf8')) as { datasets: { default: { classes: string[]; path: string } } };
    expect(site.datasets.default.classes).toEqual(['cat', 'dog']);
    expect((await checkJob(job)).learner).toMatch(/match the built-in learner tfjs, and so does .*words\.csv \(60 rows, 3 features\)/);
    const sim = quiet();
    await runSimulation({ jobDir: job, sites: 2 }, sim);
    expect(sim.text()).toMatch(/job animals: FINISHED after 2 rounds with 2 simulated sites/);
  });

  it('refuses --csv without --label, and --csv with another learner (E_CLI_JOB_OPTIONS)', async () => {
    await expectFlareCodeAsync(() => createJob({ name: 'x', learner: 'tfjs', dir, csv: join(dir, 'site-1.csv') }, quiet()), 'E_CLI_JOB_OPTIONS');
    await expectFlareCodeAsync(() => createJob({ name: 'y', learner: 'command', dir, csv: join(dir, 'site-1.csv'), label: 'kind' }, quiet()), 'E_CLI_JOB_OPTIONS');
  });

  it('job check refuses a model whose features disagree with the dataset (E_CLI_JOB_MODEL_MISMATCH)', async () => {
    const job = join(dir, 'jobs', 'animals');
    const meta = JSON.parse(await readFile(join(job, 'meta.json'), 'utf8')) as { learner: { args: { features: number } } };
    meta.learner.args.features = 2;
    await writeFile(join(job, 'meta.json'), JSON.stringify(meta));
    await writeFile(join(job, 'model.safetensors'), encodeModel(readWeights(tabularNetwork(TfjsLearnerArgs.parse(meta.learner.args)))));
    await expectFlareCodeAsync(() => checkJob(job), 'E_CLI_JOB_MODEL_MISMATCH');
  });
});

describe('flare simulate --he', () => {
  it('withHe decrypts first and encrypts last in every scope, and makes one scope when the site folder has none', () => {
    const dp = { name: 'gaussian-dp', args: { clipNorm: 1, noiseMultiplier: 1 } };
    const p = withHe({ format_version: '1.0', scopes: [{ name: 'private', task_data_filters: [{ name: 'x', args: {} }], task_result_filters: [dp] }], default_scope: 'private' }, 'private') as { scopes: Array<{ task_data_filters: Array<{ name: string }>; task_result_filters: Array<{ name: string }> }> };
    expect(p.scopes[0]!.task_data_filters.map((f) => f.name)).toEqual(['he-decrypt', 'x']);
    expect(p.scopes[0]!.task_result_filters.map((f) => f.name)).toEqual(['gaussian-dp', 'he-encrypt']);
    expect(withHe(undefined, 'public')).toEqual({ format_version: '1.0', scopes: [{ name: 'public', task_data_filters: [{ name: 'he-decrypt', args: {} }], task_result_filters: [{ name: 'he-encrypt', args: {} }] }], default_scope: 'public' });
  });

  it('runs a tfjs CSV job with every update encrypted: the server aggregates ciphertexts and the model still learns', { timeout: 900_000 }, async () => {
    const jobs = join(dir, 'he-jobs');
    await mkdir(jobs);
    const csv = join(dir, 'he.csv');
    await writeFile(csv, ['f1,f2,y', ...Array.from({ length: 80 }, (_, i) => `${i % 2},${((i * 7) % 10) / 10},${i % 2 === 0 ? 'even' : 'odd'}`)].join('\n'));
    const job = await createJob({ name: 'he', learner: 'tfjs', dir: jobs, rounds: 2, csv, label: 'y' }, quiet());
    const sim = quiet();
    await runSimulation({ jobDir: job, sites: 2, he: true }, sim);
    expect(sim.text()).toMatch(/learner tfjs, HE\)/);
    expect(sim.text()).toMatch(/^round 2\/2: 2 sites in [\d.]+ s, encrypted/m);
    expect(sim.text()).toMatch(/job he: FINISHED after 2 rounds with 2 simulated sites/);
  });
});
