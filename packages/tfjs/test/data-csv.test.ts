import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectFlareCode, expectFlareCodeAsync } from '@flare/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCsv, parseCsv } from '../src/data/csv.js';

const IRIS = `sepal_length,sepal_width,petal_length,petal_width,species
5.1,3.5,1.4,0.2,setosa
7.0,3.2,4.7,1.4,versicolor
6.3,3.3,6.0,2.5,virginica
4.9,3.0,1.4,0.2,setosa
`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-tfjs-csv-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const parse = (text: string, o: Partial<Parameters<typeof parseCsv>[1]> = {}) => parseCsv(text, { label: 'species', name: 'iris.csv', ...o });

describe('parseCsv', () => {
  it('reads numeric features and maps named labels to class indices in sorted order', () => {
    const d = parse(IRIS);
    expect(d.n).toBe(4);
    expect(d.features).toBe(4);
    expect(d.featureNames).toEqual(['sepal_length', 'sepal_width', 'petal_length', 'petal_width']);
    expect(d.classes).toEqual(['setosa', 'versicolor', 'virginica']);
    expect([...d.labels]).toEqual([0, 1, 2, 0]);
    expect(d.x[4]).toBeCloseTo(7.0);
    expect(d.x[15]).toBeCloseTo(0.2);
  });

  it('gives the same class order whatever the row order (sites agree)', () => {
    const rows = IRIS.trim().split('\n');
    const shuffled = [rows[0], rows[3], rows[2], rows[1], rows[4]].join('\n');
    expect(parse(shuffled).classes).toEqual(parse(IRIS).classes);
  });

  it("uses the site's declared class order, integer labels as written, CRLF, quotes, BOM and ignored columns", () => {
    expect([...parse(IRIS, { classes: ['virginica', 'versicolor', 'setosa'] }).labels]).toEqual([2, 1, 0, 2]);
    const ints = parse('id,a,"b, quoted",species\r\n7,1,2,3\r\n\r\n8,4,5,0\r\n', { ignore: ['id'] });
    expect(ints.featureNames).toEqual(['a', 'b, quoted']);
    expect([...ints.labels]).toEqual([3, 0]);
    expect(ints.classes).toBeUndefined();
    expect(parse('\uFEFFa;species\n1;x\n', { delimiter: ';' }).n).toBe(1);
  });

  it('reads a regression target as a number', () => {
    const d = parse('a,b,y\n1,2,0.5\n3,4,-1e2\n', { label: 'y', task: 'regression' });
    expect([...d.labels]).toEqual([0.5, -100]);
  });

  it('refuses a missing label column, naming the columns there are (E_ML_DATA_LABEL)', () => {
    const e = expectFlareCode(() => parse(IRIS, { label: 'class' }), 'E_ML_DATA_LABEL');
    expect(e.message).toMatch(/^iris\.csv:1: no label column 'class'.*sepal_length/);
  });

  it('refuses a non-numeric cell with the line and column, never the value (E_ML_DATA_FORMAT)', () => {
    const e = expectFlareCode(() => parse(IRIS.replace('6.3,3.3', '6.3,secret-value')), 'E_ML_DATA_FORMAT');
    expect(e.message).toBe("iris.csv:4: column 'sepal_width' is not a number");
    expect(e.message).not.toMatch(/secret/);
  });

  it('refuses NaN, infinity, float32 overflow and empty cells (E_ML_DATA_FORMAT)', () => {
    expectFlareCode(() => parse(IRIS.replace('7.0,', 'NaN,')), 'E_ML_DATA_FORMAT');
    expectFlareCode(() => parse(IRIS.replace('7.0,', 'Infinity,')), 'E_ML_DATA_FORMAT');
    expect(expectFlareCode(() => parse(IRIS.replace('7.0,', '1e39,')), 'E_ML_DATA_FORMAT').message).toMatch(/:3: column 'sepal_length' is not a finite float32/);
    expect(expectFlareCode(() => parse(IRIS.replace('7.0,', ',')), 'E_ML_DATA_FORMAT').message).toMatch(/:3: column 'sepal_length' is empty/);
  });

  it('refuses a row with another number of fields, a bad header and an open quote (E_ML_DATA_FORMAT)', () => {
    expect(expectFlareCode(() => parse(IRIS.replace('4.9,3.0,', '4.9,')), 'E_ML_DATA_FORMAT').message).toMatch(/iris\.csv:5: 4 fields, the header has 5/);
    expectFlareCode(() => parse('a,a,species\n1,2,x\n'), 'E_ML_DATA_FORMAT');
    expectFlareCode(() => parse('a,,species\n1,2,x\n'), 'E_ML_DATA_FORMAT');
    expectFlareCode(() => parse('a,species\n"1,x\n'), 'E_ML_DATA_FORMAT');
    expectFlareCode(() => parse(IRIS, { ignore: ['nope'] }), 'E_ML_DATA_FORMAT');
  });

  it('refuses a label that is not a declared class, an empty label, a non-numeric regression target (E_ML_DATA_LABEL)', () => {
    expect(expectFlareCode(() => parse(IRIS, { classes: ['setosa', 'virginica'] }), 'E_ML_DATA_LABEL').message).toMatch(/iris\.csv:3: label column 'species' is not one of the 2 classes/);
    expectFlareCode(() => parse('a,species\n1,\n'), 'E_ML_DATA_LABEL');
    expectFlareCode(() => parse('a,y\n1,high\n', { label: 'y', task: 'regression' }), 'E_ML_DATA_LABEL');
    expectFlareCode(() => parse(IRIS, { ignore: ['species'] }), 'E_ML_DATA_LABEL');
  });

  it('refuses an empty file, a header without rows, a file without features (E_ML_DATA_SHAPE)', () => {
    expectFlareCode(() => parse(''), 'E_ML_DATA_SHAPE');
    expectFlareCode(() => parse('a,species\n\n'), 'E_ML_DATA_SHAPE');
    expectFlareCode(() => parse('species\nx\n'), 'E_ML_DATA_SHAPE');
  });
});

describe('loadCsv', () => {
  it('reads a file', async () => {
    await writeFile(join(dir, 'iris.csv'), IRIS);
    expect((await loadCsv(join(dir, 'iris.csv'), { label: 'species' })).n).toBe(4);
  });

  it('refuses a missing file and a folder, naming the source (E_ML_DATA_FILE)', async () => {
    const e = await expectFlareCodeAsync(() => loadCsv(join(dir, 'none.csv'), { label: 'y', name: "dataset 'iris'" }), 'E_ML_DATA_FILE');
    expect(e.message).toBe("dataset 'iris' cannot be read (no such file)");
    await expectFlareCodeAsync(() => loadCsv(dir, { label: 'y' }), 'E_ML_DATA_FILE');
  });

  it('refuses a file over its size limit before reading it (E_ML_DATA_TOO_LARGE)', async () => {
    await writeFile(join(dir, 'big.csv'), IRIS);
    const e = await expectFlareCodeAsync(() => loadCsv(join(dir, 'big.csv'), { label: 'species', maxBytes: 100 }), 'E_ML_DATA_TOO_LARGE');
    expect(e.message).toMatch(/more than its limit of 100/);
  });

  it('refuses a file that is not UTF-8 (E_ML_DATA_FORMAT)', async () => {
    await writeFile(join(dir, 'latin.csv'), Buffer.from([0x61, 0x2c, 0x79, 0x0a, 0xff, 0x2c, 0x31, 0x0a]));
    await expectFlareCodeAsync(() => loadCsv(join(dir, 'latin.csv'), { label: 'y' }), 'E_ML_DATA_FORMAT');
  });
});
