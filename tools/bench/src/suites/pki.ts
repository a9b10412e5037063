import { once } from 'node:events';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createCrl, createRootCa, issueCertificate, loadKit, parseProject, provision, verifyCertificate, type KeyType } from '@flare/pki';
import type { Row, Suite } from '../harness.js';

// Provisioning N clients (default 1,000; FLARE_BENCH_PKI_CLIENTS to change) for each key type, and the cost of
// a full mutual-TLS handshake between two kits of each key type, on loopback. ECDSA P-256 against RSA-2048 in
// the same run: the figures behind @flare/pki's default key type (docs/key-types.md). Then the CPU cost of
// verifyCertificate, which every login runs once on each side.
const CLIENTS = Number(process.env['FLARE_BENCH_PKI_CLIENTS'] ?? 1000);
const HANDSHAKES = 300;
const HANDSHAKE_BUDGET_MS = 30_000;

function project(clients: number): string {
  const lines = ['api_version: 3', 'name: bench', 'participants:', '  - name: server1', '    type: server', '    org: bench', '  - name: admin@bench.org', '    type: admin', '    org: bench', '    role: project_admin'];
  for (let i = 0; i < clients; i++) lines.push(`  - name: site-${i}`, '    type: client', `    org: org${i % 10}`);
  return lines.join('\n') + '\n';
}

async function du(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    bytes += (await stat(join(e.parentPath, e.name))).size;
    files++;
  }
  return { bytes, files };
}

async function provisionFigures(keyType: KeyType): Promise<{ seconds: number; bytes: number; files: number }> {
  const ws = await mkdtemp(join(tmpdir(), `flare-bench-pki-${keyType}-`));
  try {
    const p = parseProject(project(CLIENTS));
    const t0 = performance.now();
    const r = await provision(p, { workspace: ws, keyType });
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, ...(await du(r.prodDir)) };
  } finally {
    await rm(ws, { recursive: true, force: true });
  }
}

interface Endpoint {
  readonly one: () => Promise<void>;
  readonly close: () => void;
}

/** A server from one kit and a dialer from another (same project), for full mTLS handshakes on loopback. */
async function endpoint(keyType: KeyType, ws: string): Promise<Endpoint> {
  const r = await provision(parseProject(project(1)), { workspace: join(ws, keyType), keyType });
  const s = await loadKit(join(r.prodDir, 'server1'));
  const c = await loadKit(join(r.prodDir, 'site-0'));
  const server = createServer({ key: s.privateKeyPem, cert: s.certPem, ca: s.rootCaPem, requestCert: true, rejectUnauthorized: true });
  server.on('secureConnection', (sock: TLSSocket) => sock.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  // No session is passed: every connection is a full handshake (no resumption).
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const sock = connect({ host: '127.0.0.1', port, servername: 'server1', key: c.privateKeyPem, cert: c.certPem, ca: c.rootCaPem });
      sock.once('secureConnect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', reject);
    });
  return { one, close: () => server.close() };
}

/**
 * Handshakes per second for both key types, measured in alternating batches of 20 so that load from other
 * processes on this shared machine falls on both equally (bounded by count and time).
 */
async function handshakeRates(): Promise<Record<KeyType, number>> {
  const ws = await mkdtemp(join(tmpdir(), 'flare-bench-tls-'));
  try {
    const ends = { 'ecdsa-p256': await endpoint('ecdsa-p256', ws), 'rsa-2048': await endpoint('rsa-2048', ws) };
    const spent = { 'ecdsa-p256': 0, 'rsa-2048': 0 };
    const count = { 'ecdsa-p256': 0, 'rsa-2048': 0 };
    for (const k of ['ecdsa-p256', 'rsa-2048'] as const) for (let i = 0; i < 10; i++) await ends[k].one();
    const t0 = performance.now();
    while (count['rsa-2048'] < HANDSHAKES && performance.now() - t0 < HANDSHAKE_BUDGET_MS) {
      for (const k of ['ecdsa-p256', 'rsa-2048'] as const) {
        const t = performance.now();
        for (let i = 0; i < 20; i++) await ends[k].one();
        spent[k] += performance.now() - t;
        count[k] += 20;
      }
    }
    for (const e of Object.values(ends)) e.close();
    return { 'ecdsa-p256': count['ecdsa-p256'] / (spent['ecdsa-p256'] / 1000), 'rsa-2048': count['rsa-2048'] / (spent['rsa-2048'] / 1000) };
  } finally {
    await rm(ws, { recursive: true, force: true });
  }
}

