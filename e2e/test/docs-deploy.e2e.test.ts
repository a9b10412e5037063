// docs/deploy.md, run as written on one machine: its project.yml and its ```sh blocks from "1. Provision" to
// "6. Verify the audit logs" are extracted from the doc itself, so the doc cannot drift from the CLI. The only
// substitutions are what one machine needs: the server is `localhost` on a free loopback port, the passphrase
// is set, and the sites' steps run for clinic-b too ("clinic-b does the same").
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FLARE_BIN, freePort, tempDir } from './support.js';

const DOC = resolve(import.meta.dirname, '../../docs/deploy.md');

/** The doc between two headings, its yaml project and its sh blocks in order. */
function walkthrough(doc: string): { yaml: string; blocks: string[] } {
  const start = doc.indexOf('## 1. Provision');
  const end = doc.indexOf('## Homomorphic encryption');
  if (start < 0 || end < start) throw new Error('docs/deploy.md: sections "1. Provision" .. "Homomorphic encryption" not found');
  const part = doc.slice(start, end);
  const yaml = /```yaml\n([\s\S]*?)```/.exec(part)?.[1];
  if (yaml === undefined) throw new Error('docs/deploy.md: no project.yml block');
  return { yaml, blocks: [...part.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!) };
}

const procs: ChildProcess[] = [];
afterAll(async () => {
  for (const p of procs.filter((c) => c.exitCode === null && c.signalCode === null)) {
    const exited = once(p, 'exit');
    p.kill('SIGKILL');
    await exited;
  }
});

describe('docs/deploy.md walkthrough', () => {
  it('provision, hand out kits, site policy, start server and sites, submit, wait, download, audit verify', { timeout: 1_500_000 }, async () => {
    const dir = await tempDir('flare-docs-deploy-');
    const port = await freePort();
    // `flare` on the PATH, as an installed CLI would be: the built one.
    const bin = join(dir, '.bin');
    await mkdir(bin);
    await writeFile(join(bin, 'flare'), `#!/bin/sh\nexec "${process.execPath}" "${FLARE_BIN}" "$@"\n`);
    await chmod(join(bin, 'flare'), 0o755);
    const env = { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` };
    const local = (text: string): string =>
      text.replaceAll('fl.example.org', 'localhost').replaceAll('[10.0.0.5]', '[127.0.0.1]').replaceAll('8002', String(port)).replaceAll('--host 0.0.0.0', '--host 127.0.0.1');

    const { yaml, blocks } = walkthrough(await readFile(DOC, 'utf8'));
    await writeFile(join(dir, 'project.yml'), local(yaml));

    /** Runs a shell snippet to completion; returns stdout (throws with the output on a non-zero exit). */
    const sh = async (script: string, timeoutMs = 600_000): Promise<string> => {
      const child = spawn('sh', ['-e', '-c', script], { cwd: dir, env: { ...env, FLARE_CA_PASSPHRASE: 'docs walkthrough' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const [code] = (await once(child, 'exit')) as [number | null];
      clearTimeout(timer);
      if (code !== 0) throw new Error(`docs/deploy.md command failed (exit ${code}):\n${script}\n--- stdout\n${out}\n--- stderr\n${err}`);
      return out;
    };
    /** Starts a long-running command in the background; resolves once `ready()` is true (bounded: 300 s). */
    const start = async (line: string, ready: (output: string) => Promise<boolean>): Promise<ChildProcess> => {
      const child = spawn('sh', ['-c', `exec ${line}`], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      procs.push(child);
      let seen = '';
      child.stdout.on('data', (d: Buffer) => (seen += d.toString()));
      child.stderr.on('data', (d: Buffer) => (seen += d.toString()));
      for (let i = 0; !(await ready(seen)); i += 1) {
        if (child.exitCode !== null || i >= 1500) throw new Error(`"${line}" not ready (exit ${child.exitCode}):\n${seen}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      return child;
    };
    const listening = (out: string): Promise<boolean> => Promise.resolve(/listening on port \d+/.test(out));
    // a site is up once its log (in its workspace, <kit>-workspace) says it registered with the server
    const registered = (site: string) => (): Promise<boolean> =>
      readFile(join(dir, `${site}-workspace`, 'client.log.jsonl'), 'utf8').then((t) => t.includes('registered'), () => false);
    const forClinicB = (block: string): string => block.replaceAll('clinic-a', 'clinic-b').replace('"site": 0', '"site": 1');
    const running: ChildProcess[] = [];
    let job = '';

    for (const raw of blocks) {
      const block = local(raw).replace(/^export FLARE_CA_PASSPHRASE=.*$/m, ': passphrase from the environment');
      const lines = block.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
      if (lines.some((l) => /^flare (server|client) /.test(l))) {
        for (const line of lines) {
          if (/^flare server /.test(line)) running.push(await start(line, listening));
          if (/^flare client /.test(line)) {
            running.push(await start(line, registered('clinic-a')));
            running.push(await start(forClinicB(line), registered('clinic-b')));
          }
        }
      } else if (lines.some((l) => / submit /.test(l))) {
        // An admin session: the job id that submit prints replaces JOB; wait for the job to end before download.
        for (const line of lines) {
          if (/ submit /.test(line)) {
            job = (await sh(line.replace(/\s+#.*$/, ''))).trim();
            expect(job).toMatch(/^[\w-]{8,}$/);
            continue;
          }
          if (/ download /.test(line)) {
            const statusLine = lines.find((l) => / status /.test(l))!.replaceAll('JOB', job);
            let status = '';
            for (let i = 0; i < 240 && !/FINISHED|FAILED|ABORTED/.test(status); i += 1) {
              status = String((JSON.parse(await sh(statusLine)) as { record: { status: string } }).record.status);
              if (!/FINISHED|FAILED|ABORTED/.test(status)) await new Promise((r) => setTimeout(r, 2000));
            }
            expect(status).toBe('FINISHED');
          }
          await sh(line.replaceAll('JOB', job));
        }
        const results = await sh('ls results');
        expect(results).toContain(`${job}.safetensors`);
      } else if (lines.some((l) => /^flare audit verify /.test(l))) {
        // Logs are sealed when their participant stops: stop the federation (SIGTERM), then verify.
        for (const p of running.splice(0).reverse()) {
          const exited = once(p, 'exit');
          p.kill('SIGTERM');
          await exited;
        }
        const out = await sh(block);
        expect(out.match(/^OK /gm)?.length).toBe(lines.length);
        await sh(forClinicB(lines.filter((l) => l.includes('clinic-a')).join('\n')));
      } else {
        await sh(block);
        if (block.includes('clinic-a')) await sh(forClinicB(block));
      }
    }
    expect(job).not.toBe('');
    expect(running).toEqual([]);
  });
});
