import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KitBuilder } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { loadCrl, loadKit, loadParticipants, loadProject, parseProject, provision, revoke, verifyCertificate, verifyKit } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { FIXTURE, projectYaml, run, tempDir } from './helpers.js';

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;
const json = async (p: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(p, 'utf8')) as Record<string, unknown>;

describe("provision: FLARE's dummy project (test/fixtures/dummy_project.yml)", () => {
  it("writes FLARE's layout, file names and config keys; keys are 0600; every kit verifies", async () => {
    const ws = await tempDir();
    const r = await provision(await loadProject(FIXTURE), { workspace: ws });
    expect(r.prodDir).toBe(join(ws, 'example_project', 'prod_00'));
    expect(r.rootCreated).toBe(true);
    expect(r.keyType).toBe('ecdsa-p256');
    expect((await readdir(r.prodDir)).sort()).toEqual(['admin@nvidia.com', 'lead@nvidia.com', 'org-admin@nvidia.com', 'server1', 'site-1', 'site-2']);
    const server = join(r.prodDir, 'server1');
    expect((await readdir(join(server, 'startup'))).sort()).toEqual(['crl.pem', 'fed_server.json', 'rootCA.pem', 'server.crt', 'server.key', 'signature.json', 'start.sh']);
    expect((await readdir(join(server, 'local'))).sort()).toEqual(['authorization.json.default', 'components.json.default', 'privacy.json.sample', 'resources.json.default', 'signature.json']);
    expect((await readdir(server)).sort()).toEqual(['local', 'manifest.json', 'readme.txt', 'signature.json', 'startup', 'transfer']);
    expect((await readdir(join(r.prodDir, 'site-1', 'startup'))).sort()).toEqual(['client.crt', 'client.key', 'crl.pem', 'fed_client.json', 'rootCA.pem', 'signature.json', 'start.sh']);
    expect((await readdir(join(r.prodDir, 'lead@nvidia.com', 'startup'))).sort()).toEqual(['client.crt', 'client.key', 'crl.pem', 'fed_admin.json', 'fl_admin.sh', 'rootCA.pem', 'signature.json']);
    expect(await mode(join(server, 'startup', 'server.key'))).toBe(0o600);
    expect(await mode(join(r.prodDir, 'site-1', 'startup', 'client.key'))).toBe(0o600);
    expect(await mode(join(server, 'startup', 'start.sh'))).toBe(0o755);

    const fs = (await json(join(server, 'startup', 'fed_server.json'))) as { servers: Record<string, unknown>[] };
    expect(fs.servers[0]).toMatchObject({ name: 'example_project', service: { target: 'server1:8002', scheme: 'grpc' }, admin_port: 8002, ssl_private_key: 'server.key', ssl_cert: 'server.crt', ssl_root_cert: 'rootCA.pem', connection_security: 'mtls' });
    const fc = (await json(join(r.prodDir, 'site-1', 'startup', 'fed_client.json'))) as { servers: Record<string, unknown>[]; client: Record<string, unknown> };
    expect(fc.servers[0]).toMatchObject({ service: { target: 'server1:8002' }, identity: 'server1' });
    expect(fc.client).toMatchObject({ ssl_private_key: 'client.key', ssl_cert: 'client.crt', ssl_root_cert: 'rootCA.pem', connection_security: 'mtls', fqsn: 'site-1' });
    const fa = (await json(join(r.prodDir, 'lead@nvidia.com', 'startup', 'fed_admin.json'))) as { admin: Record<string, unknown> };
    expect(fa.admin).toMatchObject({ project_name: 'example_project', username: 'lead@nvidia.com', server_identity: 'server1', host: 'server1', port: 8002, connection_security: 'mtls', client_key: 'client.key', client_cert: 'client.crt', ca_cert: 'rootCA.pem' });
    // FLARE's default policy (nvflare/lighter/templates/default_authz.j2), verbatim.
    const authz = (await json(join(server, 'local', 'authorization.json.default'))) as { permissions: Record<string, unknown> };
    expect(authz.permissions['project_admin']).toBe('any');
    expect(authz.permissions['lead']).toMatchObject({ submit_job: 'any', clone_job: 'n:submitter', byoc: 'any' });
    expect(authz.permissions['org_admin']).toMatchObject({ submit_job: 'none', manage_job: 'o:submitter', operate: 'o:site' });
    // FLARE 2.9's resources.json.default (templates/local_server_resources.j2, local_client_resources.j2).
    const serverRes = (await json(join(server, 'local', 'resources.json.default'))) as { servers: unknown[]; components: Array<{ id: string; args?: unknown }> };
    expect(serverRes.servers).toHaveLength(1);
    expect(serverRes.components.map((c) => c.id)).toEqual(['job_scheduler', 'job_manager', 'job_store', 'process_launcher', 'log_receiver']);
    expect(serverRes.components[0]!.args).toEqual({ max_jobs: 4 });
    const clientRes = (await json(join(r.prodDir, 'site-1', 'local', 'resources.json.default'))) as { components: Array<{ id: string; args?: unknown }> };
    expect(clientRes.components.map((c) => c.id)).toEqual(['resource_manager', 'resource_consumer', 'process_launcher', 'error_log_sender']);
    // Our component allow-list: empty, in @flare/policy's format, in every server and client kit, signed.
    for (const k of ['server1', 'site-1', 'site-2']) expect(await json(join(r.prodDir, k, 'local', 'components.json.default'))).toEqual({ format_version: '1.0', allow: [], byoc: false });
    expect(JSON.parse(await readFile(join(server, 'local', 'signature.json'), 'utf8'))).toHaveProperty(['components.json.default']);
    expect(await readFile(join(r.prodDir, 'site-1', 'startup', 'start.sh'), 'utf8')).toContain('set -- client --kit "$DIR" "$@"');
    expect(await readFile(join(server, 'startup', 'start.sh'), 'utf8')).toContain('set -- server --kit "$DIR" "$@"');
    expect(await readFile(join(r.prodDir, 'lead@nvidia.com', 'startup', 'fl_admin.sh'), 'utf8')).toContain('set -- admin --kit "$DIR" "$@"');
    expect(await readFile(join(server, 'startup', 'start.sh'), 'utf8')).toContain('if command -v flare >/dev/null 2>&1; then exec flare "$@"; fi');

    for (const k of r.kits) expect((await verifyKit(k.dir)).signer).toBe('root');
    // openssl verify -CAfile rootCA.pem accepts every leaf.
    const leaves = r.kits.map((k) => join(k.dir, 'startup', k.type === 'server' ? 'server.crt' : 'client.crt'));
    const { stdout } = await run('openssl', ['verify', '-CAfile', join(server, 'startup', 'rootCA.pem'), ...leaves]);
    expect(stdout.trim().split('\n').filter((l) => l.endsWith(': OK'))).toHaveLength(6);
  });

  it("writes exactly the local/ files @flare/policy's tests parse (packages/policy/test/fixtures/provisioned)", async () => {
    const project = parseProject(`api_version: 3
name: fixture_project
participants:
  - { name: server1, type: server, org: nvidia }
  - { name: site-1, type: client, org: nvidia, capacity: { num_of_gpus: 2, mem_per_gpu_in_GiB: 16 } }
`);
    const r = await provision(project, { workspace: await tempDir() });
    const fixtures = new URL('../../policy/test/fixtures/provisioned/', import.meta.url);
    for (const [kit, file, copy] of [
      ['server1', 'resources.json.default', 'server-resources.json.default'],
      ['site-1', 'resources.json.default', 'client-resources.json.default'],
      ['site-1', 'components.json.default', 'components.json.default'],
    ] as const) {
      expect(await readFile(join(r.prodDir, kit, 'local', file), 'utf8'), `${kit}/local/${file}`).toBe(await readFile(new URL(copy, fixtures), 'utf8'));
    }
  });

  it('writes the component allow-list it is given into local/components.json.default; refuses names @flare/policy would refuse (RangeError)', async () => {
    const ws = await tempDir();
    const r = await provision(parseProject(projectYaml()), { workspace: ws, components: { allow: ['tfjs-spam', 'gaussian-dp', 'tfjs-spam'], byoc: true } });
    expect(await json(join(r.prodDir, 'site-1', 'local', 'components.json.default'))).toEqual({ format_version: '1.0', allow: ['tfjs-spam', 'gaussian-dp'], byoc: true });
    await expect(provision(parseProject(projectYaml()), { workspace: await tempDir(), components: { allow: ['ok', 'not ok'] } })).rejects.toThrow(RangeError);
    await expect(provision(parseProject(projectYaml()), { workspace: await tempDir(), components: { allow: Array.from({ length: 4097 }, (_, i) => `c${i}`) } })).rejects.toThrow(RangeError);
  });

  it('keeps the root key out of every kit and encrypts it at rest with a passphrase (PKCS#8)', async () => {
    const ws = await tempDir();
    const r = await provision(await loadProject(FIXTURE), { workspace: ws, passphrase: 'correct horse' });
    const keyPem = await readFile(join(r.stateDir, 'rootCA.key'), 'utf8');
    expect(keyPem).toContain('-----BEGIN ENCRYPTED PRIVATE KEY-----');
    expect(await mode(join(r.stateDir, 'rootCA.key'))).toBe(0o600);
    expect(await mode(r.stateDir)).toBe(0o700);
    expect(r.notices.join('\n')).not.toContain('not encrypted');
    // openssl reads it as encrypted PKCS#8 with the passphrase, and refuses without it.
    const out = await run('openssl', ['pkey', '-in', join(r.stateDir, 'rootCA.key'), '-passin', 'pass:correct horse', '-noout', '-text']);
    expect(out.stdout).toContain('Private-Key');
    await expect(run('openssl', ['pkey', '-in', join(r.stateDir, 'rootCA.key'), '-passin', 'pass:wrong', '-noout'])).rejects.toThrow();
    // PBES2 with PBKDF2-HMAC-SHA256 at 600,000 iterations (0x0927C0), not OpenSSL's default 2,048.
    const asn1 = await run('openssl', ['asn1parse', '-in', join(r.stateDir, 'rootCA.key')]);
    expect(asn1.stdout).toMatch(/:PBES2[\s\S]*:PBKDF2[\s\S]*INTEGER\s+:0927C0[\s\S]*:hmacWithSHA256[\s\S]*:aes-256-cbc/);
    await expectFlareCodeAsync(async () => provision(await loadProject(FIXTURE), { workspace: ws }), 'E_CA_PASSPHRASE');
    await expectFlareCodeAsync(async () => provision(await loadProject(FIXTURE), { workspace: ws, passphrase: 'wrong' }), 'E_CA_PASSPHRASE');
    const files = await readdir(r.stateDir);
    expect(files.filter((f) => f.endsWith('.key'))).toEqual(['rootCA.key']);
  });
});