const VERIFY_LEAVES = 300;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * CPU time of verifyCertificate per call (µs), as a login runs it: root and CRL as the kit holds them, the
 * peer's certificate either one not seen before or one seen before (a site that reconnects). The floor it is
 * compared with is what node:crypto alone needs to parse a certificate and check its signature.
 */
async function verifyFigures(keyType: KeyType): Promise<{ fresh: number; repeat: number; floor: number }> {
  const now = new Date();
  const root = await createRootCa({ commonName: 'bench', keyType, now });
  const leaves: string[] = [];
  for (let i = 0; i < VERIFY_LEAVES; i++) {
    const publicKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
    leaves.push(await issueCertificate({ issuer: root, subject: { name: `site-${i}`, org: 'bench', type: 'client' }, publicKey, now }));
  }
  const crl = await createCrl({ issuer: root, entries: [{ serial: '0abc', date: now }], crlNumber: 1, now });
  const opts = { rootCaPem: root.certPem, crl, expectedType: 'client' as const };
  const cpu = (fn: () => void, n: number): number => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) fn();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / n;
  };
  const rootKey = new X509Certificate(root.certPem).publicKey;
  const fresh: number[] = [];
  const repeat: number[] = [];
  const floor: number[] = [];
  // Rounds of 20 fresh leaves each, interleaved with the repeat and floor measurements (shared machine).
  for (let r = 0; r < VERIFY_LEAVES / 20; r++) {
    const batch = leaves.slice(r * 20, r * 20 + 20);
    let k = 0;
    fresh.push(cpu(() => verifyCertificate(batch[k++]!, opts), batch.length));
    repeat.push(cpu(() => verifyCertificate(leaves[0]!, opts), 200));
    let j = 0;
    floor.push(cpu(() => new X509Certificate(batch[j++ % batch.length]!).verify(rootKey), batch.length));
  }
  return { fresh: median(fresh), repeat: median(repeat), floor: median(floor) };
}

export const suite: Suite = {
  name: 'pki',
  description: `provisioning ${CLIENTS} clients + server + admin (time, bytes) and full mTLS handshakes between two kits, ECDSA P-256 vs RSA-2048 in the same run`,
  async run(): Promise<Row[]> {
    const verify = { 'ecdsa-p256': await verifyFigures('ecdsa-p256'), 'rsa-2048': await verifyFigures('rsa-2048') };
    const ec = await provisionFigures('ecdsa-p256');
    const rsa = await provisionFigures('rsa-2048');
    const tls = await handshakeRates();
    const ecTls = tls['ecdsa-p256'];
    const rsaTls = tls['rsa-2048'];
    const kits = CLIENTS + 2;
    return [
      { label: `provision ${CLIENTS} clients, ecdsa-p256`, value: ec.seconds, unit: 's', baseline: { label: 'rsa-2048', value: rsa.seconds }, higherIsBetter: false, aim: '< 60 s' },
      { label: `provision per kit, ecdsa-p256`, value: (ec.seconds * 1000) / kits, unit: 'ms', baseline: { label: 'rsa-2048', value: (rsa.seconds * 1000) / kits }, higherIsBetter: false },
      { label: `kit bytes on disk (${kits} kits, ${ec.files} files), ecdsa-p256`, value: ec.bytes / 1e6, unit: 'MB', baseline: { label: 'rsa-2048', value: rsa.bytes / 1e6 }, higherIsBetter: false },
      { label: 'full mTLS handshakes between two kits, ecdsa-p256', value: ecTls, unit: 'handshakes/s', baseline: { label: 'rsa-2048', value: rsaTls }, higherIsBetter: true },
      ...(['ecdsa-p256', 'rsa-2048'] as const).flatMap((k) => [
        { label: `verifyCertificate with CRL, a certificate not seen before, ${k} root (CPU)`, value: verify[k].fresh, unit: 'µs', baseline: { label: 'node:crypto parse + signature check alone', value: verify[k].floor }, higherIsBetter: false },
        { label: `verifyCertificate with CRL, the same certificate again, ${k} root (CPU)`, value: verify[k].repeat, unit: 'µs', baseline: { label: 'node:crypto parse + signature check alone', value: verify[k].floor }, higherIsBetter: false },
      ]),
    ];
  },
};
