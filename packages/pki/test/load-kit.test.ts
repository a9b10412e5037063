import { once } from 'node:events';
import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadKit, loadProject, parseProject, provision, type Kit, type ProvisionResult } from '../src/index.js';
import { signKitFiles } from '../src/kit-signature.js';
import { loadPrivateKey } from '../src/keys.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { FIXTURE, projectYaml, tempDir } from './helpers.js';

/** Resolves with the first of `events` emitted by `emitter` (an 'error' included), or rejects after `ms`. */
function first(emitter: NodeJS.EventEmitter, events: readonly string[], ms = 60_000): Promise<{ event: string; args: unknown[] }> {
  return new Promise((resolve, reject) => {
    const handlers = new Map<string, (...args: unknown[]) => void>();
    const done = (): void => {
      clearTimeout(timer);
      for (const [e, h] of handlers) emitter.off(e, h);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`none of ${events.join(', ')} within ${ms} ms`));
    }, ms);
    for (const event of events) {
      const h = (...args: unknown[]): void => {
        done();
        resolve({ event, args });
      };
      handlers.set(event, h);
      emitter.on(event, h);
    }
  });
}

describe('loadKit', () => {
  let r: ProvisionResult;
  let foreign: ProvisionResult;
  beforeAll(async () => {
    r = await provision(await loadProject(FIXTURE), { workspace: await tempDir() });
    foreign = await provision(parseProject(projectYaml('', 'other_project')), { workspace: await tempDir() });
  });

  it('returns a typed view of a server kit', async () => {
    const kit = await loadKit(join(r.prodDir, 'server1'));
    expect(kit.project).toBe('example_project');
    expect(kit.participant).toEqual({ name: 'server1', type: 'server', org: 'nvidia' });
    expect(kit.server).toEqual({ name: 'server1', hosts: ['server1'], port: 8002, adminPort: 8002 });
    expect(kit.connectionSecurity).toBe('mtls');
    expect(kit.privateKey.type).toBe('private');
    expect(kit.crlPem).toContain('BEGIN X509 CRL');
    expect(kit.verification.signer).toBe('root');
  });
  it('returns a typed view of client and admin kits (role from the certificate)', async () => {
    const client = await loadKit(join(r.prodDir, 'site-2'));
    expect(client.participant).toEqual({ name: 'site-2', type: 'client', org: 'nvidia' });
    expect(client.server).toEqual({ name: 'server1', hosts: ['server1'], port: 8002, adminPort: 8002 });
    const admin = await loadKit(join(r.prodDir, 'org-admin@nvidia.com'));
    expect(admin.participant).toEqual({ name: 'org-admin@nvidia.com', type: 'admin', org: 'nvidia', role: 'org_admin' });
    expect(admin.server.adminPort).toBe(8002);
    expect((admin.config as { admin: { username: string } }).admin.username).toBe('org-admin@nvidia.com');
  });
  it('uses connect_to for a client: host first, its port', async () => {
    const p = parseProject(projectYaml(`  - name: site-9\n    type: client\n    org: o\n    connect_to: { host: proxy.example.com, port: 443 }\n`).replace('fed_learn_port: 8002', 'fed_learn_port: 8002\n    host_names: [10.0.0.1]\n    admin_port: 8003'));
    const res = await provision(p, { workspace: await tempDir() });
    expect((await loadKit(join(res.prodDir, 'site-9'))).server).toEqual({ name: 'server1', hosts: ['proxy.example.com'], port: 443, adminPort: 8003 });
    expect((await loadKit(join(res.prodDir, 'site-1'))).server).toEqual({ name: 'server1', hosts: ['server1', '10.0.0.1'], port: 8002, adminPort: 8003 });
    expect((await loadKit(join(res.prodDir, 'server1'))).server.hosts).toEqual(['server1', '10.0.0.1']);
  });
  it('loads a relay kit (fed_relay.json) and gives a client behind it its FLARE fqsn', async () => {
    const p = parseProject(projectYaml(`  - name: relay-1\n    type: relay\n    org: o\n    listening_host: relay1.example.com\n  - name: site-9\n    type: client\n    org: o\n    parent: relay-1\n`));
    const res = await provision(p, { workspace: await tempDir() });
    const relay = await loadKit(join(res.prodDir, 'relay-1'));
    expect(relay.participant).toEqual({ name: 'relay-1', type: 'relay', org: 'o' });
    const site = await loadKit(join(res.prodDir, 'site-9'));
    expect((site.config as { client: { fqsn: string } }).client.fqsn).toBe('relay-1.site-9');
  });
  it('refuses a tampered kit before reading it, naming the file (E_KIT_TAMPERED)', async () => {
    const dir = join(await tempDir(), 'kit');
    await cp(join(r.prodDir, 'site-1'), dir, { recursive: true });
    const cfg = join(dir, 'startup', 'fed_client.json');
    await writeFile(cfg, (await readFile(cfg, 'utf8')).replace('server1:8002', 'evil.example.com:8002'));
    const e = await expectFlareCodeAsync(() => loadKit(dir), 'E_KIT_TAMPERED');
    expect(e.message).toContain('startup/fed_client.json');
  });
  it('accepts a site override in local/ (authorization.json) and lists it', async () => {
    const dir = join(await tempDir(), 'kit');
    await cp(join(r.prodDir, 'site-1'), dir, { recursive: true });
    await writeFile(join(dir, 'local', 'authorization.json'), '{"format_version": "1.0", "permissions": {}}');
    expect((await loadKit(dir)).verification.localOverrides).toEqual(['local/authorization.json']);
    await writeFile(join(dir, 'local', 'components.json'), '{"format_version": "1.0", "allow": ["tfjs-spam"]}');
    expect((await loadKit(dir)).verification.localOverrides).toEqual(['local/authorization.json', 'local/components.json']);
  });
  it('refuses an expired kit certificate with an injected clock (E_CERT_EXPIRED)', async () => {
    await expectFlareCodeAsync(() => loadKit(join(r.prodDir, 'site-1'), { at: new Date(Date.now() + 400 * 86_400_000) }), 'E_CERT_EXPIRED');
  });
  it('refuses a (validly signed) kit whose key is not its certificate\'s (E_KIT_INVALID)', async () => {
    const dir = join(await tempDir(), 'kit');
    await cp(join(r.prodDir, 'site-1'), dir, { recursive: true });
    await cp(join(r.prodDir, 'site-2', 'startup', 'client.key'), join(dir, 'startup', 'client.key'));
    // Re-sign with the real root key, as a careless admin tool might: the signatures pass, the pairing does not.
    const rootKey = loadPrivateKey(await readFile(join(r.stateDir, 'rootCA.key')));
    const files = new Map<string, { bytes: Uint8Array; mode: number }>();
    for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
      if (e.isFile() && e.name !== 'signature.json') files.set(relative(dir, join(e.parentPath, e.name)), { bytes: await readFile(join(e.parentPath, e.name)), mode: 0o644 });
    }
    for (const [rel, f] of signKitFiles(files, ['startup', 'local', 'transfer'], rootKey, { project: 'example_project', participant: 'site-1', type: 'client' })) await writeFile(join(dir, rel), f.bytes);
    const e = await expectFlareCodeAsync(() => loadKit(dir), 'E_KIT_INVALID');
    expect(e.message).toContain('client.key');
  });

  it('mTLS: a server and a client from two kits complete the handshake; a kit of another project is refused', async () => {
    const serverKit = await loadKit(join(r.prodDir, 'server1'));
    const clientKit = await loadKit(join(r.prodDir, 'site-1'));
    const strangerKit = await loadKit(join(foreign.prodDir, 'site-1'));
    const server = createServer({ key: serverKit.privateKeyPem, cert: serverKit.certPem, ca: serverKit.rootCaPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' });
    server.on('secureConnection', (s: TLSSocket) => s.end('hello'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const dial = (kit: Kit) =>
      connect({ host: '127.0.0.1', port, servername: 'server1', key: kit.privateKeyPem, cert: kit.certPem, ca: clientKit.rootCaPem, minVersion: 'TLSv1.2' });
    try {
      const good = dial(clientKit);
      good.on('error', () => undefined);
      const serverSide = first(server, ['secureConnection', 'tlsClientError']);
      expect((await first(good, ['secureConnect', 'error'])).event).toBe('secureConnect');
      const accepted = await serverSide;
      expect(accepted.event).toBe('secureConnection');
      expect((accepted.args[0] as TLSSocket).getPeerCertificate().subject.CN).toBe('site-1');
      good.destroy();

      const bad = dial(strangerKit);
      bad.on('error', () => undefined);
      const refused = await first(server, ['secureConnection', 'tlsClientError']);
      expect(refused.event).toBe('tlsClientError');
      bad.destroy();

      // And the other way round: a client of this project refuses a server certificate of another project.
      const foreignServer = await loadKit(join(foreign.prodDir, 'server1'));
      const impostor = createServer({ key: foreignServer.privateKeyPem, cert: foreignServer.certPem });
      impostor.listen(0, '127.0.0.1');
      await once(impostor, 'listening');
      const s2 = connect({ host: '127.0.0.1', port: (impostor.address() as { port: number }).port, servername: 'server1', key: clientKit.privateKeyPem, cert: clientKit.certPem, ca: clientKit.rootCaPem });
      s2.on('error', () => undefined);
      const out = await first(s2, ['secureConnect', 'error']);
      expect(out.event).toBe('error');
      s2.destroy();
      impostor.close();
    } finally {
      server.close();
    }
  });
});