describe('provision: re-provisioning, --add, state errors', () => {
  it('re-provisioning reuses the root and every certificate, in a new prod_NN', async () => {
    const ws = await tempDir();
    const project = await loadProject(FIXTURE);
    const first = await provision(project, { workspace: ws });
    const second = await provision(project, { workspace: ws });
    expect(second.prodDir.endsWith('prod_01')).toBe(true);
    expect(second.rootCreated).toBe(false);
    expect(second.kits.every((k) => k.reused)).toBe(true);
    expect(second.kits.map((k) => k.fingerprint)).toEqual(first.kits.map((k) => k.fingerprint));
    expect(await readFile(join(second.prodDir, 'site-1', 'startup', 'client.key'), 'utf8')).toBe(await readFile(join(first.prodDir, 'site-1', 'startup', 'client.key'), 'utf8'));
  });

  it('--add adds participants without re-issuing or invalidating the others, and remembers them', async () => {
    const ws = await tempDir();
    const project = await loadProject(FIXTURE);
    const first = await provision(project, { workspace: ws });
    const add = await loadParticipants('participants:\n  - name: site-3\n    type: client\n    org: hospital_c\n', project);
    const second = await provision(project, { workspace: ws, add });
    const site3 = second.kits.find((k) => k.name === 'site-3')!;
    expect(site3.reused).toBe(false);
    for (const k of first.kits) expect(second.kits.find((x) => x.name === k.name)?.fingerprint).toBe(k.fingerprint);
    // The old kits stay valid: same root, nothing revoked.
    const oldSite1 = await loadKit(join(first.prodDir, 'site-1'));
    const newKit = await loadKit(site3.dir);
    expect(newKit.rootCaPem).toBe(oldSite1.rootCaPem);
    verifyCertificate(newKit.certPem, { rootCaPem: oldSite1.rootCaPem, crl: newKit.crlPem!, expectedName: 'site-3', expectedType: 'client' });
    // Provisioning again from project.yml alone keeps site-3; revoking it expels it from later runs.
    const third = await provision(project, { workspace: ws });
    expect(third.kits.find((k) => k.name === 'site-3')?.fingerprint).toBe(site3.fingerprint);
    await revoke({ projectDir: third.projectDir, name: 'site-3' });
    const fourth = await provision(project, { workspace: ws });
    expect(fourth.kits.map((k) => k.name)).not.toContain('site-3');
  });

  it('refuses --add of an existing name or a second server (E_PROVISION_CONFLICT)', async () => {
    const ws = await tempDir();
    const project = await loadProject(FIXTURE);
    await provision(project, { workspace: ws });
    const dup = await loadParticipants('participants:\n  - name: site-1\n    type: client\n    org: x\n', project);
    await expectFlareCodeAsync(() => provision(project, { workspace: ws, add: dup }), 'E_PROVISION_CONFLICT');
    const srv = await loadParticipants('participants:\n  - name: server2\n    type: server\n    org: x\n', project);
    await expectFlareCodeAsync(() => provision(project, { workspace: ws, add: srv }), 'E_PROVISION_CONFLICT');
  });

  it('refuses --add without a CA state, and a lost state when kits exist, unless newRoot (E_CA_STATE_MISSING)', async () => {
    const ws = await tempDir();
    const project = await loadProject(FIXTURE);
    const add = await loadParticipants('participants:\n  - name: site-3\n    type: client\n    org: o\n', project);
    await expectFlareCodeAsync(() => provision(project, { workspace: ws, add }), 'E_CA_STATE_MISSING');
    const first = await provision(project, { workspace: ws });
    await rm(first.stateDir, { recursive: true });
    const e = await expectFlareCodeAsync(() => provision(project, { workspace: ws }), 'E_CA_STATE_MISSING');
    expect(e.message).toContain('prod_00');
    const renewed = await provision(project, { workspace: ws, newRoot: true });
    expect(renewed.rootCreated).toBe(true);
    const newRoot = await readFile(join(renewed.prodDir, 'site-1', 'startup', 'rootCA.pem'), 'utf8');
    await expectFlareCodeAsync(() => loadKit(join(first.prodDir, 'site-1'), { rootCaPem: newRoot }), 'E_KIT_TAMPERED');
  });

  it('refuses an unreadable state (E_CA_STATE_UNREADABLE); newRoot keeps the old state aside', async () => {
    const ws = await tempDir();
    const project = await loadProject(FIXTURE);
    const first = await provision(project, { workspace: ws });
    await writeFile(join(first.stateDir, 'ca.json'), '{"format": "something else"}');
    await expectFlareCodeAsync(() => provision(project, { workspace: ws }), 'E_CA_STATE_UNREADABLE');
    await provision(project, { workspace: ws, newRoot: true });
    expect((await readdir(join(ws, 'example_project'))).some((f) => f.startsWith('state.replaced-'))).toBe(true);
  });

  it('issues RSA-2048 kits when asked (keyType) and a re-provision keeps the root type', async () => {
    const ws = await tempDir();
    const r = await provision(parseProject(projectYaml()), { workspace: ws, keyType: 'rsa-2048' });
    const kit = await loadKit(join(r.prodDir, 'site-1'));
    expect(kit.privateKey.asymmetricKeyType).toBe('rsa');
    const again = await provision(parseProject(projectYaml()), { workspace: ws });
    expect(again.keyType).toBe('rsa-2048');
  });

  it('copies custom_ca_cert into startup/customRootCA.pem and refuses an unreadable one (E_PROJECT_INVALID)', async () => {
    const ws = await tempDir();
    const donor = await provision(parseProject(projectYaml('', 'donor')), { workspace: ws });
    const caPath = join(ws, 'proxy-ca.pem');
    await writeFile(caPath, await readFile(join(donor.prodDir, 'site-1', 'startup', 'rootCA.pem')));
    const text = projectYaml().replace('description: test', `description: test\nconnection_security: tls\ncustom_ca_cert: ${caPath}`);
    const r = await provision(parseProject(text), { workspace: ws });
    const kit = await loadKit(join(r.prodDir, 'site-1'));
    expect(kit.customCaPem).toBe(await readFile(caPath, 'utf8'));
    expect(kit.connectionSecurity).toBe('tls');
    const bad = projectYaml('', 'other').replace('description: test', `description: test\ncustom_ca_cert: ${join(ws, 'missing.pem')}`);
    await expectFlareCodeAsync(() => provision(parseProject(bad), { workspace: ws }), 'E_PROJECT_INVALID');
  });
});

