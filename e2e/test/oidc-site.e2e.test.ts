// Site-specific authentication (issue #13 item 7) with real processes: site-1's own local/authentication.json
// requires a token from its identity provider (a local issuer on loopback: tokens signed with jose, its JWKS
// served over HTTPS with a certificate from a private CA that site-1 trusts explicitly); site-2 requires none.
// The admin gives the token to `flare admin submit` (--token-file, or $FLARE_OIDC_TOKEN); it travels in meta.json.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parseProject, provision } from '@flare/pki';
import { selectBackend } from '@flare/tfjs';
import { testProjectYaml } from '@flare/pki/testing';
import { exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flare, freePort, jobEnded, startFlare, stopAll, systemTool, tempDir, writeSpamJob, type JobRecord } from './support.js';

const SITES = ['site-1', 'site-2'];
const FEATURES = 64;
const ISSUER = 'https://idp.org-1.example/realms/fl';
const AUDIENCE = 'flare-site-1';
const ADMIN = 'alice@a.org';
const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' });

let root: string;
let serverWs: string;
let idp: Server;
const kits = new Map<string, string>();
const ended = (id: string): Promise<JobRecord> => jobEnded(serverWs, id, 300_000, 300);

function job(name: string, deploy: readonly string[]): Promise<string> {
  const definition = { name, rounds: 1, min_clients: deploy.length, round_timeout_s: 300, deploy, learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 1, batch_size: 64 } } };
  return writeSpamJob(join(root, 'jobs', name), definition, FEATURES);
}

/** A token from the local issuer; each option makes it wrong in one way. */
function token(o: { key?: KeyObject; kid?: string; iss?: string; aud?: string; exp?: number | string } = {}): Promise<string> {
  return new SignJWT({ email: ADMIN, realm_access: { roles: ['fl-lead'] } })
    .setProtectedHeader({ alg: 'ES256', kid: o.kid ?? 'idp-1' })
    .setIssuedAt()
    .setIssuer(o.iss ?? ISSUER)
    .setAudience(o.aud ?? AUDIENCE)
    .setExpirationTime(o.exp ?? '10m')
    .sign(o.key ?? signing.privateKey);
}

async function tokenFile(name: string, t: string): Promise<string> {
  const f = join(root, 'tokens', `${name}.jwt`);
  await mkdir(join(root, 'tokens'), { recursive: true });
  await writeFile(f, `${t}\n`, { mode: 0o600 });
  return f;
}

