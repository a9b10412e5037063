import { MlError } from '@flare/core';
import { readBounded } from './read-bounded.js';
import { MAX_DATA_VALUES, type LabelTask, type TabularData } from './tabular.js';

/** Options of {@link parseCsv} and {@link loadCsv}. */
export interface CsvOptions {
  /** The header name of the label column. */
  readonly label: string;
  /** How labels are read (default classification: class indices or class names). */
  readonly task?: LabelTask;
  /**
   * Classification with named labels: the class names in index order. Give it when sites may not all see every
   * class; without it, integer labels are indices as written and named labels are indexed in sorted order.
   */
  readonly classes?: readonly string[];
  /** Columns that are neither features nor the label (an id, a date): skipped. */
  readonly ignore?: readonly string[];
  /** Field separator (default `,`). */
  readonly delimiter?: ',' | ';' | '\t';
  /** Largest file accepted, in bytes (default 256 MiB); checked before reading. */
  readonly maxBytes?: number;
  /**
   * How messages name the source (default: the file's path). A site that sends a refusal to the server names
   * the dataset instead, so its path never leaves the site.
   */
  readonly name?: string;
}

/** Default largest CSV file (256 MiB). */
export const DEFAULT_MAX_DATA_BYTES = 256 * 1024 * 1024;

/** Tabular rows of a CSV file with the column names of its features. */
export interface CsvData extends TabularData {
  /** The feature columns, in order. */
  readonly featureNames: readonly string[];
}

// A decimal number as CSV writers produce it (no hex, no NaN, no Infinity, no thousands separators).
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const INDEX = /^\d{1,9}$/;

/** Splits one line into fields (RFC 4180 quoting within a line); undefined when a quote is left open. */
function fields(line: string, sep: string): string[] | undefined {
  if (!line.includes('"')) return line.split(sep);
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === sep) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (quoted) return undefined;
  out.push(cur);
  return out;
}

/**
 * Parses CSV text: a header row, then one row per sample; every column except the label and `ignore` is a
 * numeric feature. Blank lines are skipped; line numbers in messages count from 1 and include the header.
 * Messages name the source, the line and the column, never a cell's value.
 *
 * @throws MlError E_ML_DATA_FORMAT (bad header, a row with another number of fields, a cell that is not a
 *   finite number), E_ML_DATA_LABEL (no label column, a label that is not a class), E_ML_DATA_SHAPE (no
 *   rows or no feature column), E_ML_DATA_TOO_LARGE (more values than a loader allocates).
 */
