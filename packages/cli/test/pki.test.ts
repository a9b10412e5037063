import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAttestationPolicy } from '@flare/cc-attest';
import { dpFilterFactories } from '@flare/filters-dp';
import { loadHeContextFromKit } from '@flare/filters-he';
import { parsePrivacyPolicy } from '@flare/policy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
// FLARE's own sample project, copied into @flare/pki's fixtures (source named there).
const dummy = fileURLToPath(new URL('../../pki/test/fixtures/dummy_project.yml', import.meta.url));

/** Each test runs several CLI processes; generous bounds so that a busy machine cannot fail them. */
const CHILD_LIMIT_MS = 300_000;
const SLOW = { timeout: 900_000 };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
/** Runs a process to its end (bounded), collecting its output. */
function runProcess(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // A bound, not a speed test: on a loaded 2-core machine one CLI start alone can take tens of seconds.
    const timer = setTimeout(() => child.kill(), CHILD_LIMIT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
const flare = (args: readonly string[], env: Record<string, string> = {}): Promise<Run> => runProcess(process.execPath, [bin, ...args], { ...process.env, FLARE_CA_PASSPHRASE: '', ...env });

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-cli-pki-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('flare provision / kit verify', SLOW, () => {
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
    expect(lenient.stdout).toContain("kit of client 'site-2' in project 'example_project'");
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

  it("refuses a typo'd participant key with its line and a did-you-mean (exit 1, E_PROJECT_INVALID)", async () => {
    const typo = join(dir, 'typo.yml');
    await writeFile(typo, (await readFile(dummy, 'utf8')).replace('fed_learn_port: 8002', 'fed_learn_prot: 8002'));
    const r = await flare(['provision', '-p', typo, '-w', join(dir, 'ws-typo')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^E_PROJECT_INVALID: ${typo.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: participant 'server1' \\(server\\), field 'fed_learn_prot': unknown key \\(did you mean 'fed_learn_port'\\?\\)`));
  });

  it("the kit's privacy.json.sample names this project's filters and loads as is when copied", async () => {
    const ws = join(dir, 'ws-privacy');
    expect((await flare(['provision', '-p', dummy, '-w', ws])).code).toBe(0);
    const sample = await readFile(join(ws, 'example_project', 'prod_00', 'site-1', 'local', 'privacy.json.sample'), 'utf8');
    const registry = new Map(dpFilterFactories.map((f) => [f.name, f]));
    const policy = parsePrivacyPolicy(sample, { registry });
    expect([...policy.scopes.keys()]).toEqual(['public', 'private']);
    expect(policy.defaultScope).toBe('public');
    expect(sample).not.toContain('BadModelDetector');
  });

  it("the kit's start.sh finds the flare command (FLARE_CLI, PATH, the provisioning CLI), else exits 127 with E_CLI_NOT_FOUND", async () => {
    const ws = join(dir, 'ws-start');
    expect((await flare(['provision', '-p', dummy, '-w', ws])).code).toBe(0);
    const kit = join(ws, 'example_project', 'prod_00', 'site-1');
    const sh = (env: Record<string, string>): Promise<Run> => runProcess('/bin/sh', [join(kit, 'startup', 'start.sh'), '--help'], env);
    // Without flare on PATH, the CLI that provisioned the kit runs it (node from PATH).
    const viaPath = await sh({ PATH: `${dirname(process.execPath)}:/usr/bin:/bin` });
    expect(viaPath.code, viaPath.stderr).toBe(0);
    expect(viaPath.stdout).toContain('--kit');
    // FLARE_CLI names the command explicitly.
    const viaEnv = await sh({ PATH: '/nonexistent', FLARE_CLI: `${process.execPath} ${bin}` });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    // Nothing found: a coded message saying what to install, and 127 as a shell would.
    const none = await sh({ PATH: '/nonexistent' });
    expect(none.code).toBe(127);
    expect(none.stderr).toMatch(/^E_CLI_NOT_FOUND: /);
    expect(none.stderr).toContain('npm install -g @flare/cli');
  });

  it('refuses an invalid project file with file, participant, field and line (exit 1)', async () => {
    const bad = join(dir, 'bad.yml');
    await writeFile(bad, 'api_version: 3\nname: p\nparticipants:\n  - name: server1\n    type: server\n    org: org-a\n');
    const r = await flare(['provision', '-p', bad, '-w', join(dir, 'ws5')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`E_PROJECT_INVALID: ${bad}:6: participant 'server1' (server), field 'org'`);
  });
});

describe('flare cert revoke | request | approve, flare package', SLOW, () => {
  it('revokes a participant and writes the CRL (exit 0); an unknown name is exit 1', async () => {
    const ws = join(dir, 'ws6');
    expect((await flare(['provision', '-p', dummy, '-w', ws])).code).toBe(0);
    const r = await flare(['cert', 'revoke', 'site-2', '-w', ws, '--reason', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/revoked 1 certificate\(s\) of 'site-2'/);
    expect((await readFile(join(ws, 'example_project', 'state', 'crl.pem'), 'utf8'))).toContain('BEGIN X509 CRL');
    // site-2 is still in project.yml: provisioning again refuses to re-admit it silently.
    const again = await flare(['provision', '-p', dummy, '-w', ws]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^E_PROVISION_REVOKED: 'site-2' was revoked/);
    const readmit = await flare(['provision', '-p', dummy, '-w', ws, '--reissue-revoked']);
    expect(readmit.code, readmit.stderr).toBe(0);
    expect(readmit.stderr).toContain("notice: 'site-2' was revoked and got a new certificate");
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

// The kit builders `flare provision` registers for other packages: filters-he's HE key step (FLARE's HEBuilder)
// and cc-attest's attestation-policy builder (FLARE's CCBuilder).
const ccProject = (builders: string, sitePolicy = ''): string => `api_version: 3
name: cc_he
description: HE and attestation provisioning
participants:
  - name: server1
    type: server
    org: nvidia
    fed_learn_port: 8002
  - name: site-1
    type: client
    org: hospital_a
${sitePolicy}  - name: site-2
    type: client
    org: hospital_b
  - name: admin@nvidia.com
    type: admin
    org: nvidia
    role: project_admin
builders:
${builders}`;

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

describe('flare provision with the HE and attestation kit builders', SLOW, () => {
  it("project.yml's HEBuilder and CCBuilder: client kits get the HE secret key (0600), the server kit only the server context, server and sites the attestation policy; every kit verifies", async () => {
    const ws = join(dir, 'ws-cc-he');
    const yml = join(dir, 'cc-he.yml');
    await writeFile(
      yml,
      ccProject(
        `  - path: nvflare.lighter.impl.he.HEBuilder
    args: { poly_modulus_degree: 8192, coeff_mod_bit_sizes: [60, 40, 40, 60], scale_bits: 40 }
  - path: nvflare.lighter.cc_provision.impl.cc.CCBuilder
    args:
      policy: { version: 1, require: [snp], snp: { vmpls: [0] } }
`,
        '    attestation_policy: { version: 1, require: [snp, gpu] }\n',
      ),
    );
    const r = await flare(['provision', '-p', yml, '-w', ws]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('HE keys: client kits hold startup/client_context.seal');
    expect(r.stderr).not.toContain('HEBuilder');
    expect(r.stderr).not.toContain('CCBuilder');
    const prod = join(ws, 'cc_he', 'prod_00');
    for (const s of ['site-1', 'site-2']) expect((await stat(join(prod, s, 'startup', 'client_context.seal'))).mode & 0o777).toBe(0o600);
    expect(await exists(join(prod, 'server1', 'startup', 'server_context.seal'))).toBe(true);
    expect(await exists(join(prod, 'server1', 'startup', 'client_context.seal'))).toBe(false);
    expect(await exists(join(prod, 'admin@nvidia.com', 'startup', 'client_context.seal'))).toBe(false);
    // The server's context really holds no secret key; a client's does.
    const server = await loadHeContextFromKit(join(prod, 'server1'), 'server');
    expect(server.hasSecretKey).toBe(false);
    server.dispose();
    await expect(loadHeContextFromKit(join(prod, 'server1'), 'client')).rejects.toMatchObject({ code: 'E_HE_KIT_MISSING' });
    const client = await loadHeContextFromKit(join(prod, 'site-1'), 'client');
    expect(client.hasSecretKey).toBe(true);
    client.dispose();
    // Attestation policies: the project default, and site-1's own.
    expect((await loadAttestationPolicy(join(prod, 'server1')))?.require).toEqual(['snp']);
    expect((await loadAttestationPolicy(join(prod, 'site-2')))?.require).toEqual(['snp']);
    expect((await loadAttestationPolicy(join(prod, 'site-1')))?.require).toEqual(['snp', 'gpu']);
    expect(await exists(join(prod, 'admin@nvidia.com', 'local', 'attestation_policy.json.default'))).toBe(false);
    for (const who of ['server1', 'site-1', 'admin@nvidia.com']) expect((await flare(['kit', 'verify', join(prod, who)])).code).toBe(0);
    // A site may add its own policy when it is at least as strict as the signed one (cc-attest decides) ...
    await writeFile(join(prod, 'site-2', 'local', 'attestation_policy.json'), '{"version":1,"require":["snp","gpu"],"snp":{"vmpls":[0]}}\n');
    const stricter = await flare(['kit', 'verify', join(prod, 'site-2')]);
    expect(stricter.code, stricter.stderr).toBe(0);
    expect(stricter.stdout).toContain('site override (unsigned, accepted): local/attestation_policy.json');
    // ... and not a weaker one.
    await writeFile(join(prod, 'site-2', 'local', 'attestation_policy.json'), '{"version":1}\n');
    const weaker = await flare(['kit', 'verify', join(prod, 'site-2')]);
    expect(weaker.code).toBe(1);
    expect(weaker.stderr).toMatch(/^E_ATTEST_POLICY_WEAKER: local\/attestation_policy\.json is refused: .*"require" lacks snp/);
    await rm(join(prod, 'site-2', 'local', 'attestation_policy.json'));
    // A site that edits its signed default policy is caught like any other tampered kit file.
    await writeFile(join(prod, 'site-2', 'local', 'attestation_policy.json.default'), '{"version":1}\n');
    const v = await flare(['kit', 'verify', join(prod, 'site-2')]);
    expect(v.code).toBe(1);
    expect(v.stderr).toContain('attestation_policy.json.default');
  });

  it('--he adds the HE key step to a project.yml without HEBuilder; without it no HE keys are made', async () => {
    const yml = join(dir, 'plain.yml');
    await writeFile(yml, ccProject('  - path: nvflare.lighter.impl.static_file.StaticFileBuilder\n    args: { scheme: grpc }\n'));
    const plain = join(dir, 'ws-plain');
    expect((await flare(['provision', '-p', yml, '-w', plain])).code).toBe(0);
    expect(await exists(join(plain, 'cc_he', 'prod_00', 'site-1', 'startup', 'client_context.seal'))).toBe(false);
    const he = join(dir, 'ws-he-flag');
    const r = await flare(['provision', '-p', yml, '-w', he, '--he']);
    expect(r.code, r.stderr).toBe(0);
    expect(await exists(join(he, 'cc_he', 'prod_00', 'site-1', 'startup', 'client_context.seal'))).toBe(true);
    expect(await exists(join(he, 'cc_he', 'prod_00', 'server1', 'startup', 'server_context.seal'))).toBe(true);
  });

  it('refuses an invalid attestation policy at provisioning, naming the participant (exit 1)', async () => {
    const yml = join(dir, 'bad-cc.yml');
    await writeFile(yml, ccProject('  - path: nvflare.lighter.cc_provision.impl.cc.CCBuilder\n    args: { policy: { version: 1, require: [sgx] } }\n'));
    const r = await flare(['provision', '-p', yml, '-w', join(dir, 'ws-bad-cc')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_PROVISION_BUILDER: .*server1.*require/);
  });

  it('refuses HE parameters below 128-bit security at provisioning (exit 1)', async () => {
    const yml = join(dir, 'bad-he.yml');
    await writeFile(yml, ccProject('  - path: nvflare.lighter.impl.he.HEBuilder\n    args: { poly_modulus_degree: 4096, coeff_mod_bit_sizes: [60, 40, 40, 60] }\n'));
    const r = await flare(['provision', '-p', yml, '-w', join(dir, 'ws-bad-he')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_PROVISION_BUILDER: .*(128|secur)/);
  });
});
