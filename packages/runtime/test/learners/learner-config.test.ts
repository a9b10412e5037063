import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { model, silentLogger, tensor, type Learner, type Logger } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExternalLearner, PYTHON_CLIENT_DIR, learnerFactories, parseLearnerDefinitions, type LearnerEnv } from '../../src/index.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const global = () => model({ w: tensor(Float32Array.of(1, 2), [2]) }, 'full');
const ctx = { site: 'site-1', job: 'job-1', round: 0 };

/** Waits (bounded) for `find` to return something: output lines arrive on their own pipe, after or before the result. */
async function eventually<T>(find: () => T | undefined, ms = 20_000): Promise<T | undefined> {
  const until = Date.now() + ms;
  let v = find();
  while (v === undefined && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    v = find();
  }
  return v;
}

let ws: string;
const learners: Learner[] = [];
beforeAll(async () => {
  ws = await mkdtemp(join(tmpdir(), 'flare-learner-config-'));
});
afterAll(async () => {
  for (const l of learners) await l.close?.();
  await rm(ws, { recursive: true, force: true });
});

function env(extra: Partial<LearnerEnv> = {}): LearnerEnv {
  return { site: 'site-1', workspace: ws, job: 'job-1', jobWorkspace: join(ws, 'jobs', 'job-1'), logger: silentLogger, ...extra };
}

async function build(section: unknown, name: string, args: unknown = {}, e: LearnerEnv = env(), environment: Record<string, string> = { PATH: process.env['PATH'] ?? '' }): Promise<Learner> {
  const f = learnerFactories(section, { localDir: FIXTURES, environment })!.get(name)!;
  const l = await f.create(f.args.parse(args), e);
  learners.push(l);
  return l;
}

describe('learner definitions in components.json', () => {
  it('parses external and module learners with their defaults', () => {
    const defs = parseLearnerDefinitions({
      pytorch: { type: 'external', command: ['python3', 'train.py'] },
      conv: { type: 'module', module: './plugin-learner.mjs', options: { data: '/data/x.csv' } },
    });
    expect(defs.get('pytorch')).toEqual({
      type: 'external',
      command: ['python3', 'train.py'],
      env: {},
      inherit_env: ['PATH'],
      cwd: '.',
      start_timeout_s: 120,
      train_timeout_s: 3600,
      validate_timeout_s: 600,
      stop_timeout_s: 10,
      max_restarts: 2,
      max_frame_mib: 4096,
    });
    expect(defs.get('conv')).toMatchObject({ type: 'module', options: { data: '/data/x.csv' } });
  });

  it.each([
    [{ x: { type: 'external', command: [] } }, 'learners.x.command'],
    [{ x: { type: 'external', command: ['a'], shell: true } }, 'learners.x'],
    [{ x: { type: 'external', command: ['a'], cwd: '../other-job' } }, 'learners.x.cwd'],
    [{ x: { type: 'external', command: ['a'], cwd: '/etc' } }, 'learners.x.cwd'],
    [{ x: { type: 'external', command: ['a'], env: { 'BAD-NAME': '1' } } }, 'learners.x.env'],
    [{ x: { type: 'external', command: ['a'], train_timeout_s: -1 } }, 'learners.x.train_timeout_s'],
    [{ x: { type: 'docker', image: 'x' } }, 'learners.x'],
    [{ x: { type: 'byoc', python: [] } }, 'learners.x.python'],
    [{ x: { type: 'byoc', command: ['sh'] } }, 'learners.x'],
    [[1, 2], 'learners'],
  ])('refuses an invalid definition with E_LEARNER_CONFIG naming the field (%#)', (section, field) => {
    expect(() => parseLearnerDefinitions(section)).toThrow(expect.objectContaining({ code: 'E_LEARNER_CONFIG', message: expect.stringContaining(field) }));
  });
});