describe('provision: revocation travels in re-provisioned kits', () => {
  it('a revoked participant gets a new certificate; every kit carries the CRL listing the old one', async () => {
    const ws = await tempDir();
    const project = await loadProject(FIXTURE);
    const first = await provision(project, { workspace: ws });
    const old = await loadKit(join(first.prodDir, 'site-2'));
    const { serials, crlPem } = await revoke({ projectDir: first.projectDir, name: 'site-2' });
    expect(serials).toHaveLength(1);
    const second = await provision(project, { workspace: ws, reissueRevoked: true });
    expect(second.kits.find((k) => k.name === 'site-2')?.reused).toBe(false);
    expect(second.notices.join('\n')).toContain("'site-2' was revoked and got a new certificate");
    expect(second.kits.find((k) => k.name === 'site-1')?.reused).toBe(true);
    const kit = await loadKit(join(second.prodDir, 'site-1'));
    expect(loadCrl(kit.crlPem!, { rootCaPem: kit.rootCaPem }).revoked.has(serials[0]!)).toBe(true);
    await expectFlareCodeAsync(() => verifyCertificate(old.certPem, { rootCaPem: kit.rootCaPem, crl: kit.crlPem! }), 'E_CERT_REVOKED');
    await expectFlareCodeAsync(() => verifyCertificate(old.certPem, { rootCaPem: kit.rootCaPem, crl: crlPem }), 'E_CERT_REVOKED');
    await expectFlareCodeAsync(() => revoke({ projectDir: first.projectDir, name: 'nobody' }), 'E_REVOKE_UNKNOWN');
  });
});

