import { isAbsolute, resolve } from 'node:path';
import { FlareError, MlError, flareErrorFromCode, silentLogger, type Logger } from '@flare/core';
import { gaussianMechanism } from '@flare/filters-dp';
import type { LearnerFactory } from '@flare/runtime';
import { TfjsLearner, denseNetwork, loadArrays, loadCsv, seededPermutation, seededRandom, selectRows, splitValidation, toDataset, type LabelTask, type TabularData } from '@flare/tfjs';
import { z } from 'zod';
import { TRAINING_ARGS } from './learner-args.js';

/** The name of the built-in learner that trains on a site's own data sources. */
export const TFJS_LEARNER = 'tfjs';

const ColumnName = z.string().min(1).max(256);
const common = {
  /** A file or folder: absolute, or relative to the folder of site.json; `{site}` is replaced by the site's name. */
  path: z.string().min(1).max(4096),
  /** Hold out this fraction of the rows (seeded shuffle) to validate on; without it, validation uses the training rows. */
  validation_split: z.number().gt(0).lt(1).optional(),
  /** Seed of the validation split. */
  seed: z.int().min(0).max(2 ** 32 - 1).default(42),
  /** Largest size of what is read, in MiB. */
  max_mib: z.int().min(1).max(16_384).default(256),
};

/** A CSV file: a header row, a named label column, numeric features. */
export const CsvSource = z.strictObject({
  type: z.literal('csv'),
  ...common,
  label: ColumnName,
  /** The class names in index order (when labels are words and a site might not see every class). */
  classes: z.array(z.string().min(1).max(256)).min(2).max(65_536).optional(),
  /** Columns that are neither features nor the label (an id, a date). */
  ignore: z.array(ColumnName).max(65_536).optional(),
  delimiter: z.enum([',', ';', '\t']).default(','),
});

/** A folder of `.npy` or `.safetensors` arrays: a features array and a labels array, named. */
const ArraySource = z.strictObject({
  type: z.literal('arrays'),
  ...common,
  features: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/),
  labels: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/),
});

/** One of a site's data sources in site.json. */
export const DataSource = z.discriminatedUnion('type', [CsvSource, ArraySource]);
/** A parsed data source. */
export type DataSource = z.output<typeof DataSource>;

/** site.json `datasets`: the site's data sources by name (a job names one in its learner args, `dataset`). */
export const DataSources = z.record(z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, 'a dataset name is 1-64 letters, digits, _ . -'), DataSource);
/** Parsed site.json `datasets`. */
export type DataSources = z.output<typeof DataSources>;

/** The job arguments of the built-in `tfjs` learner: the network and training, never the data's location. */
export const TfjsLearnerArgs = z.strictObject({
  /** Which of the site's datasets (site.json `datasets`) to train on. */
  dataset: z.string().min(1).max(64).default('default'),
  /** Feature columns the network takes: a site whose data has another count refuses the job. */
  features: z.int().min(1).max(1 << 20),
  task: z.enum(['classification', 'regression']).default('classification'),
  /** Classification: outputs of the softmax layer (class indices 0..classes-1). */
  classes: z.int().min(2).max(65_536).optional(),
  /** Units of each hidden ReLU layer (none: logistic or linear regression). */
  hidden: z.array(z.int().min(1).max(4096)).max(8).default([16]),
  epochs: z.int().min(1).max(1000).default(1),
  ...TRAINING_ARGS,
}).refine((a) => (a.task === 'classification') === (a.classes !== undefined), { message: 'classes is required for classification and not allowed for regression', path: ['classes'] });
/** Parsed {@link TfjsLearnerArgs}. */
export type TfjsLearnerArgs = z.output<typeof TfjsLearnerArgs>;

/**
 * The network of the built-in `tfjs` learner: `hidden1`, `hidden2`, ... ReLU layers, then `out` (softmax over
 * `classes`, or one linear unit for regression). Seeded, so the job's initial model and every site agree.
 */