describe('external learners from components.json', () => {
  it('runs the program in the job folder with only the environment the site names, plus the protocol variables', async () => {
    const lines: string[] = [];
    const logger: Logger = { ...silentLogger, info: (m) => void lines.push(m) };
    const section = {
      fx: {
        type: 'external',
        command: [process.execPath, '{local_dir}/node-learner.mjs'],
        env: { LEARNER_MODE: 'print-args', DATA: '{job_dir}/data' },
        inherit_env: ['PATH', 'NOT_SET_ANYWHERE'],
      },
    };
    const l = await build(section, 'fx', { lr: 2 }, env({ logger }), { PATH: process.env['PATH'] ?? '', HOME: '/root', SECRET_TOKEN: 'x' });
    await l.train(global(), ctx);
    const line = await eventually(() => lines.find((x) => x.includes('args ')));
    expect(line).toContain('args {"lr":2}');
    expect(line).toContain('home -');
    expect(line).toContain(`cwd ${join(ws, 'jobs', 'job-1')}`);
  });

  it('puts the Python client on PYTHONPATH after the site\'s own entries', async () => {
    const script = join(ws, 'print-env.mjs');
    await writeFile(
      script,
      `import { createWriteStream } from 'node:fs';
       console.log('ENV ' + JSON.stringify(process.env));
       process.exit(0);`,
    );
    const lines: string[] = [];
    const logger: Logger = { ...silentLogger, info: (m) => void lines.push(m) };
    const section = { p: { type: 'external', command: [process.execPath, script], env: { PYTHONPATH: '/site/lib' } } };
    const f = learnerFactories(section, { localDir: FIXTURES, environment: { PATH: '/usr/bin:/bin', SECRET_TOKEN: 'x' } }).get('p')!;
    await expect(f.create({}, env({ logger }))).rejects.toMatchObject({ code: 'E_LEARNER_START' });
    const seen = JSON.parse((await eventually(() => lines.find((x) => x.includes('ENV '))))!.replace(/^.*?ENV /, '')) as Record<string, string>;
    expect(seen).toMatchObject({ PYTHONPATH: `/site/lib:${PYTHON_CLIENT_DIR}`, FLARE_LEARNER_PROTOCOL: '1', FLARE_SITE: 'site-1', FLARE_JOB: 'job-1', PATH: '/usr/bin:/bin' });
    expect(seen['SECRET_TOKEN']).toBeUndefined();
  });

  it('{custom_dir} without verified BYOC files: E_LEARNER_BYOC', async () => {
    const f = learnerFactories({ byoc: { type: 'external', command: ['python3', '{custom_dir}/train.py'] } }, { localDir: FIXTURES }).get('byoc')!;
    await expect(f.create({}, env())).rejects.toMatchObject({ code: 'E_LEARNER_BYOC' });
  });

  it('{custom_dir} with the verified folder runs the job\'s own program', async () => {
    const custom = join(ws, 'custom-1');
    await mkdir(custom, { recursive: true });
    await writeFile(join(custom, 'learner.mjs'), `import '${join(FIXTURES, 'node-learner.mjs')}';`);
    const l = await build({ byoc: { type: 'external', command: [process.execPath, '{custom_dir}/learner.mjs'] } }, 'byoc', {}, env({ customDir: custom, jobWorkspace: join(ws, 'job-byoc') }));
    expect((await l.train(global(), ctx)).params.get('w')!.data).toEqual(Float32Array.of(2, 3));
  });
});

