// A revocation applied to a running federation (issue #14.10), with real processes: `flare cert revoke
// --server-workspace` writes the new CRL where the running `flare server` watches it; the server cuts the
// revoked site's live session at once (audited, naming it and its serial), the site is refused at its next
// login and exits non-zero, and the other site, still connected, receives the CRL and keeps it. No restart.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseProject, provision } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditOf, flare, freePort, startFlare, stopAll, tempDir, until } from './support.js';

let root: string;
const kits = new Map<string, string>();

beforeAll(async () => {
  root = await tempDir('flare-crl-revoke-e2e-');
  const port = await freePort();
  const yaml = testProjectYaml({ name: 'crl_revoke', org: 'org_a', port, sites: ['site-1', ['site-2', 'org_b']] });
  const r = await provision(parseProject(yaml), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
});

afterAll(stopAll);

describe('flare cert revoke reaches a running federation (real processes)', () => {
  it('the revoked site is cut off without a server restart, refused at its next login, and the other site gets the CRL', async () => {
    const srvWs = join(root, 'server-ws');
    await startFlare(['server', '--kit', kits.get('localhost')!, '--workspace', srvWs], { ready: /listening on port/ });
    const sites = new Map<string, Awaited<ReturnType<typeof startFlare>>>();
    for (const name of ['site-1', 'site-2']) {
      const ws = join(root, `${name}-ws`);
      await mkdir(ws, { recursive: true });
      await writeFile(join(ws, 'site.json'), JSON.stringify({ components: { allow: [], byoc: false } }));
      sites.set(name, await startFlare(['client', '--kit', kits.get(name)!, '--workspace', ws]));
    }
    const registered = async (): Promise<string[]> => (await auditOf(srvWs)).filter((l) => l.action === 'client_registered').map((l) => String(l.user));
    await until(async () => ((await registered()).includes('site-1') && (await registered()).includes('site-2') ? true : undefined), 120_000, 'both sites registered');

    const revoke = await flare(['cert', 'revoke', 'site-2', '-w', root, '--server-workspace', srvWs]);
    expect(revoke.code, revoke.stdout + revoke.stderr).toBe(0);
    const serial = /serial ([0-9a-f]+)/.exec(revoke.stdout)?.[1];
    expect(serial).toBeDefined();
    expect(revoke.stdout).toContain(join(srvWs, 'crl.pem'));

    // The server takes it and cuts site-2's live session, naming it and its serial.
    const cut = await until(async () => (await auditOf(srvWs)).find((l) => l.action === 'session_revoked'), 120_000, 'session_revoked in the server log');
    expect(cut.user).toBe('site-2');
    expect(cut.data).toMatchObject({ code: 'E_CERT_REVOKED', serial });
    // site-2 is refused at its next login and stops for good, non-zero, with the revoked code.
    const code = await Promise.race([sites.get('site-2')!.exited, until(() => undefined, 120_000, 'site-2 to exit')]);
    expect(code).not.toBe(0);
    expect(sites.get('site-2')!.stderr() + sites.get('site-2')!.stdout()).toContain('E_CERT_REVOKED');
    // site-1 stays connected and keeps the newer CRL.
    const updated = await until(async () => (await auditOf(join(root, 'site-1-ws'))).find((l) => l.action === 'crl_updated'), 120_000, "crl_updated in site-1's log");
    expect(updated.data).toMatchObject({ revoked: 1 });
    expect(sites.get('site-1')!.child.exitCode).toBeNull();
    const lost = (await auditOf(srvWs)).filter((l) => l.action === 'client_lost').map((l) => l.user);
    expect(lost).toEqual(['site-2']);
  });
});