const submit = async (dir: string, extra: string[] = [], env: Record<string, string> = {}): Promise<string> => {
  const r = await flare(['admin', '--kit', kits.get(ADMIN)!, 'submit', ...extra, dir], 120_000, env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
};

beforeAll(async () => {
  const openssl = systemTool('openssl');
  if (openssl === undefined) throw new Error('openssl is not installed: apt-get install -y openssl');
  root = await tempDir('flare-oidc-e2e-');
  serverWs = join(root, 'server-ws');
  const port = await freePort();
  const yaml = testProjectYaml({ name: 'oidc_e2e', org: 'org_a', port, sites: SITES.map((s, i) => [s, `org_${i + 1}`] as const), admins: [[ADMIN, 'org_a', 'lead']] });
  const r = await provision(parseProject(yaml), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
  // The identity provider: a private CA, its TLS certificate for 127.0.0.1, and its JWKS over HTTPS.
  const pki = join(root, 'idp');
  await mkdir(pki);
  const ossl = (args: string[]) => execFileSync(openssl, args, { cwd: pki, stdio: ['ignore', 'pipe', 'pipe'] });
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=org-1 private CA', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'idp.key', '-out', 'idp.csr', '-subj', '/CN=127.0.0.1']);
  await writeFile(join(pki, 'idp.ext'), 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n');
  ossl(['x509', '-req', '-in', 'idp.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'idp.ext', '-out', 'idp.crt']);
  const keys = [{ ...(await exportJWK(signing.publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' }];
  idp = createServer({ key: await readFile(join(pki, 'idp.key')), cert: await readFile(join(pki, 'idp.crt')) }, (req, res) => {
    if (req.url !== '/realms/fl/protocol/openid-connect/certs') res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((r2) => idp.listen(0, '127.0.0.1', r2));
  const jwksUrl = `https://127.0.0.1:${(idp.address() as AddressInfo).port}/realms/fl/protocol/openid-connect/certs`;

  for (const [i, s] of SITES.entries()) {
    const ws = join(root, `${s}-ws`);
    await mkdir(ws, { recursive: true });
    await writeFile(join(ws, 'site.json'), JSON.stringify({ data: { site: i, sites: 2, features: FEATURES }, components: { allow: ['tfjs-spam'], byoc: false } }));
    await writeFile(join(kits.get(s)!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['tfjs-spam'], byoc: false }));
  }
  // site-1's own rule, in its own local/ folder; the provider's CA stays outside the kit (kit verification
  // accepts only the local policy files as unsigned files in it).
  await writeFile(
    join(kits.get('site-1')!, 'local', 'authentication.json'),
    JSON.stringify({ format_version: '1.0', oidc: { issuer: ISSUER, audience: AUDIENCE, jwks: { url: jwksUrl, ca_file: join(pki, 'ca.crt') }, claims: { role: 'realm_access.roles' }, role_map: { 'fl-lead': 'lead' } } }, null, 2),
  );
  await selectBackend({ prefer: 'cpu' });
  await startFlare(['server', '--kit', kits.get('localhost')!, '--workspace', serverWs], { ready: /listening on port/ });
  for (const s of SITES) await startFlare(['client', '--kit', kits.get(s)!, '--workspace', join(root, `${s}-ws`)]);
  // Both sites registered (a site that refused to start, e.g. over its authentication.json, fails here).
  const end = Date.now() + 180_000;
  for (;;) {
    const r = await flare(['admin', '--kit', kits.get(ADMIN)!, 'sites'], 120_000);
    if (SITES.every((s) => new RegExp(`^${s}\\s.*\\sconnected`, 'm').test(r.stdout))) break;
    if (Date.now() > end) throw new Error(`the sites did not all register in 180 s: ${r.stdout}${r.stderr}`);
    await new Promise((r2) => setTimeout(r2, 500));
  }
}, 360_000);

afterAll(async () => {
  await stopAll();
  if (idp !== undefined) await new Promise<void>((r) => idp.close(() => r()));
});

describe('a site that requires its own OIDC login (real processes, JWKS over HTTPS)', () => {
  it('refuses a job from an admin without a valid token: missing, expired, wrong audience, wrong issuer, unknown kid (E_POLICY_AUTHN_TOKEN)', async () => {
    const cases: Array<[string, string | undefined, RegExp]> = [
      ['missing', undefined, /no token was presented/],
      ['expired', await token({ exp: Math.floor(Date.now() / 1000) - 3600 }), /expired/],
      ['audience', await token({ aud: 'flare-site-2' }), /"aud" claim/],
      ['issuer', await token({ iss: 'https://evil.example/realms/fl' }), /"iss" claim/],
      ['kid', await token({ kid: 'idp-2' }), /does not publish/],
    ];
    // Each by its own `flare admin submit`; each refused by site-1 at deploy.
    const ids: string[] = [];
    for (const [name, t] of cases) ids.push(await submit(await job(`no-${name}`, ['site-1']), t === undefined ? [] : ['--token-file', await tokenFile(name, t)]));
    for (const [i, [name, , reason]] of cases.entries()) {
      const rec = await ended(ids[i]!);
      expect(rec.status, name).toBe('FAILED');
      expect(rec.refused['site-1'], name).toMatch(/^E_POLICY_AUTHN_TOKEN: /);
      expect(rec.refused['site-1'], name).toMatch(reason);
      expect(rec.error?.code, name).toBe('E_RUNTIME_DEPLOY_REFUSED');
    }
    // The admin sees why with the site's code.
    const st = await flare(['admin', '--kit', kits.get(ADMIN)!, 'status', ids[1]!], 120_000);
    expect(st.stdout).toContain('E_POLICY_AUTHN_TOKEN');
    const audit = await readFile(join(root, 'site-1-ws', 'audit.jsonl'), 'utf8');
    expect(audit.match(/"action":"deploy_refused"/g)?.length).toBe(cases.length);
    // A token never reaches the audit log.
    for (const [, t] of cases) if (t !== undefined) expect(audit).not.toContain(t);
  }, 600_000);

  it('accepts it with one: --token-file for site-1 alone, or $FLARE_OIDC_TOKEN for every site; site-2 requires none', async () => {
    const valid = await token();
    const a = await submit(await job('with-file', ['site-1', 'site-2']), ['--token-file', `site-1=${await tokenFile('valid', valid)}`]);
    const recA = await ended(a);
    expect(recA.status, JSON.stringify([recA.error, recA.refused])).toBe('FINISHED');
    expect([...recA.history[0]!.contributors].sort()).toEqual(SITES);
    const b = await submit(await job('with-env', ['site-1']), [], { FLARE_OIDC_TOKEN: valid });
    expect((await ended(b)).status).toBe('FINISHED');
    const audit = (await readFile(join(root, 'site-1-ws', 'audit.jsonl'), 'utf8')).split('\n').filter((l) => l.includes('"action":"submitter_authenticated"'));
    expect(audit).toHaveLength(2);
    expect(audit[0]).toContain(`token of ${ADMIN} (role lead) verified`);
    expect(audit.join('\n')).not.toContain(valid);
  }, 600_000);
});