export function tabularNetwork(a: Pick<TfjsLearnerArgs, 'features' | 'hidden' | 'task' | 'classes'>): ReturnType<typeof denseNetwork> {
  return denseNetwork(a.features, [
    ...a.hidden.map((units, i) => ({ name: `hidden${i + 1}`, units, activation: 'relu' as const })),
    a.task === 'classification' ? { name: 'out', units: a.classes ?? 2, activation: 'softmax' as const } : { name: 'out', units: 1, activation: 'linear' as const },
  ]);
}

/** Where a source's file or folder is: `{site}` replaced, relative to `baseDir`. */
export function sourcePath(source: DataSource, baseDir: string, site: string): string {
  const p = source.path.replaceAll('{site}', site);
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/**
 * Reads a data source. Messages name the source as `name` (the dataset's name at a site, so the path never
 * leaves it in a refusal); the caller logs the path beside the code.
 *
 * @throws MlError E_ML_DATA_FILE, E_ML_DATA_FORMAT, E_ML_DATA_TOO_LARGE, E_ML_DATA_LABEL, E_ML_DATA_SHAPE.
 */
export async function readDataSource(source: DataSource, o: { readonly path: string; readonly task: LabelTask; readonly name: string }): Promise<TabularData> {
  const maxBytes = source.max_mib * 1024 * 1024;
  if (source.type === 'csv') {
    return loadCsv(o.path, {
      label: source.label,
      task: o.task,
      delimiter: source.delimiter,
      maxBytes,
      name: o.name,
      ...(source.classes === undefined ? {} : { classes: source.classes }),
      ...(source.ignore === undefined ? {} : { ignore: source.ignore }),
    });
  }
  return loadArrays(o.path, { features: source.features, labels: source.labels, task: o.task, maxBytes, name: o.name });
}

/** How a simulation deals one dataset to its virtual sites: `iid` or `dirichlet:ALPHA` (label skew). */
export interface DataShare {
  readonly index: number;
  readonly sites: number;
  readonly split: string;
  readonly seed: number;
}

// Marsaglia and Tsang (2000), "A simple method for generating gamma variables"; alpha < 1 by boosting
// (Gamma(alpha + 1) * U^(1/alpha)). Normals by Box-Muller from the same seeded stream.
function gamma(alpha: number, rand: () => number): number {
  if (alpha < 1) return gamma(alpha + 1, rand) * Math.pow(rand() || Number.MIN_VALUE, 1 / alpha);
  const d = alpha - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const z = Math.sqrt(-2 * Math.log(rand() || Number.MIN_VALUE)) * Math.cos(2 * Math.PI * rand());
    const v = (1 + c * z) ** 3;
    if (v <= 0) continue;
    const u = rand() || Number.MIN_VALUE;
    if (Math.log(u) < 0.5 * z * z + d - d * v + d * Math.log(v)) return d * v;
  }
}

/**
 * This virtual site's share of a dataset every simulated site reads whole: `iid` deals a seeded shuffle in N
 * near-equal parts; `dirichlet:ALPHA` deals each class in Dirichlet(ALPHA) proportions (the same draw at every
 * site; smaller ALPHA, more skew). Regression data is always dealt iid.
 */
export function shareOf(data: TabularData, s: DataShare, task: LabelTask): TabularData {
  const order = seededPermutation(data.n, s.seed);
  // The Dirichlet draws come from their own stream (seed + 1), so they do not depend on the number of rows.
  const rand = seededRandom(s.seed + 1);
  if (!s.split.startsWith('dirichlet:') || task === 'regression') {
    return selectRows(data, order.filter((_, k) => Math.floor((k * s.sites) / data.n) === s.index));
  }
  const alpha = Number(s.split.slice('dirichlet:'.length));
  const byClass = new Map<number, number[]>();
  for (const r of order) {
    const c = data.labels[r]!;
    byClass.set(c, [...(byClass.get(c) ?? []), r]);
  }
  const mine: number[] = [];
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    const members = byClass.get(c)!;
    const g = Array.from({ length: s.sites }, () => gamma(alpha, rand));
    const total = g.reduce((a, b) => a + b, 0);
    let from = 0;
    let acc = 0;
    for (let i = 0; i < s.sites; i++) {
      acc += g[i]! / total;
      const to = i === s.sites - 1 ? members.length : Math.round(acc * members.length);
      if (i === s.index) mine.push(...members.slice(from, to));
      from = to;
    }
  }
  return selectRows(data, mine);
}