export function parseCsv(text: string, o: CsvOptions & { readonly name: string }): CsvData {
  const sep = o.delimiter ?? ',';
  const src = o.name;
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  const headerAt = lines.findIndex((l) => l.trim() !== '');
  if (headerAt < 0) throw new MlError('E_ML_DATA_SHAPE', `${src} is empty: a header row and at least one row are needed`);
  const header = fields(lines[headerAt]!.replace(/\r$/, ''), sep)?.map((h) => h.trim());
  if (header === undefined) throw new MlError('E_ML_DATA_FORMAT', `${src}:${headerAt + 1}: the header row has an unterminated quote`);
  const seen = new Set<string>();
  for (const [i, h] of header.entries()) {
    if (h === '') throw new MlError('E_ML_DATA_FORMAT', `${src}:${headerAt + 1}: column ${i + 1} of the header has no name`);
    if (seen.has(h)) throw new MlError('E_ML_DATA_FORMAT', `${src}:${headerAt + 1}: column '${h.slice(0, 64)}' appears twice in the header`);
    seen.add(h);
  }
  const labelAt = header.indexOf(o.label);
  if (labelAt < 0) throw new MlError('E_ML_DATA_LABEL', `${src}:${headerAt + 1}: no label column '${o.label.slice(0, 64)}' in the header (columns: ${header.slice(0, 12).map((h) => h.slice(0, 32)).join(', ')}${header.length > 12 ? ', ...' : ''})`);
  const ignore = new Set(o.ignore ?? []);
  if (ignore.has(o.label)) throw new MlError('E_ML_DATA_LABEL', `${src}: the label column '${o.label.slice(0, 64)}' is also in "ignore"`);
  for (const c of ignore) if (!seen.has(c)) throw new MlError('E_ML_DATA_FORMAT', `${src}: "ignore" names column '${c.slice(0, 64)}', which is not in the header`);
  const featureAt = header.flatMap((h, i) => (i === labelAt || ignore.has(h) ? [] : [i]));
  if (featureAt.length === 0) throw new MlError('E_ML_DATA_SHAPE', `${src}: no feature column besides the label`);
  const f = featureAt.length;
  // One allocation sized from the line count, bounded before it is made.
  const maxRows = lines.length - headerAt - 1;
  if (maxRows * f > MAX_DATA_VALUES) throw new MlError('E_ML_DATA_TOO_LARGE', `${src}: up to ${maxRows} rows x ${f} features exceed the ${MAX_DATA_VALUES} values a data source may hold`);
  const x = new Float32Array(maxRows * f);
  const labels = new Float32Array(maxRows);
  const named: string[] = [];
  const task = o.task ?? 'classification';
  const classIndex = o.classes === undefined ? undefined : new Map(o.classes.map((c, i) => [c, i]));
  let n = 0;
  for (let li = headerAt + 1; li < lines.length; li++) {
    const line = lines[li]!.replace(/\r$/, '');
    if (line.trim() === '') continue;
    const at = `${src}:${li + 1}`;
    const cells = fields(line, sep);
    if (cells === undefined) throw new MlError('E_ML_DATA_FORMAT', `${at}: unterminated quote (a field may not span lines)`);
    if (cells.length !== header.length) throw new MlError('E_ML_DATA_FORMAT', `${at}: ${cells.length} fields, the header has ${header.length}`);
    for (let j = 0; j < f; j++) {
      const col = featureAt[j]!;
      const cell = cells[col]!.trim();
      if (cell === '') throw new MlError('E_ML_DATA_FORMAT', `${at}: column '${header[col]!.slice(0, 64)}' is empty`);
      if (!NUMBER.test(cell)) throw new MlError('E_ML_DATA_FORMAT', `${at}: column '${header[col]!.slice(0, 64)}' is not a number`);
      const v = (x[n * f + j] = Number(cell));
      if (!Number.isFinite(x[n * f + j]!) || !Number.isFinite(v)) throw new MlError('E_ML_DATA_FORMAT', `${at}: column '${header[col]!.slice(0, 64)}' is not a finite float32 number`);
    }
    const raw = cells[labelAt]!.trim();
    const lab = `${at}: label column '${o.label.slice(0, 64)}'`;
    if (raw === '') throw new MlError('E_ML_DATA_LABEL', `${lab} is empty`);
    if (task === 'regression') {
      if (!NUMBER.test(raw) || !Number.isFinite(Number(raw))) throw new MlError('E_ML_DATA_LABEL', `${lab} is not a finite number (regression)`);
      labels[n] = Number(raw);
    } else if (classIndex !== undefined) {
      const c = classIndex.get(raw);
      if (c === undefined) throw new MlError('E_ML_DATA_LABEL', `${lab} is not one of the ${classIndex.size} classes the site declared`);
      labels[n] = c;
    } else {
      named.push(raw);
    }
    n++;
  }
  if (n === 0) throw new MlError('E_ML_DATA_SHAPE', `${src} has a header but no rows`);
  let classes = o.classes;
  if (task === 'classification' && classIndex === undefined) {
    if (named.every((v) => INDEX.test(v))) {
      named.forEach((v, i) => (labels[i] = Number(v)));
    } else {
      // A stable order every site computes alike from the same set of names: sorted by code unit.
      const sorted = [...new Set(named)].sort();
      const index = new Map(sorted.map((c, i) => [c, i]));
      named.forEach((v, i) => (labels[i] = index.get(v)!));
      classes = sorted;
    }
  }
  return { x: x.subarray(0, n * f), labels: labels.subarray(0, n), features: f, n, featureNames: featureAt.map((i) => header[i]!), ...(classes === undefined ? {} : { classes }) };
}

/**
 * Reads a CSV file of numeric features and a named label column (see {@link parseCsv}); its size is checked
 * before it is read.
 *
 * @throws MlError E_ML_DATA_FILE (missing, not a file, unreadable), E_ML_DATA_TOO_LARGE, and parseCsv's codes.
 * @example
 * ```ts
 * const iris = await loadCsv('/data/iris.csv', { label: 'species' });
 * const { train, validation } = splitValidation(iris, 0.2, 42);
 * ```
 */
export async function loadCsv(file: string, o: CsvOptions): Promise<CsvData> {
  const name = o.name ?? file;
  const bytes = await readBounded(file, o.maxBytes ?? DEFAULT_MAX_DATA_BYTES, name);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new MlError('E_ML_DATA_FORMAT', `${name} is not UTF-8 text`, { cause: e });
  }
  return parseCsv(text, { ...o, name });
}
