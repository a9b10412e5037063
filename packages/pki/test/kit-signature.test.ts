import { cp, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadProject, provision, verifyKit, type ProvisionResult } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { FIXTURE, tempDir } from './helpers.js';

async function filesOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)));
  }
  return out.sort();
}

describe('verifyKit', () => {
  let result: ProvisionResult;
  let work: string;
  let n = 0;
  beforeAll(async () => {
    const ws = await tempDir();
    result = await provision(await loadProject(FIXTURE), { workspace: ws, now: new Date() });
    work = await tempDir();
  });
  /** A private copy of a kit to damage. */
  async function copyOf(name: string): Promise<string> {
    const dest = join(work, `k${n++}`);
    await cp(join(result.prodDir, name), dest, { recursive: true });
    return dest;
  }

  it('accepts every freshly provisioned kit, signed by the root', async () => {
    for (const kit of result.kits) {
      const v = await verifyKit(kit.dir);
      expect(v.signer).toBe('root');
      expect(v.files).toBeGreaterThanOrEqual(6);
    }
  });
  it('signature.json has FLARE\'s flat format: file -> base64 signature, subfolder -> signature over its name', async () => {
    const top = JSON.parse(await readFile(join(result.prodDir, 'site-1', 'signature.json'), 'utf8')) as Record<string, string>;
    expect(Object.keys(top).sort()).toEqual(['local', 'manifest.json', 'readme.txt', 'startup', 'transfer']);
    for (const v of Object.values(top)) expect(v).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });

  it('detects a change to any byte of any kit file (E_KIT_TAMPERED), naming the file', async () => {
    const kit = await copyOf('site-1');
    const files = (await filesOf(kit)).filter((f) => !f.endsWith('signature.json'));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...files), fc.nat(), fc.integer({ min: 1, max: 255 }), async (file, at, xor) => {
        const path = join(kit, file);
        const original = await readFile(path);
        const damaged = Buffer.from(original);
        damaged[at % damaged.length]! ^= xor;
        await writeFile(path, damaged);
        try {
          const e = await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_TAMPERED');
          expect(e.message).toContain(file);
        } finally {
          await writeFile(path, original);
        }
      }),
      { numRuns: 60, seed: 20260301 },
    );
    await verifyKit(kit);
  });
  it('detects a file listed but missing (E_KIT_FILE_MISSING)', async () => {
    const kit = await copyOf('site-2');
    await rm(join(kit, 'local', 'privacy.json.sample'));
    const e = await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_FILE_MISSING');
    expect(e.message).toContain('local/privacy.json.sample');
  });
  it('detects a signed file deleted together with its signature.json entry, via the signed manifest (E_KIT_FILE_MISSING)', async () => {
    const kit = await copyOf('site-1');
    await rm(join(kit, 'startup', 'crl.pem'));
    const sigPath = join(kit, 'startup', 'signature.json');
    const sig = JSON.parse(await readFile(sigPath, 'utf8')) as Record<string, string>;
    delete sig['crl.pem'];
    await writeFile(sigPath, JSON.stringify(sig));
    const e = await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_FILE_MISSING');
    expect(e.message).toContain('startup/crl.pem is listed in manifest.json');
    // The same for a whole folder, and for the manifest itself.
    const kit2 = await copyOf('site-1');
    await rm(join(kit2, 'local'), { recursive: true });
    const top = JSON.parse(await readFile(join(kit2, 'signature.json'), 'utf8')) as Record<string, string>;
    delete top['local'];
    await writeFile(join(kit2, 'signature.json'), JSON.stringify(top));
    await expectFlareCodeAsync(() => verifyKit(kit2), 'E_KIT_FILE_MISSING');
    const kit3 = await copyOf('site-1');
    await rm(join(kit3, 'manifest.json'));
    const top3 = JSON.parse(await readFile(join(kit3, 'signature.json'), 'utf8')) as Record<string, string>;
    delete top3['manifest.json'];
    await writeFile(join(kit3, 'signature.json'), JSON.stringify(top3));
    const e3 = await expectFlareCodeAsync(() => verifyKit(kit3), 'E_KIT_FILE_MISSING');
    expect(e3.message).toContain('manifest.json');
  });
  it('names the project and participant of the signed manifest', async () => {
    const v = await verifyKit(join(result.prodDir, 'site-2'));
    expect(v).toMatchObject({ project: 'example_project', participant: 'site-2' });
  });
  it('detects a file present but unsigned (E_KIT_UNSIGNED)', async () => {
    const kit = await copyOf('site-2');
    await writeFile(join(kit, 'startup', 'extra.sh'), 'echo pwned\n');
    const e = await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_UNSIGNED');
    expect(e.message).toContain('startup/extra.sh');
  });
  it('detects a folder without signature.json (E_KIT_UNSIGNED) and an added unsigned folder', async () => {
    const kit = await copyOf('server1');
    await rm(join(kit, 'transfer', 'signature.json'));
    await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_UNSIGNED');
    const kit2 = await copyOf('server1');
    await mkdir(join(kit2, 'plugins'));
    const e = await expectFlareCodeAsync(() => verifyKit(kit2), 'E_KIT_UNSIGNED');
    expect(e.message).toContain('plugins');
  });
  it('refuses symlinks, even to the right content (E_KIT_SYMLINK)', async () => {
    const kit = await copyOf('site-1');
    const target = join(work, 'outside.pem');
    await cp(join(kit, 'startup', 'rootCA.pem'), target);
    await rm(join(kit, 'startup', 'rootCA.pem'));
    await symlink(target, join(kit, 'startup', 'rootCA.pem'));
    const rootCaPem = await readFile(target, 'utf8');
    await expectFlareCodeAsync(() => verifyKit(kit, { rootCaPem }), 'E_KIT_SYMLINK');
  });
  it('refuses a broken signature.json (E_KIT_SIGNATURE_FILE)', async () => {
    for (const bad of ['{not json', '[]', '{"../x": "AAAA"}', '{"a": 5}', '{"a": "AA", "a": "AA"}']) {
      const kit = await copyOf('site-1');
      await writeFile(join(kit, 'local', 'signature.json'), bad);
      await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_SIGNATURE_FILE');
    }
  });
  it('detects a signature swapped in from another kit file (E_KIT_TAMPERED)', async () => {
    const kit = await copyOf('site-1');
    const sig = JSON.parse(await readFile(join(kit, 'startup', 'signature.json'), 'utf8')) as Record<string, string>;
    [sig['client.crt'], sig['rootCA.pem']] = [sig['rootCA.pem']!, sig['client.crt']!];
    await writeFile(join(kit, 'startup', 'signature.json'), JSON.stringify(sig));
    await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_TAMPERED');
  });
  it('refuses a kit re-signed by another root when the project root is pinned (E_KIT_TAMPERED)', async () => {
    const ws = await tempDir();
    const other = await provision(await loadProject(FIXTURE), { workspace: ws });
    const foreignKit = join(other.prodDir, 'site-1');
    await verifyKit(foreignKit);
    const root = await readFile(join(result.prodDir, 'site-1', 'startup', 'rootCA.pem'), 'utf8');
    await expectFlareCodeAsync(() => verifyKit(foreignKit, { rootCaPem: root }), 'E_KIT_TAMPERED');
  });
  it('accepts local/ site overrides only when asked (localOverrides), listing them', async () => {
    const kit = await copyOf('site-2');
    await writeFile(join(kit, 'local', 'authorization.json'), '{}');
    await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_UNSIGNED');
    const v = await verifyKit(kit, { localOverrides: true });
    expect(v.localOverrides).toEqual(['local/authorization.json']);
    await writeFile(join(kit, 'local', 'components.json'), '{"allow": []}');
    await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_UNSIGNED');
    expect((await verifyKit(kit, { localOverrides: true })).localOverrides).toEqual(['local/authorization.json', 'local/components.json']);
    // A server's own aggregation policy (@flare/runtime) is a local override too.
    await writeFile(join(kit, 'local', 'aggregation.json'), '{"require": "robust"}');
    expect((await verifyKit(kit, { localOverrides: true })).localOverrides).toEqual(['local/aggregation.json', 'local/authorization.json', 'local/components.json']);
    await rm(join(kit, 'local', 'aggregation.json'));
    // Only in local/: the same name elsewhere is an unsigned file.
    await writeFile(join(kit, 'startup', 'components.json'), '{"allow": []}');
    await expectFlareCodeAsync(() => verifyKit(kit, { localOverrides: true }), 'E_KIT_UNSIGNED');
    await rm(join(kit, 'startup', 'components.json'));
    await writeFile(join(kit, 'local', 'evil.json'), '{}');
    await expectFlareCodeAsync(() => verifyKit(kit, { localOverrides: true }), 'E_KIT_UNSIGNED');
  });
  it('refuses a missing kit folder or rootCA.pem (E_KIT_FILE_MISSING)', async () => {
    await expectFlareCodeAsync(() => verifyKit(join(work, 'nope')), 'E_KIT_FILE_MISSING');
    const kit = await copyOf('site-1');
    await rm(join(kit, 'startup', 'rootCA.pem'));
    await expectFlareCodeAsync(() => verifyKit(kit), 'E_KIT_FILE_MISSING');
  });
});
