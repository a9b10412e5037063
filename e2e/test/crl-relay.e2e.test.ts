// Revocation through a real forwarding `flare relay` (issue #14.10, the leftovers), with real processes: the
// relay keeps the newest CRL the server hands the sites it carries (its own audit log and CrlStore in its
// workspace); revoking a site behind it cuts that site; revoking the relay itself cuts at once the session of
// every site it carries (audited at the server, naming the relay), and their logins through it are refused with
// E_CERT_REVOKED while the sites, not revoked themselves, keep trying. No restart of anything.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseProject, provision } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditOf, flare, freePort, startFlare, stopAll, tempDir, until } from './support.js';

let root: string;
let relayPort: number;
const kits = new Map<string, string>();

beforeAll(async () => {
  root = await tempDir('flare-crl-relay-e2e-');
  const port = await freePort();
  relayPort = await freePort();
  const site = (name: string, org: string) => ({ name, type: 'client' as const, org, parent: 'relay-1', connect_to: { host: 'localhost', port: relayPort } });
  const yaml = testProjectYaml({
    name: 'crl_relay',
    org: 'org_a',
    port,
    sites: [],
    participants: [{ name: 'relay-1', type: 'relay', org: 'org_a', listening_host: 'localhost' }, site('site-1', 'org_a'), site('site-2', 'org_b')],
  });
  const r = await provision(parseProject(yaml), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
});

afterAll(stopAll);

describe('revocation through a forwarding flare relay (real processes)', () => {
  it('the relay keeps the newer CRL passing down; revoking the relay cuts every site behind it at once, and logins through it are refused (E_CERT_REVOKED)', async () => {
    const srvWs = join(root, 'server-ws');
    const relayWs = join(root, 'relay-ws');
    await startFlare(['server', '--kit', kits.get('localhost')!, '--workspace', srvWs], { ready: /listening on port/ });
    await startFlare(['relay', '--kit', kits.get('relay-1')!, '--port', String(relayPort), '--workspace', relayWs], { ready: /listening on port/ });
    const sites = new Map<string, Awaited<ReturnType<typeof startFlare>>>();
    for (const name of ['site-1', 'site-2']) {
      const ws = join(root, `${name}-ws`);
      await mkdir(ws, { recursive: true });
      await writeFile(join(ws, 'site.json'), JSON.stringify({ components: { allow: [], byoc: false } }));
      sites.set(name, await startFlare(['client', '--kit', kits.get(name)!, '--workspace', ws]));
    }
    const server = (): ReturnType<typeof auditOf> => auditOf(srvWs);
    const registered = async (): Promise<string[]> => (await server()).filter((l) => l.action === 'client_registered').map((l) => String(l.user));
    await until(async () => ((await registered()).includes('site-1') && (await registered()).includes('site-2') ? true : undefined), 120_000, 'both sites registered through the relay');

    // 1. Revoking site-2: the server cuts it; the CRL it pushes to site-1 passes the relay, which keeps it.
    const first = await flare(['cert', 'revoke', 'site-2', '-w', root, '--server-workspace', srvWs]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    const siteCut = await until(async () => (await server()).find((l) => l.action === 'session_revoked' && l.user === 'site-2'), 120_000, 'site-2 session_revoked');
    expect(siteCut.data).toMatchObject({ code: 'E_CERT_REVOKED' });
    const kept = await until(async () => (await auditOf(relayWs)).find((l) => l.action === 'crl_updated'), 120_000, "crl_updated in the relay's log");
    expect(kept.data).toMatchObject({ revoked: 1 });
    const state = JSON.parse(await readFile(join(relayWs, 'crl-state.json'), 'utf8')) as { crlNumber: string };
    expect(BigInt(state.crlNumber)).toBeGreaterThan(0n);
    const code = await Promise.race([sites.get('site-2')!.exited, until(() => undefined, 120_000, 'site-2 to exit')]);
    expect(code).not.toBe(0);

    // 2. Revoking the relay: site-1's session, which it carries, is cut at once, naming the relay.
    const relayLog = (): Promise<string> => readFile(join(relayWs, 'relay.log.jsonl'), 'utf8');
    const before = (await relayLog()).length;
    const second = await flare(['cert', 'revoke', 'relay-1', '-w', root, '--server-workspace', srvWs]);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const serial = /serial ([0-9a-f]+)/.exec(second.stdout)?.[1];
    const relayCut = await until(async () => (await server()).find((l) => l.action === 'session_revoked' && l.user === 'site-1'), 120_000, 'site-1 session_revoked');
    expect(relayCut.data).toMatchObject({ code: 'E_RUNTIME_RELAY_REVOKED', relay: 'relay-1', serial, via: ['relay-1'] });
    // site-1 comes back through relay-1: the server refuses the revoked hop, the relay logs the refusal.
    const refusedAfter = async (): Promise<true | undefined> =>
      (await relayLog()).slice(before).split('\n').some((l) => l.includes('relayed login refused') && l.includes('E_CERT_REVOKED')) ? true : undefined;
    await until(refusedAfter, 120_000, 'a relayed login refused with E_CERT_REVOKED');
    // site-1 is not revoked: it keeps trying rather than stopping for good.
    expect(sites.get('site-1')!.child.exitCode).toBeNull();
    const lost = (await server()).filter((l) => l.action === 'client_lost').map((l) => l.user);
    expect(lost.sort()).toEqual(['site-1', 'site-2']);
  });
});