describe('provision: kit builders (the KitBuilder contract)', () => {
  const project = () =>
    parseProject(
      projectYaml() +
        `builders:
  - path: nvflare.lighter.impl.he.HEBuilder
    args: { poly_modulus_degree: 8192, coeff_mod_bit_sizes: [60, 40, 40], scale_bits: 40, scheme: CKKS }
  - path: nvflare.lighter.impl.cert.CertBuilder
`,
    );

  it('runs builders after issuing and before signing, with args, state and addFile; their files are signed', async () => {
    const ws = await tempDir();
    const seen: unknown[] = [];
    const builder: KitBuilder = {
      name: 'test-he',
      matches: ['nvflare.lighter.impl.he.HEBuilder'],
      async build(ctx) {
        seen.push(ctx.args, ctx.project.participants.map((p) => p.name));
        let secret = await ctx.state.read('secret.bin');
        if (!secret) {
          secret = new Uint8Array([1, 2, 3, 4]);
          await ctx.state.write('secret.bin', secret);
        }
        for (const p of ctx.project.participants) if (p.type === 'client') ctx.addFile(p.name, 'startup/he_context.bin', secret, { mode: 0o600 });
      },
    };
    const r = await provision(project(), { workspace: ws, builders: [builder] });
    expect(seen[0]).toEqual({ poly_modulus_degree: 8192, coeff_mod_bit_sizes: [60, 40, 40], scale_bits: 40, scheme: 'CKKS' });
    expect(seen[1]).toEqual(['server1', 'site-1', 'admin@nvidia.com']);
    expect(r.notices.join('\n')).not.toContain('HEBuilder');
    const file = join(r.prodDir, 'site-1', 'startup', 'he_context.bin');
    expect([...(await readFile(file))]).toEqual([1, 2, 3, 4]);
    expect(await mode(file)).toBe(0o600);
    expect(await mode(join(r.stateDir, 'builders', 'test-he', 'secret.bin'))).toBe(0o600);
    await verifyKit(join(r.prodDir, 'site-1'));
    await writeFile(file, 'changed');
    await expectFlareCodeAsync(() => verifyKit(join(r.prodDir, 'site-1')), 'E_KIT_TAMPERED');
  });

  it('reports HEBuilder as ignored when no builder is registered for it', async () => {
    const r = await provision(project(), { workspace: await tempDir() });
    expect(r.notices.join('\n')).toContain("builder 'nvflare.lighter.impl.he.HEBuilder'");
  });

  it('a failing builder stops provisioning with E_PROVISION_BUILDER and leaves no kit', async () => {
    const ws = await tempDir();
    const failing: KitBuilder = { name: 'broken', matches: [], build: () => Promise.reject(new Error('no parameters')) };
    const e = await expectFlareCodeAsync(() => provision(project(), { workspace: ws, builders: [failing] }), 'E_PROVISION_BUILDER');
    expect(e.message).toContain("'broken'");
    expect((await readdir(join(ws, 'demo'))).filter((f) => f.startsWith('prod_') || f.startsWith('.prod_'))).toEqual([]);
  });

  it('refuses builder paths that leave the kit or replace provisioned files (RangeError)', async () => {
    for (const [who, rel] of [
      ['site-1', '../escape.bin'],
      ['site-1', 'startup/client.key'],
      ['site-1', 'startup/signature.json'],
      ['site-1', 'top.bin'],
      ['nobody', 'startup/x.bin'],
    ] as const) {
      const b: KitBuilder = { name: 'bad', matches: [], build: (ctx) => ctx.addFile(who, rel, new Uint8Array(1)) };
      await expect(provision(project(), { workspace: await tempDir(), builders: [b] })).rejects.toBeInstanceOf(RangeError);
    }
  });
});
