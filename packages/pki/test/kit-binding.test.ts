// Attacks by someone who can write a participant's disk or a kit in transit, with files the project root
// really signed (issue #14.10, #14.11, #14.17, #14.19): every one is refused with a code naming the file.
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FlareError, type KitBuilder, type KitLocalOverride } from '@flare/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { CrlStore, loadKit, loadProject, parseProject, provision, revoke, verifyCertificate, verifyKit, type ProvisionResult } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { FIXTURE, projectYaml, tempDir } from './helpers.js';

const enc = new TextEncoder();

/** A builder that gives each server and client its own policy file, as cc-attest's does (pki may not import it). */
const policyBuilder: KitBuilder = {
  name: 'test-policy',
  matches: [],
  build(ctx) {
    for (const p of ctx.project.participants) {
      if (p.type !== 'server' && p.type !== 'client') continue;
      // site-1 pins a measurement; every other participant accepts anything: a weaker file to steal.
      const level = p.name === 'site-1' ? 3 : 0;
      ctx.addFile(p.name, 'local/attestation_policy.json.default', enc.encode(JSON.stringify({ level }) + '\n'));
    }
  },
};

/** A rule like cc-attest's: the site's own file must have a level at least the signed one's. */
const levelRule: KitLocalOverride = {
  file: 'attestation_policy.json',
  check(local, signedDefault) {
    const own = (JSON.parse(Buffer.from(local).toString()) as { level: number }).level;
    const signed = signedDefault === undefined ? 0 : (JSON.parse(Buffer.from(signedDefault).toString()) as { level: number }).level;
    if (own < signed) throw new FlareError('E_ATTEST_POLICY_WEAKER', `level ${own} is below the signed ${signed}`);
  },
};

async function moveSigned(fromKit: string, toKit: string, rel: string): Promise<void> {
  // Copy a signed file together with its signature.json entry: the signature is the project root's, and valid.
  const folder = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
  const name = rel.slice(rel.lastIndexOf('/') + 1);
  await cp(join(fromKit, rel), join(toKit, rel), { recursive: true });
  const sigOf = (kit: string) => join(kit, folder, 'signature.json');
  const from = JSON.parse(await readFile(sigOf(fromKit), 'utf8')) as Record<string, string>;
  const to = JSON.parse(await readFile(sigOf(toKit), 'utf8')) as Record<string, string>;
  to[name] = from[name]!;
  await writeFile(sigOf(toKit), JSON.stringify(to));
}

