import { execFile, spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseProject, provision } from '@flare/pki';
import { beforeAll, describe, expect, it } from 'vitest';

const BIN = resolve(import.meta.dirname, '../dist/bin.js');
const flare = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 120_000 }, (error, stdout, stderr) => done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }));
  });

const PROJECT = `api_version: 3
name: cli-relay
participants:
  - name: localhost
    type: server
    org: nvidia
  - name: relay-1
    type: relay
    org: nvidia
    listening_host: localhost
  - name: site-1
    type: client
    org: nvidia
    parent: relay-1
`;

let kits: Map<string, string>;
beforeAll(async () => {
  const r = await provision(parseProject(PROJECT), { workspace: await mkdtemp(join(tmpdir(), 'flare-cli-relay-')) });
  kits = new Map(r.kits.map((k) => [k.name, k.dir]));
});

describe('flare relay', () => {
  it('is listed in help with its options', async () => {
    expect((await flare(['--help'])).stdout).toMatch(/^ {2}relay /m);
    const help = (await flare(['relay', '--help'])).stdout;
    for (const o of ['--kit <dir>', '--port <n>', '--upstream <host:port>', '--max-sites <n>', '--max-msgs-per-s <n>', '--max-mib-per-s <n>']) expect(help).toContain(o);
  });

  it('exits 2 on usage errors (no --port, a bad port or limit)', async () => {
    expect((await flare(['relay', '--kit', kits.get('relay-1')!])).code).toBe(2);
    expect((await flare(['relay', '--kit', kits.get('relay-1')!, '--port', '70000'])).code).toBe(2);
    expect((await flare(['relay', '--kit', kits.get('relay-1')!, '--port', '0', '--max-sites', '-1'])).code).toBe(2);
  });

  it('refuses a kit that is not a relay kit (exit 1, E_RUNTIME_KIT_TYPE)', async () => {
    const r = await flare(['relay', '--kit', kits.get('site-1')!, '--port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_RUNTIME_KIT_TYPE');
  });

  it('runs from its kit until SIGTERM, then exits 0', async () => {
    const child = spawn(process.execPath, [BIN, 'relay', '--kit', kits.get('relay-1')!, '--port', '0', '--workspace', await mkdtemp(join(tmpdir(), 'flare-cli-relay-ws-'))], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const port = await new Promise<number>((done, fail) => {
      const t = setTimeout(() => fail(new Error('no "listening" line within 60 s')), 60_000);
      child.once('exit', (code) => fail(new Error(`exited ${code}`)));
      createInterface({ input: child.stdout }).on('line', (l) => {
        const m = /flare relay listening on port (\d+)/.exec(l);
        if (m !== null) {
          clearTimeout(t);
          done(Number(m[1]));
        }
      });
    });
    expect(port).toBeGreaterThan(0);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