/** Options of {@link tfjsLearnerFactory}. */
export interface TfjsLearnerSite {
  /** The site's data sources (site.json `datasets`). */
  readonly datasets: DataSources;
  /** The folder relative paths are resolved from (the folder of site.json). */
  readonly baseDir: string;
  /** In a simulation: this virtual site's share of a dataset whose path has no `{site}`. */
  readonly share?: DataShare;
  readonly logger?: Logger;
}

/**
 * The built-in `tfjs` learner of `flare client` and `flare simulate`: a {@link TfjsLearner} with the job's dense
 * network on one of the site's own datasets. The job chooses the network and the training; the site alone
 * says where its data is. The data is read when the job is deployed, so a dataset that cannot be used refuses
 * the job there with its code; the refusal names the dataset, the row and the column, never the path (which
 * the site's log has) or a value.
 */
export function tfjsLearnerFactory(site: TfjsLearnerSite): LearnerFactory<unknown> {
  const cache = new Map<string, Promise<TabularData>>();
  return {
    name: TFJS_LEARNER,
    args: TfjsLearnerArgs as unknown as z.ZodType<unknown>,
    create: async (raw, env) => {
      const a = raw as TfjsLearnerArgs;
      const logger = site.logger ?? env.logger ?? silentLogger;
      const source = site.datasets[a.dataset];
      const name = `dataset '${a.dataset}'`;
      if (source === undefined) {
        throw new MlError('E_ML_DATA_FILE', `${env.site} has no ${name} in its site.json (it has ${Object.keys(site.datasets).join(', ') || 'none'})`);
      }
      const path = sourcePath(source, site.baseDir, env.site);
      let data: TabularData;
      try {
        const key = `${a.dataset}\0${a.task}`;
        let loading = cache.get(key);
        if (loading === undefined) {
          loading = readDataSource(source, { path, task: a.task, name });
          cache.set(key, loading);
          // A failed read is tried again by the next job (the site may have fixed the file).
          loading.catch(() => cache.delete(key));
        }
        data = await loading;
        if (site.share !== undefined && !source.path.includes('{site}')) data = shareOf(data, site.share, a.task);
        if (data.features !== a.features) throw new MlError('E_ML_DATA_SHAPE', `${name} has ${data.features} features, the job's network takes ${a.features}`);
        const split = source.validation_split === undefined ? undefined : splitValidation(data, source.validation_split, source.seed, name);
        const train = toDataset(split?.train ?? data, { task: a.task, ...(a.classes === undefined ? {} : { classes: a.classes }) }, name);
        const validation = split === undefined ? undefined : toDataset(split.validation, { task: a.task, ...(a.classes === undefined ? {} : { classes: a.classes }) }, name);
        return new TfjsLearner({
          build: () => tabularNetwork(a),
          train,
          ...(validation === undefined ? {} : { validation }),
          epochs: a.epochs,
          batchSize: a.batch_size,
          optimizer: { name: a.optimizer, learningRate: a.learning_rate },
          loss: a.task === 'classification' ? 'categoricalCrossentropy' : 'meanSquaredError',
          logger,
          // The noise comes from the site's own CSPRNG-backed mechanism, never from the job.
          ...(a.dp_sgd === undefined ? {} : { dpSgd: { clipNorm: a.dp_sgd.clip_norm, noiseMultiplier: a.dp_sgd.noise_multiplier, samplingRate: a.dp_sgd.sampling_rate, noise: gaussianMechanism() } }),
        });
      } catch (e) {
        // The site's operator needs the path; the refusal that goes to the server names only the dataset.
        if (e instanceof FlareError) {
          logger.warn(`the site's ${name} cannot be used`, { job: env.job, dataset: a.dataset, path, code: e.code, reason: e.message });
          throw flareErrorFromCode(e.code, e.message.replaceAll(path, name));
        }
        throw e;
      }
    },
  };
}