describe("BYOC learners (type 'byoc'): the job's own signed code as an external program", () => {
  const section = { custom: { type: 'byoc' } };
  async function customFolder(name: string): Promise<string> {
    const custom = join(ws, name);
    await mkdir(join(custom, 'src'), { recursive: true });
    await writeFile(join(custom, 'src', 'learner.mjs'), `import '${join(FIXTURES, 'node-learner.mjs')}';`);
    return custom;
  }

  it('parses with its defaults: python3 for .py, the site\'s Node for .mjs / .js', () => {
    expect(parseLearnerDefinitions(section).get('custom')).toMatchObject({ type: 'byoc', python: ['python3'], inherit_env: ['PATH'], max_restarts: 2 });
  });

  it('runs the entry the job names from its verified custom/ folder, in a subprocess', async () => {
    const custom = await customFolder('custom-entry');
    const l = await build(section, 'custom', { entry: 'src/learner.mjs', lr: 1 }, env({ customDir: custom, jobWorkspace: join(ws, 'job-entry') }));
    expect((await l.train(global(), ctx)).params.get('w')!.data).toEqual(Float32Array.of(2, 3));
    expect(l).toBeInstanceOf(ExternalLearner);
    const pid = (l as ExternalLearner).pid;
    expect(pid).toBeGreaterThan(0);
    expect(pid).not.toBe(process.pid);
  });

  it('without a verified custom/ folder (no code, or no consent): E_LEARNER_BYOC', async () => {
    const f = learnerFactories(section, { localDir: FIXTURES }).get('custom')!;
    await expect(f.create({ entry: 'src/learner.mjs' }, env())).rejects.toMatchObject({ code: 'E_LEARNER_BYOC', message: expect.stringContaining("learner 'custom' at site-1") });
  });

  it('an entry that is not a file of the folder: E_LEARNER_BYOC naming it', async () => {
    const custom = await customFolder('custom-missing');
    const f = learnerFactories(section, { localDir: FIXTURES }).get('custom')!;
    await expect(f.create({ entry: 'src/other.py' }, env({ customDir: custom }))).rejects.toMatchObject({ code: 'E_LEARNER_BYOC', message: expect.stringContaining('src/other.py') });
  });

  it.each([[{}], [{ entry: '../../etc/passwd.py' }], [{ entry: '/abs/learner.py' }], [{ entry: 'learner.sh' }], [{ entry: 7 }]])('refuses job args without a safe entry (%j)', (args) => {
    const f = learnerFactories(section, { localDir: FIXTURES }).get('custom')!;
    expect(f.args.safeParse(args).success).toBe(false);
  });
});

describe('in-process plugin learners', () => {
  it('loads a module by path; its default export gets the job args and the site options', async () => {
    const l = await build({ conv: { type: 'module', module: './plugin-learner.mjs' } }, 'conv', { delta: 0.5 });
    const u = await l.train(global(), ctx);
    expect(Array.from(u.params.get('w')!.data as Float32Array)).toEqual([1.5, 2.5]);
    expect(u.meta).toMatchObject({ site: 'site-1', job_dir: join(ws, 'jobs', 'job-1') });
    expect(await l.validate(global(), ctx)).toEqual({ accuracy: 0.9 });
    expect(typeof l.close).toBe('function');
  });

  it('gets the same refusals as an external learner: NaN, wrong names, infinite metrics, a hang', async () => {
    const mk = (poison: string, extra = {}) => build({ p: { type: 'module', module: './plugin-learner.mjs', options: { poison }, ...extra } }, 'p');
    await expect((await mk('nan')).train(global(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_NOT_FINITE' });
    await expect((await mk('rename')).train(global(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_RESULT_NAMES' });
    await expect((await mk('inf')).validate(global(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_NOT_FINITE' });
    await expect((await mk('hang', { validate_timeout_s: 0.5 })).validate(global(), ctx)).rejects.toMatchObject({ code: 'E_LEARNER_TIMEOUT' });
  });

  it('refuses a module that does not load or does not make a learner (E_LEARNER_PLUGIN)', async () => {
    const f = (m: string) => learnerFactories({ p: { type: 'module', module: m } }, { localDir: FIXTURES }).get('p')!;
    await expect(f('./missing.mjs').create({}, env())).rejects.toMatchObject({ code: 'E_LEARNER_PLUGIN' });
    await expect(f('./not-a-plugin.mjs').create({}, env())).rejects.toMatchObject({ code: 'E_LEARNER_PLUGIN', message: expect.stringContaining('default export') });
    await expect(f('no-such-package-flare-test').create({}, env())).rejects.toMatchObject({ code: 'E_LEARNER_PLUGIN' });
  });
});