describe('kit signatures bind every file to its participant and kit', () => {
  let r: ProvisionResult;
  let work: string;
  let n = 0;
  const copyOf = async (name: string, from = r): Promise<string> => {
    const dest = join(work, `k${n++}`);
    await cp(join(from.prodDir, name), dest, { recursive: true });
    return dest;
  };
  beforeAll(async () => {
    r = await provision(await loadProject(FIXTURE), { workspace: await tempDir(), builders: [policyBuilder] });
    work = await tempDir();
  });

  it('the signed manifest names project, participant, type and a kit serial, and hashes every file', async () => {
    const manifest = JSON.parse(await readFile(join(r.prodDir, 'site-1', 'manifest.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({ format: 'flare-ts-kit/2', project: 'example_project', participant: 'site-1', type: 'client' });
    expect(manifest['kitSerial']).toMatch(/^[0-9a-f]{32}$/);
    expect(Object.keys(manifest['files'] as object)).toContain('local/attestation_policy.json.default');
    const v1 = await verifyKit(join(r.prodDir, 'site-1'));
    const v2 = await verifyKit(join(r.prodDir, 'site-2'));
    expect(v1).toMatchObject({ participant: 'site-1', type: 'client' });
    expect(v1.kitSerial).not.toBe(v2.kitSerial);
    // FLARE's signature.json stays as FLARE users read it: one flat map per folder.
    const sig = JSON.parse(await readFile(join(r.prodDir, 'site-1', 'local', 'signature.json'), 'utf8')) as Record<string, string>;
    expect(Object.keys(sig)).toContain('attestation_policy.json.default');
  });

  it("refuses site-2's weaker attestation policy placed in site-1's kit with its signature (E_KIT_MIXED)", async () => {
    const kit = await copyOf('site-1');
    await moveSigned(join(r.prodDir, 'site-2'), kit, 'local/attestation_policy.json.default');
    const e = await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_MIXED');
    expect(e.message).toContain('local/attestation_policy.json.default');
    await expectFlareCodeAsync(() => loadKit(kit), 'E_KIT_MIXED');
  });

  it("refuses the server kit's whole local/ folder in a site kit (E_KIT_MIXED)", async () => {
    const kit = await copyOf('site-1');
    await rm(join(kit, 'local'), { recursive: true });
    await moveSigned(join(r.prodDir, 'server1'), kit, 'local');
    const e = await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_MIXED');
    expect(e.message).toMatch(/local\//);
    await expectFlareCodeAsync(() => loadKit(kit), 'E_KIT_MIXED');
  });

  it("refuses another participant's certificate and key with their signatures, even with its manifest (E_KIT_MIXED)", async () => {
    const kit = await copyOf('site-1');
    for (const f of ['startup/client.crt', 'startup/client.key']) await moveSigned(join(r.prodDir, 'site-2'), kit, f);
    await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_MIXED');
    // ... and with site-2's manifest too: then site-1's own files do not match it.
    await moveSigned(join(r.prodDir, 'site-2'), kit, 'manifest.json');
    await expectFlareCodeAsync(() => loadKit(kit), 'E_KIT_MIXED');
  });

  it('refuses a kit whose manifest is in the old format that bound nothing (E_KIT_SIGNATURE_FILE)', async () => {
    // An old manifest is signed by the same root: accepting it would undo the binding.
    const kit = await copyOf('site-1');
    const manifest = JSON.parse(await readFile(join(kit, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(kit, 'manifest.json'), JSON.stringify({ ...manifest, format: 'flare-ts-kit/1' }));
    await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_TAMPERED'); // changed bytes: its signature fails first
  });

  it("accepts a site's own stricter local/attestation_policy.json only with the owner's rule; refuses a weaker one", async () => {
    const kit = await copyOf('site-1');
    await writeFile(join(kit, 'local', 'attestation_policy.json'), JSON.stringify({ level: 5 }));
    // Without a rule the file is not an override anyone vouched for.
    await expectFlareCodeAsync(() => loadKit(kit), 'E_KIT_UNSIGNED');
    const loaded = await loadKit(kit, { strictOverrides: [levelRule] });
    expect(loaded.verification.localOverrides).toEqual(['local/attestation_policy.json']);
    expect(Buffer.from(loaded.files.get('local/attestation_policy.json')!).toString()).toBe('{"level":5}');
    await writeFile(join(kit, 'local', 'attestation_policy.json'), JSON.stringify({ level: 1 }));
    await expectFlareCodeAsync(() => loadKit(kit, { strictOverrides: [levelRule] }), 'E_ATTEST_POLICY_WEAKER');
    await expectFlareCodeAsync(() => verifyKit(kit, { strictOverrides: [levelRule] }), 'E_ATTEST_POLICY_WEAKER');
  });

  it('loadKit hands over the verified bytes of every file', async () => {
    const kit = await loadKit(join(r.prodDir, 'site-1'));
    expect(Buffer.from(kit.files.get('startup/client.crt')!).toString()).toBe(kit.certPem);
    expect(Buffer.from(kit.files.get('startup/rootCA.pem')!).toString()).toBe(kit.rootCaPem);
    expect(kit.files.has('local/privacy.json.sample')).toBe(true);
    expect([...kit.files.keys()].some((k) => k.endsWith('signature.json'))).toBe(false);
  });
});

describe('CRL rollback and revoked participants', () => {
  it('refuses an older crl.pem with its signature in a newer server kit (E_KIT_MIXED); the newest CRL stays', async () => {
    const ws = await tempDir();
    const first = await provision(await loadProject(FIXTURE), { workspace: ws });
    const site2 = await loadKit(join(first.prodDir, 'site-2'));
    await revoke({ projectDir: first.projectDir, name: 'site-2' });
    const second = await provision(await loadProject(FIXTURE), { workspace: ws, reissueRevoked: true });
    const server = join(await tempDir(), 'server1');
    await cp(join(second.prodDir, 'server1'), server, { recursive: true });
    const before = await loadKit(server);
    await moveSigned(join(first.prodDir, 'server1'), server, 'startup/crl.pem');
    const e = await expectFlareCodeAsync(() => verifyKit(server), 'E_KIT_MIXED');
    expect(e.message).toContain('startup/crl.pem');
    await expectFlareCodeAsync(() => loadKit(server), 'E_KIT_MIXED');

    // A whole older kit is authentic, but a server that once accepted the newer CRL keeps it.
    const file = join(ws, 'crl-state.json');
    await CrlStore.open({ rootCaPem: before.rootCaPem, file, seed: before.crlPem! });
    const old = await loadKit(join(first.prodDir, 'server1'));
    const crls = await CrlStore.open({ rootCaPem: old.rootCaPem, file, seed: old.crlPem! });
    await expectFlareCodeAsync(() => verifyCertificate(site2.certPem, { rootCaPem: old.rootCaPem, crl: crls.current! }), 'E_CERT_REVOKED');
    await expectFlareCodeAsync(() => crls.accept(old.crlPem!), 'E_CRL_ROLLBACK');
  });

  it('re-provisioning refuses to re-issue a revoked participant still in project.yml (E_PROVISION_REVOKED), unless asked', async () => {
    const ws = await tempDir();
    const project = parseProject(projectYaml('  - name: site-2\n    type: client\n    org: nvidia\n'));
    const first = await provision(project, { workspace: ws });
    await revoke({ projectDir: first.projectDir, name: 'site-2' });
    const e = await expectFlareCodeAsync(() => provision(project, { workspace: ws }), 'E_PROVISION_REVOKED');
    expect(e.message).toContain("'site-2'");
    const again = await provision(project, { workspace: ws, reissueRevoked: true });
    expect(again.kits.find((k) => k.name === 'site-2')?.reused).toBe(false);
    expect(again.notices.join('\n')).toMatch(/site-2.*revoked.*new certificate/);
    // Removing it from the project file expels it with no flag.
    const without = parseProject(projectYaml());
    const third = await provision(without, { workspace: ws });
    expect(third.kits.some((k) => k.name === 'site-2')).toBe(false);
  });
});
