// The secure-echo example as a user runs it: real processes, real sockets, mutual TLS, kits from
// @flare/pki's provision(); plus interop with the openssl command line at the TLS layer.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseProject, provision } from '@flare/pki';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loopbackProject, requireTool } from './support.js';

const EXAMPLE = resolve(import.meta.dirname, '../../docs/examples/secure-echo');
const project = (name: string): string => loopbackProject(name, { admin: true, fields: { description: 'secure-echo e2e', connection_security: 'mtls' } });

let workspace: string;
let kits: Map<string, string>;
let strangerKit: string;
let server: ChildProcess;
let port: number;

function run(cmd: string, args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = execFile(cmd, args, { timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolvePromise({ code, stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

beforeAll(async () => {
  workspace = await mkdtemp(join(tmpdir(), 'flare-e2e-echo-'));
  const mine = await provision(parseProject(project('echo')), { workspace });
  kits = new Map(mine.kits.map((k) => [k.name, k.dir]));
  const other = await provision(parseProject(project('stranger')), { workspace });
  strangerKit = other.kits.find((k) => k.name === 'site-1')!.dir;
  server = spawn(process.execPath, [join(EXAMPLE, 'server.mjs'), '--kit', kits.get('server1')!, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = createInterface({ input: server.stdout! });
  port = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not print "listening <port>" within 15 s')), 15_000);
    lines.on('line', (line) => {
      const m = /^listening (\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    });
    server.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
});

afterAll(async () => {
  if (server?.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  await rm(workspace, { recursive: true, force: true });
});

const client = (kit: string, message: string, host = '127.0.0.1') =>
  run(process.execPath, [join(EXAMPLE, 'client.mjs'), '--kit', kit, '--host', host, '--port', String(port), '--message', message]);

describe('docs/examples/secure-echo', () => {
  it('a client kit logs in over mtls and gets its echo from the authenticated server', async () => {
    const r = await client(kits.get('site-1')!, 'hello federation');
    expect(r.stdout.trim().split('\n')).toEqual(['peer server1', 'echo hello federation']);
    expect(r.code).toBe(0);
  });

  it('an admin kit logs in with the same handshake (by DNS name)', async () => {
    const r = await client(kits.get('admin@nvidia.com')!, 'status', 'localhost');
    expect(r.stdout.trim().split('\n')).toEqual(['peer server1', 'echo status']);
    expect(r.code).toBe(0);
  });

  it('a kit of another project (wrong CA) is refused at the TLS handshake: prints E_TRANSPORT_TLS and exits 1', async () => {
    const r = await client(strangerKit, 'let me in');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^E_TRANSPORT_TLS: /);
  });

  it('openssl s_client without a client certificate is refused (TLS alert 116, certificate required)', async (ctx) => {
    requireTool(ctx, 'openssl');
    const startup = join(kits.get('site-1')!, 'startup');
    // TLS 1.3 sends the server's certificate-required alert after the client's Finished: -ign_eof keeps
    // s_client reading until the server closes, so the alert is always seen (without it, a fast stdin EOF
    // could end s_client before the alert arrives).
    const r = await run('openssl', ['s_client', '-ign_eof', '-connect', `127.0.0.1:${port}`, '-CAfile', join(startup, 'rootCA.pem')], 'GET / HTTP/1.1\r\n\r\n');
    expect(r.stdout + r.stderr).toMatch(/alert certificate required|alert handshake failure/);
  });

  it('openssl s_client with the kit certificate completes the TLS handshake (verify ok, TLSv1.3, no alert)', async (ctx) => {
    requireTool(ctx, 'openssl');
    const startup = join(kits.get('site-1')!, 'startup');
    const r = await run(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', join(startup, 'rootCA.pem'), '-cert', join(startup, 'client.crt'), '-key', join(startup, 'client.key')],
      'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    expect(r.stdout).toContain('Verify return code: 0 (ok)');
    expect(r.stdout).toMatch(/TLSv1\.3/);
    expect(r.stdout + r.stderr).not.toMatch(/alert/);
  });
});
