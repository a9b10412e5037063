// Proxies a real deployment puts between a site and the server:
// - a TLS-terminating reverse proxy (nginx from Debian: `apt-get install -y nginx`) in front of a clear server,
//   with the client trusting the proxy's CA (FLARE's custom_ca_cert); the session still authenticates every
//   message end to end, so the proxy can read but never forge or replay;
// - an HTTP CONNECT forward proxy (a small node server started here) tunnelling mtls end to end.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClientAuth, createServerAuth, type Session } from '@flare/auth';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { clientOptionsFromKit, dial, listen, serverOptionsFromKit, type ServerEndpoint } from '@flare/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loopbackProject, requireTool, systemTool } from './support.js';

const PROJECT = loopbackProject('proxied');

let dir: string;
let serverKit: Kit;
let clientKit: Kit;
let proxyCaPem: string;
const cleanup: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-e2e-proxy-'));
  const r = await provision(parseProject(PROJECT), { workspace: dir });
  const kitDir = (n: string): string => r.kits.find((k) => k.name === n)!.dir;
  [serverKit, clientKit] = await Promise.all([loadKit(kitDir('server1')), loadKit(kitDir('site-1'))]);
  // The proxy's own CA and certificate, unrelated to the project root (what custom_ca_cert points to).
  if (systemTool('openssl') === undefined) return; // the nginx test skips itself with the reason
  const ossl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'proxy-ca.key', '-out', 'proxy-ca.pem', '-days', '2', '-subj', '/CN=proxy-ca',
    '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign');
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'proxy.key', '-out', 'proxy.csr', '-subj', '/CN=localhost');
  await writeFile(join(dir, 'proxy.ext'), 'basicConstraints=CA:false\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ossl('x509', '-req', '-in', 'proxy.csr', '-CA', 'proxy-ca.pem', '-CAkey', 'proxy-ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'proxy.ext', '-out', 'proxy.crt');
  proxyCaPem = await readFile(join(dir, 'proxy-ca.pem'), 'utf8');
});

afterAll(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  await rm(dir, { recursive: true, force: true });
});

async function authServer(security: 'clear' | 'mtls'): Promise<ServerEndpoint<Session>> {
  const auth = createServerAuth({ kit: serverKit });
  const server = await listen<Session>({ ...serverOptionsFromKit({ ...serverKit, connectionSecurity: security }), host: '127.0.0.1', port: 0, authenticate: (c) => auth.accept(c) });
  server.on('connection', (c) => c.on('message', (m) => void c.send({ echo: m.header['text'] ?? null, from: c.auth.peer.name }, m.payload).catch(() => undefined)));
  cleanup.push(() => server.close());
  return server;
}

async function freePort(): Promise<number> {
  const s = createNetServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

describe('behind nginx terminating TLS (custom_ca_cert)', () => {
  it('a tls client trusting the proxy CA logs in to a clear server through nginx and exchanges authenticated messages', async (ctx) => {
    requireTool(ctx, 'openssl');
    const NGINX = requireTool(ctx, 'nginx');
    const backend = await authServer('clear');
    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    await writeFile(
      conf,
      `worker_processes 1;
daemon off;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${dir}/proxy.crt;
    ssl_certificate_key ${dir}/proxy.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://127.0.0.1:${backend.port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_buffering off;
      proxy_read_timeout 300s;
    }
  }
}
`,
    );
    const nginx: ChildProcess = spawn(NGINX, ['-c', conf, '-p', dir, '-e', join(dir, 'nginx-stderr.log')], { stdio: 'ignore' });
    cleanup.push(async () => {
      if (nginx.exitCode === null) {
        const exited = once(nginx, 'exit');
        nginx.kill('SIGQUIT');
        await exited;
      }
    });
    // nginx is ready when its port accepts connections (bounded: 50 tries, 100 ms apart).
    for (let i = 0; ; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = netConnect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      if (i >= 50 || nginx.exitCode !== null) throw new Error(`nginx did not start: ${await readFile(join(dir, 'nginx-error.log'), 'utf8').catch(() => '')}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const kit: Kit = { ...clientKit, connectionSecurity: 'tls', customCaPem: proxyCaPem };
    const auth = createClientAuth({ kit, renewAt: false });
    const conn = await dial<Session>({ ...clientOptionsFromKit(kit), targets: [{ host: 'localhost', port }], authenticate: (c) => auth.login(c) });
    cleanup.push(() => conn.close());
    expect(conn.auth.peer.name).toBe('server1');
    // TLS ends at the proxy: the session does not bind to it, and still authenticates every message.
    expect(conn.auth.channelBound).toBe(false);
    const reply = conn.receive();
    await conn.send({ text: 'through nginx' }, new Uint8Array(3 * 1024 * 1024).fill(7));
    const m = await reply;
    expect(m.header).toMatchObject({ echo: 'through nginx', from: 'site-1' });
    expect(m.payload.length).toBe(3 * 1024 * 1024);

    // A client that trusts only the project root refuses the proxy's certificate.
    const refused = await dial({ ...clientOptionsFromKit({ ...clientKit, connectionSecurity: 'tls' }), targets: [{ host: 'localhost', port }] }).catch((e: { code?: string }) => e);
    expect((refused as { code?: string }).code).toBe('E_TRANSPORT_TLS');
  });
});

describe('through an HTTP CONNECT proxy', () => {
  it('mtls and login run end to end through the tunnel', async () => {
    const server = await authServer('mtls');
    const tunnels: string[] = [];
    const sockets = new Set<Socket>();
    const proxy = createHttpServer((_q, res) => res.writeHead(405).end());
    proxy.on('connect', (req, client: Socket) => {
      tunnels.push(req.url ?? '');
      const i = req.url!.lastIndexOf(':');
      const upstream = netConnect({ host: req.url!.slice(0, i), port: Number(req.url!.slice(i + 1)) }, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.pipe(client).pipe(upstream);
      });
      sockets.add(client).add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    cleanup.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => proxy.close(r));
    });
    const auth = createClientAuth({ kit: clientKit, renewAt: false });
    const conn = await dial<Session>({
      ...clientOptionsFromKit(clientKit),
      targets: [{ host: '127.0.0.1', port: server.port }],
      proxy: { host: '127.0.0.1', port: (proxy.address() as { port: number }).port },
      authenticate: (c) => auth.login(c),
    });
    cleanup.push(() => conn.close());
    expect(tunnels).toEqual([`127.0.0.1:${server.port}`]);
    // TLS is end to end through a CONNECT tunnel, so the session is bound to it.
    expect(conn.auth.channelBound).toBe(true);
    const reply = conn.receive();
    await conn.send({ text: 'tunnelled' });
    expect((await reply).header).toMatchObject({ echo: 'tunnelled', from: 'site-1' });
  });
});
