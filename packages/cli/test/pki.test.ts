import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
// FLARE's own sample project, copied into @flare/pki's fixtures (source named there).
const dummy = fileURLToPath(new URL('../../pki/test/fixtures/dummy_project.yml', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function flare(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, FLARE_CA_PASSPHRASE: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-cli-pki-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('flare provision / kit verify', () => {
  it("provisions FLARE's dummy project and says where the kits are; every kit verifies (exit 0)", async () => {
    const ws = join(dir, 'ws1');
    const r = await flare(['provision', '-p', dummy, '-w', ws]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`startup kits written to ${join(ws, 'example_project', 'prod_00')}`);
    expect(r.stdout).toContain('created a new root CA (ecdsa-p256)');
    expect(r.stderr).toContain('notice: the root key');
    for (const who of ['server1', 'site-1', 'admin@nvidia.com']) {
      const v = await flare(['kit', 'verify', join(ws, 'example_project', 'prod_00', who)]);
      expect(v.code).toBe(0);
      expect(v.stdout).toMatch(/^OK .*signed by the project root CA/);
    }
  });

  it('kit verify exits 1 naming a tampered file, with what to do', async () => {
    const ws = join(dir, 'ws2');
    expect((await flare(['provision', '-p', dummy, '-w', ws, '--key-type', 'rsa-2048'])).code).toBe(0);
    const kit = join(ws, 'example_project', 'prod_00', 'site-1');
    const cfg = join(kit, 'startup', 'fed_client.json');
    await writeFile(cfg, (await readFile(cfg, 'utf8')).replace('"mtls"', '"clear"'));
    const r = await flare(['kit', 'verify', kit]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_KIT_TAMPERED: startup\/fed_client\.json does not match its signature.* What to do: /);
  });

  it('kit verify accepts site overrides in local/ only with --local-overrides', async () => {
    const ws = join(dir, 'ws8');
    expect((await flare(['provision', '-p', dummy, '-w', ws])).code).toBe(0);
    const kit = join(ws, 'example_project', 'prod_00', 'site-2');
    await writeFile(join(kit, 'local', 'authorization.json'), '{"format_version": "1.0", "permissions": {}}');
    const strict = await flare(['kit', 'verify', kit]);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/^E_KIT_UNSIGNED: local\/authorization\.json/);
    const lenient = await flare(['kit', 'verify', kit, '--local-overrides']);
    expect(lenient.code).toBe(0);
    expect(lenient.stdout).toContain("kit of 'site-2' in project 'example_project'");
    expect(lenient.stdout).toContain('site override (unsigned, accepted): local/authorization.json');
  });

  it('exits 2 on usage errors', async () => {
    expect((await flare(['kit', 'verify'])).code).toBe(2);
    expect((await flare(['provision', '-w', dir])).code).toBe(2);
    expect((await flare(['provision', '-p', dummy, '-w', dir, '--key-type', 'dsa'])).code).toBe(2);
    expect((await flare(['cert', 'request', '--name', 'x', '--org', 'o', '--type', 'robot', '-o', dir])).code).toBe(2);
  });

  it('encrypts the root key with FLARE_CA_PASSPHRASE and refuses to reopen it without (exit 1, E_CA_PASSPHRASE)', async () => {
    const ws = join(dir, 'ws3');
    expect((await flare(['provision', '-p', dummy, '-w', ws], { FLARE_CA_PASSPHRASE: 's3cret' })).code).toBe(0);
    expect(await readFile(join(ws, 'example_project', 'state', 'rootCA.key'), 'utf8')).toContain('ENCRYPTED PRIVATE KEY');
    const r = await flare(['provision', '-p', dummy, '-w', ws]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_CA_PASSPHRASE: /);
    const again = await flare(['provision', '-p', dummy, '-w', ws], { FLARE_CA_PASSPHRASE: 's3cret' });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('reused the root CA');
    expect(again.stdout).toContain('prod_01');
  });

  it('--add adds participants; a lost state is exit 1 unless --new-root', async () => {
    const ws = join(dir, 'ws4');
    expect((await flare(['provision', '-p', dummy, '-w', ws])).code).toBe(0);
    const extra = join(dir, 'extra.yml');
    await writeFile(extra, 'participants:\n  - name: site-3\n    type: client\n    org: hospital_c\n');
    const added = await flare(['provision', '-p', dummy, '-w', ws, '--add', extra]);
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/client site-3: new certificate/);
    expect(added.stdout).toMatch(/client site-1: certificate reused/);
    await rm(join(ws, 'example_project', 'state'), { recursive: true });
    const lost = await flare(['provision', '-p', dummy, '-w', ws]);
    expect(lost.code).toBe(1);
    expect(lost.stderr).toMatch(/^E_CA_STATE_MISSING: /);
    expect((await flare(['provision', '-p', dummy, '-w', ws, '--new-root'])).code).toBe(0);
  });

  it('refuses an invalid project file with file, participant, field and line (exit 1)', async () => {
    const bad = join(dir, 'bad.yml');
    await writeFile(bad, 'api_version: 3\nname: p\nparticipants:\n  - name: server1\n    type: server\n    org: org-a\n');
    const r = await flare(['provision', '-p', bad, '-w', join(dir, 'ws5')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`E_PROJECT_INVALID: ${bad}:6: participant 'server1' (server), field 'org'`);
  });
});

describe('flare cert revoke | request | approve, flare package', () => {
  it('revokes a participant and writes the CRL (exit 0); an unknown name is exit 1', async () => {
    const ws = join(dir, 'ws6');
    expect((await flare(['provision', '-p', dummy, '-w', ws])).code).toBe(0);
    const r = await flare(['cert', 'revoke', 'site-2', '-w', ws, '--reason', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/revoked 1 certificate\(s\) of 'site-2'/);
    expect((await readFile(join(ws, 'example_project', 'state', 'crl.pem'), 'utf8'))).toContain('BEGIN X509 CRL');
    const unknown = await flare(['cert', 'revoke', 'nobody', '-w', ws]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^E_REVOKE_UNKNOWN: /);
  });

  it('request at the site, approve at the CA, package at the site: a signed kit (exit 0 each)', async () => {
    const ws = join(dir, 'ws7');
    expect((await flare(['provision', '-p', dummy, '-w', ws])).code).toBe(0);
    const site = join(dir, 'site-9');
    const req = await flare(['cert', 'request', '--name', 'site-9', '--org', 'hospital_i', '--type', 'client', '-o', site]);
    expect(req.code).toBe(0);
    expect((await stat(join(site, 'site-9.key'))).mode & 0o777).toBe(0o600);
    expect((await flare(['cert', 'request', '--name', 'site-9', '--org', 'hospital_i', '--type', 'client', '-o', site])).code).toBe(1);
    const approve = await flare(['cert', 'approve', join(site, 'site-9.csr'), '--ca', join(ws, 'example_project'), '-o', join(dir, 'approved')]);
    expect(approve.code).toBe(0);
    expect(approve.stdout).toContain("issued client certificate for 'site-9'");
    const kit = join(dir, 'kit-site-9');
    const pkg = await flare(['package', '--cert', join(dir, 'approved', 'site-9.crt'), '--key', join(site, 'site-9.key'), '--ca-cert', join(dir, 'approved', 'rootCA.pem'), '--server', 'server1:8002', '-o', kit]);
    expect(pkg.code).toBe(0);
    expect(pkg.stdout).toContain(`signed client kit for 'site-9' written to ${kit}`);
    const v = await flare(['kit', 'verify', kit, '--root-ca', join(ws, 'example_project', 'prod_00', 'server1', 'startup', 'rootCA.pem')]);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('signed by the participant');
  });
});
