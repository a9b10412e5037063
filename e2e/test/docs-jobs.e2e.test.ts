// docs/jobs.md's worked PyTorch example, run as written: the first ```sh block of "### Worked example: PyTorch"
// is extracted from the doc itself (so the doc cannot drift from the CLI) and run in a fresh folder with the built
// `flare` on the PATH. It needs a python3 that imports torch (Debian's python3-torch); elsewhere it is skipped
// with how to install it.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FLARE_BIN, tempDir } from './support.js';

const DOC = resolve(import.meta.dirname, '../../docs/jobs.md');

/** The ```sh blocks of the section that starts at `heading`, in order. */
function shBlocks(doc: string, heading: string): string[] {
  const start = doc.indexOf(heading);
  if (start < 0) throw new Error(`docs/jobs.md: no section ${heading}`);
  const next = doc.slice(start + heading.length).search(/\n#{2,3} /);
  const part = doc.slice(start, next < 0 ? undefined : start + heading.length + next);
  return [...part.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

describe('docs/jobs.md worked example', () => {
  it('create -> check -> simulate, as written (PyTorch)', { timeout: 1_500_000 }, async (ctx) => {
    const torch = ['python3', '/usr/bin/python3'].some((py) => spawnSync(py, ['-c', 'import numpy, torch'], { stdio: 'ignore', timeout: 300_000 }).status === 0);
    if (!torch) ctx.skip('python3 cannot import torch: apt-get install -y python3-torch python3-numpy');
    const [first] = shBlocks(await readFile(DOC, 'utf8'), '### Worked example: PyTorch');
    expect(first).toMatch(/^flare job create digits --learner pytorch/m);
    const dir = await tempDir('flare-docs-jobs-');
    const bin = join(dir, '.bin');
    await mkdir(bin);
    await writeFile(join(bin, 'flare'), `#!/bin/sh\nexec "${process.execPath}" "${FLARE_BIN}" "$@"\n`);
    await chmod(join(bin, 'flare'), 0o755);
    const child = spawn('sh', ['-e', '-c', first!], { cwd: dir, env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 1_200_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    expect(code, out).toBe(0);
    // What the doc says you will see: a line per round, the three tables, the files.
    expect(out).toMatch(/^round 3\/3: 3 sites/m);
    expect(out).toMatch(/global model, validated across sites/);
    expect(out).toMatch(/job digits: FINISHED after 3 rounds with 3 simulated sites/);
    expect(await readFile(join(dir, 'digits-sim.csv'), 'utf8')).toMatch(/^round,source,kind,metric,value\r\n/);
    expect(await readFile(join(dir, 'digits-sim.svg'), 'utf8')).toMatch(/<path /);
    for (const f of ['meta.json', 'model.safetensors', 'README.md', 'site/train.py', 'site/data.py', 'site/components.json']) await readFile(join(dir, 'digits', f));
  });
});
