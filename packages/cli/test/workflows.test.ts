// `flare poc --workflow` and `flare admin result`: the matrix table, and the tokens `flare admin submit` attaches.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectFlareCodeAsync } from '@flare/core/testing';
import type { CrossSiteMatrix } from '@flare/runtime';
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { collectTokenFile, readTokenFiles } from '../src/commands/tokens.js';
import { createProgram } from '../src/program.js';
import { POC_WORKFLOWS, renderCrossSiteMatrix } from '../src/poc/workflows.js';

const matrix: CrossSiteMatrix = {
  format: 'flare-ts/cross-site-eval/v1',
  rounds: 3,
  models: ['global', 'site-1'],
  sites: ['site-1', 'hospital-long-name'],
  results: {
    global: { 'site-1': { metrics: { accuracy: 0.91234, loss: 0.2, n: 10 } }, 'hospital-long-name': { metrics: { accuracy: 0.8 } } },
    'site-1': { 'site-1': { metrics: { accuracy: 0.5 } }, 'hospital-long-name': { error: { code: 'E_RUNTIME_TIMEOUT', message: 'no answer' } } },
  },
  refused_models: { 'hospital-long-name': { code: 'E_POLICY_LOCAL_MODEL', message: 'privacy scope "private" keeps it' } },
};

describe('the cross-site evaluation matrix as a table', () => {
  it('has a row per model and a column per site, each cell the accuracy or the code the site gave instead', () => {
    const lines = renderCrossSiteMatrix(matrix);
    expect(lines[0]).toBe("cross-site evaluation after 3 rounds: accuracy of each model (row) on each site's data (column)");
    expect(lines[1]).toBe('model   site-1  hospital-long-name');
    expect(lines[2]).toBe('global  0.9123              0.8000');
    expect(lines[3]).toBe('site-1  0.5000   E_RUNTIME_TIMEOUT');
    expect(lines[4]).toBe('local model of hospital-long-name not evaluated: E_POLICY_LOCAL_MODEL: privacy scope "private" keeps it');
  });

  it('shows the first metric by name when the sites report no accuracy', () => {
    const m = { ...matrix, models: ['global'], results: { global: { 'site-1': { metrics: { loss: 0.25, auc: 0.75 } }, 'hospital-long-name': { metrics: { loss: 0.5 } } } }, refused_models: {} };
    const lines = renderCrossSiteMatrix(m);
    expect(lines[0]).toContain(': auc of each model');
    expect(lines[2]).toBe('global  0.7500                   -');
  });
});

describe('flare poc --workflow and flare admin result', () => {
  it('poc offers the three workflows by their CLI names, each mapped to its meta.json name', () => {
    expect(POC_WORKFLOWS).toEqual({ 'scatter-gather': 'scatter_and_gather', 'cross-site-eval': 'cross_site_eval', cyclic: 'cyclic' });
    const poc = createProgram().commands.find((c) => c.name() === 'poc')!;
    const opt = poc.options.find((o) => o.long === '--workflow')!;
    expect(opt.argChoices).toEqual(Object.keys(POC_WORKFLOWS));
    expect(opt.defaultValue).toBe('scatter-gather');
  });

  it('admin has a result command (job, optional result name, -o FILE, --json) and submit takes --token-file', () => {
    const admin = createProgram().commands.find((c) => c.name() === 'admin')!;
    const result = admin.commands.find((c) => c.name() === 'result')!;
    expect(result.registeredArguments.map((a) => [a.name(), a.required])).toEqual([['job', true], ['name', false]]);
    expect(result.options.map((o) => o.long)).toEqual(['--output', '--json']);
    const submit = admin.commands.find((c) => c.name() === 'submit')!;
    expect(submit.options.map((o) => o.long)).toContain('--token-file');
  });
});

describe('the tokens flare admin submit attaches', () => {
  it('--token-file FILE is for every site, SITE=FILE for one; the file is trimmed; $FLARE_OIDC_TOKEN fills in for every site', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flare-tokens-'));
    await writeFile(join(dir, 'all.jwt'), 'aaa.bbb.ccc\n');
    await writeFile(join(dir, 'one.jwt'), '  ddd.eee.fff  ');
    const args = collectTokenFile(`site-2=${join(dir, 'one.jwt')}`, collectTokenFile(join(dir, 'all.jwt'), []));
    expect(args).toEqual([{ site: '*', file: join(dir, 'all.jwt') }, { site: 'site-2', file: join(dir, 'one.jwt') }]);
    expect(await readTokenFiles(args, 'from.the.env')).toEqual(new Map([['*', 'aaa.bbb.ccc'], ['site-2', 'ddd.eee.fff']]));
    // Without a file for every site, the environment's token is it.
    expect(await readTokenFiles(args.slice(1), 'from.the.env')).toEqual(new Map([['site-2', 'ddd.eee.fff'], ['*', 'from.the.env']]));
    expect(await readTokenFiles([], undefined)).toEqual(new Map());
  });

  it('refuses two tokens for the same site, and a token file that does not exist (E_FILE_READ naming it)', async () => {
    expect(() => collectTokenFile('site-1=b', collectTokenFile('site-1=a', []))).toThrow(InvalidArgumentError);
    expect(() => collectTokenFile('b', collectTokenFile('a', []))).toThrow(/two tokens for every site/);
    const err = await expectFlareCodeAsync(readTokenFiles([{ site: '*', file: '/nonexistent/admin.jwt' }], undefined), 'E_FILE_READ');
    expect(err.message).toContain('/nonexistent/admin.jwt');
  });
});
