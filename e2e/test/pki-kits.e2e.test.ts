// e2e: real `flare` processes provision, verify and revoke; a TLS server process and client processes started
// from the kits complete mTLS, while a kit of another project and a revoked kit are refused.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testProjectYaml } from '@flare/pki/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const e2eDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = resolve(e2eDir, '../packages/cli/dist/bin.js');

interface Done {
  code: number | null;
  stdout: string;
  stderr: string;
}

function node(args: readonly string[], env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, args, { cwd: e2eDir, env: { ...process.env, FLARE_CA_PASSPHRASE: '', ...env } });
}

function finish(child: ChildProcessWithoutNullStreams, ms = 60_000): Promise<Done> {
  return new Promise((res, rej) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill(), ms);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

const flare = (args: readonly string[]): Promise<Done> => finish(node([bin, ...args]));

/** Everything a long-running child printed so far (collected from its start, so no line is missed). */
const printed = new WeakMap<ChildProcessWithoutNullStreams, { text: string }>();
function track(child: ChildProcessWithoutNullStreams): ChildProcessWithoutNullStreams {
  const box = { text: '' };
  printed.set(child, box);
  child.stdout.on('data', (d: Buffer) => (box.text += d.toString()));
  return child;
}

/** Waits until the child has printed a line matching `re` (bounded), returning the match. */
function waitFor(child: ChildProcessWithoutNullStreams, re: RegExp, ms = 20_000): Promise<RegExpMatchArray> {
  const box = printed.get(child)!;
  return new Promise((res, rej) => {
    const check = (): void => {
      const m = box.text.match(re);
      if (m) {
        cleanup();
        res(m);
      }
    };
    const onClose = (): void => {
      cleanup();
      rej(new Error(`process ended before printing ${re}: ${box.text}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      rej(new Error(`no ${re} within ${ms} ms: ${box.text}`));
    }, ms);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout.off('data', check);
      child.off('close', onClose);
    };
    // Registered after track()'s listener, so `box.text` already holds the new chunk when check runs.
    child.stdout.on('data', check);
    child.on('close', onClose);
    check();
  });
}

// The server process: loads its kit (signatures, certificate, CRL), serves mTLS with the kit's root and CRL.
const SERVER = `
import { createServer } from 'node:tls';
import { loadKit } from '@flare/pki';
const kit = await loadKit(process.argv[1]);
const server = createServer({ key: kit.privateKeyPem, cert: kit.certPem, ca: kit.rootCaPem, crl: kit.crlPem, requestCert: true, rejectUnauthorized: true });
server.on('secureConnection', (s) => { console.log('PEER ' + s.getPeerCertificate().subject.CN); s.end('welcome'); });
server.on('tlsClientError', (e) => console.log('REFUSED ' + (e.code ?? e.message)));
server.listen(0, '127.0.0.1', () => console.log('LISTENING ' + server.address().port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;
// A client process: loads its kit and connects to the server named in it, on the given port.
const CLIENT = `
import { connect } from 'node:tls';
import { loadKit } from '@flare/pki';
const kit = await loadKit(process.argv[1]);
const s = connect({ host: '127.0.0.1', port: Number(process.argv[2]), servername: kit.server.name, key: kit.privateKeyPem, cert: kit.certPem, ca: kit.rootCaPem });
s.on('data', (d) => { console.log('GOT ' + d); s.end(); });
s.on('error', (e) => { console.log('ERROR ' + (e.code ?? e.message)); process.exitCode = 1; });
s.on('close', () => process.exit());
setTimeout(() => { console.log('TIMEOUT'); process.exit(3); }, 15000).unref();
`;

const project = (name: string): string =>
  testProjectYaml({ name, org: 'hospital_a', sites: ['site-1', ['site-2', 'hospital_b']], admins: [['lead@hospital-a.org', 'hospital_a', 'lead']] });

describe('pki e2e: kits from `flare provision` secure real processes', () => {
  let dir: string;
  let prod: string;
  let foreignProd: string;
  const children: ChildProcessWithoutNullStreams[] = [];
  const startServer = async (kit: string): Promise<{ child: ChildProcessWithoutNullStreams; port: number }> => {
    const child = track(node(['--input-type=module', '-e', SERVER, kit]));
    children.push(child);
    const m = await waitFor(child, /LISTENING (\d+)/);
    return { child, port: Number(m[1]) };
  };
  const runClient = (kit: string, port: number): Promise<Done> => finish(node(['--input-type=module', '-e', CLIENT, kit, String(port)]), 30_000);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flare-e2e-pki-'));
    await writeFile(join(dir, 'project.yml'), project('hospitals'));
    await writeFile(join(dir, 'other.yml'), project('elsewhere'));
    const r = await flare(['provision', '-p', join(dir, 'project.yml'), '-w', join(dir, 'ws')]);
    expect(r.code, r.stderr).toBe(0);
    prod = join(dir, 'ws', 'hospitals', 'prod_00');
    expect(r.stdout).toContain(`startup kits written to ${prod}`);
    expect((await flare(['provision', '-p', join(dir, 'other.yml'), '-w', join(dir, 'ws-other')])).code).toBe(0);
    foreignProd = join(dir, 'ws-other', 'elsewhere', 'prod_00');
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it('a client process and a server process from two kits complete mTLS; another project\'s kit is refused', async () => {
    const { child, port } = await startServer(join(prod, 'localhost'));
    const ok = await runClient(join(prod, 'site-1'), port);
    expect(ok.stdout).toContain('GOT welcome');
    await waitFor(child, /PEER site-1/);
    const stranger = await runClient(join(foreignProd, 'site-1'), port);
    expect(stranger.stdout).not.toContain('GOT welcome');
    await waitFor(child, /REFUSED/);
    child.kill('SIGTERM');
  });

  it('a tampered kit stops the process at start with the file named; flare kit verify exits 1', async () => {
    const kit = join(prod, 'site-2');
    const cfg = join(kit, 'startup', 'fed_client.json');
    const original = await readFile(cfg);
    await writeFile(cfg, original.toString().replace('localhost:8002', 'attacker.example.com:8002'));
    try {
      const verify = await flare(['kit', 'verify', kit]);
      expect(verify.code).toBe(1);
      expect(verify.stderr).toMatch(/^E_KIT_TAMPERED: startup\/fed_client\.json/);
      const started = await runClient(kit, 1);
      expect(started.code).not.toBe(0);
      expect(started.stderr).toContain('E_KIT_TAMPERED');
    } finally {
      await writeFile(cfg, original);
    }
    expect((await flare(['kit', 'verify', kit])).code).toBe(0);
  });

  it('after `flare cert revoke` and re-provisioning, the server (with the new kit\'s CRL) refuses the revoked kit', async () => {
    expect((await flare(['cert', 'revoke', 'site-2', '-w', join(dir, 'ws')])).code).toBe(0);
    // site-2 is still in project.yml: re-admitting it takes a decision, not a plain re-provision.
    const refused = await flare(['provision', '-p', join(dir, 'project.yml'), '-w', join(dir, 'ws')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^E_PROVISION_REVOKED: 'site-2' was revoked/);
    const again = await flare(['provision', '-p', join(dir, 'project.yml'), '-w', join(dir, 'ws'), '--reissue-revoked']);
    expect(again.code, again.stderr).toBe(0);
    const prod1 = join(dir, 'ws', 'hospitals', 'prod_01');
    const { child, port } = await startServer(join(prod1, 'localhost'));
    const revoked = await runClient(join(prod, 'site-2'), port);
    expect(revoked.stdout).not.toContain('GOT welcome');
    await waitFor(child, /REFUSED/);
    const fresh = await runClient(join(prod1, 'site-2'), port);
    expect(fresh.stdout).toContain('GOT welcome');
    const oldSite1 = await runClient(join(prod, 'site-1'), port);
    expect(oldSite1.stdout).toContain('GOT welcome');
    child.kill('SIGTERM');
  });

  it('an older crl.pem with its signature entry put into the newer server kit stops the server at start (E_KIT_MIXED)', async () => {
    // The attack of #14.10: the prod_00 CRL (site-2 not yet revoked) is root-signed, and so is its entry.
    const server = join(dir, 'rolled-back-server');
    await cp(join(dir, 'ws', 'hospitals', 'prod_01', 'localhost'), server, { recursive: true });
    await cp(join(prod, 'localhost', 'startup', 'crl.pem'), join(server, 'startup', 'crl.pem'));
    const oldSigs = JSON.parse(await readFile(join(prod, 'localhost', 'startup', 'signature.json'), 'utf8')) as Record<string, string>;
    const sigs = JSON.parse(await readFile(join(server, 'startup', 'signature.json'), 'utf8')) as Record<string, string>;
    await writeFile(join(server, 'startup', 'signature.json'), JSON.stringify({ ...sigs, 'crl.pem': oldSigs['crl.pem'] }));
    const verify = await flare(['kit', 'verify', server]);
    expect(verify.code).toBe(1);
    expect(verify.stderr).toMatch(/^E_KIT_MIXED: startup\/crl\.pem/);
    const started = await finish(node(['--input-type=module', '-e', SERVER, server]));
    expect(started.code).not.toBe(0);
    expect(started.stderr).toContain('E_KIT_MIXED');
    expect(started.stdout).not.toContain('LISTENING');
  });
});
