// Site-specific authentication (issue #13 item 7): a site's local/authentication.json names its OIDC provider,
// and every job must carry a valid token for it. The provider here is a local issuer on loopback: tokens signed
// with jose, its JWKS served over real HTTPS with a certificate from a private CA (made with the openssl CLI),
// which the site trusts explicitly through `jwks.ca_file`.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, type Identity } from '@flare/core';
import { expectFlareCodeAsync, expectFlareCode } from '@flare/core/testing';
import { exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyReloadResult, SiteAuthenticator } from '@flare/policy';
import { ANY_SITE, attachAuthTokens, authenticateSubmitter, jobTokenFor, loadSiteAuthenticator, openSiteAuthentication, parseMetaJson, type JobDefinition } from '../src/index.js';

const ISSUER = 'https://idp.hospital-a.example/realms/fl';
const AUDIENCE = 'flare-site-1';
const alice: Identity = { name: 'alice@a.org', org: 'org_a', type: 'admin', role: 'lead' };
const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' });

let dir: string;
let local: string;
let server: Server;
let jwksUrl: string;

const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-site-oidc-'));
  local = join(dir, 'local');
  await mkdir(local);
  // A private CA and the identity provider's TLS certificate for 127.0.0.1.
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=hospital-a private CA', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'idp.key', '-out', 'idp.csr', '-subj', '/CN=127.0.0.1']);
  await writeFile(join(dir, 'idp.ext'), 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'idp.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'idp.ext', '-out', 'idp.crt']);
  await writeFile(join(local, 'idp-ca.pem'), await readFile(join(dir, 'ca.crt')));
  const keys = [{ ...(await exportJWK(signing.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }];
  server = createServer({ key: await readFile(join(dir, 'idp.key')), cert: await readFile(join(dir, 'idp.crt')) }, (req, res) => {
    if (req.url !== '/realms/fl/protocol/openid-connect/certs') res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  jwksUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}/realms/fl/protocol/openid-connect/certs`;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

const authFile = (oidc: Record<string, unknown>) => writeFile(join(local, 'authentication.json'), JSON.stringify({ format_version: '1.0', oidc }));
const siteConfig = () => ({ issuer: ISSUER, audience: AUDIENCE, jwks: { url: jwksUrl, ca_file: 'idp-ca.pem', timeout_s: 30 }, claims: { role: 'realm_access.roles' }, role_map: { 'fl-lead': 'lead' } });

function token(o: { key?: KeyObject; kid?: string; iss?: string; aud?: string; exp?: number | string; email?: string } = {}): Promise<string> {
  return new SignJWT({ email: o.email ?? alice.name, realm_access: { roles: ['fl-lead'] } })
    .setProtectedHeader({ alg: 'ES256', kid: o.kid ?? 'k1' })
    .setIssuedAt()
    .setIssuer(o.iss ?? ISSUER)
    .setAudience(o.aud ?? AUDIENCE)
    .setExpirationTime(o.exp ?? '5m')
    .sign(o.key ?? signing.privateKey);
}

const definition = (auth_tokens?: Record<string, string>): JobDefinition =>
  parseMetaJson(new TextEncoder().encode(JSON.stringify({ name: 'j', rounds: 1, min_clients: 1, deploy: ['site-1'], learner: { name: 'l' }, ...(auth_tokens === undefined ? {} : { auth_tokens }) }))).definition;

describe('local/authentication.json', () => {
  it('a site without the file requires no token', async () => {
    const empty = join(dir, 'no-local');
    await mkdir(empty);
    const authenticator = await loadSiteAuthenticator(empty);
    expect(authenticator).toBeUndefined();
    expect(await authenticateSubmitter(authenticator, { site: 'site-1', definition: definition(), submitter: alice })).toBeUndefined();
  });

  it('refuses a file that is not JSON, a field it does not know, an http JWKS URL and a missing CA file (E_POLICY_AUTHN_CONFIG, naming them)', async () => {
    await writeFile(join(local, 'authentication.json'), '{ "format_version": "1.0", ');
    expect((await expectFlareCodeAsync(loadSiteAuthenticator(local), 'E_POLICY_AUTHN_CONFIG')).message).toContain(join(local, 'authentication.json'));
    await authFile({ ...siteConfig(), audiance: 'typo' });
    expect((await expectFlareCodeAsync(loadSiteAuthenticator(local), 'E_POLICY_AUTHN_CONFIG')).message).toContain('audiance');
    await authFile({ ...siteConfig(), jwks: { url: jwksUrl.replace('https:', 'http:') } });
    expect((await expectFlareCodeAsync(loadSiteAuthenticator(local), 'E_POLICY_AUTHN_CONFIG')).message).toContain('https');
    await authFile({ ...siteConfig(), jwks: { url: jwksUrl, ca_file: 'nope.pem' } });
    expect((await expectFlareCodeAsync(loadSiteAuthenticator(local), 'E_POLICY_AUTHN_CONFIG')).message).toContain(join(local, 'nope.pem'));
  });
});

describe('a site that requires its own OIDC login', () => {
  it("accepts a job carrying the submitter's valid token, fetched keys over HTTPS from the CA the site trusts", async () => {
    await authFile(siteConfig());
    const authenticator = await loadSiteAuthenticator(local);
    const v = await authenticateSubmitter(authenticator, { site: 'site-1', definition: definition({ [ANY_SITE]: await token() }), submitter: alice });
    expect(v).toMatchObject({ ok: true, name: 'alice@a.org', role: 'lead' });
  });

  it('refuses a job without a token, and with an expired one, another audience, another issuer, an unknown key id, a key the provider never published (E_POLICY_AUTHN_TOKEN)', async () => {
    await authFile(siteConfig());
    const authenticator = await loadSiteAuthenticator(local);
    const check = async (t: string | undefined, reason: RegExp) => {
      const e = await expectFlareCodeAsync(authenticateSubmitter(authenticator, { site: 'site-1', definition: definition(t === undefined ? undefined : { [ANY_SITE]: t }), submitter: alice }), 'E_POLICY_AUTHN_TOKEN');
      expect(e.message).toMatch(reason);
      if (t !== undefined) expect(e.message).not.toContain(t);
    };
    await check(undefined, /no token was presented/);
    await check(await token({ exp: Math.floor(Date.now() / 1000) - 3600 }), /expired/);
    await check(await token({ aud: 'flare-site-2' }), /"aud" claim/);
    await check(await token({ iss: 'https://evil.example/realms/fl' }), /"iss" claim/);
    await check(await token({ kid: 'k2' }), /does not publish/);
    await check(await token({ key: stranger.privateKey }), /signature is invalid/);
  });

  it("refuses another user's token (E_POLICY_AUTHN_MISMATCH): the token must be the submitter's", async () => {
    await authFile(siteConfig());
    const authenticator = await loadSiteAuthenticator(local);
    await expectFlareCodeAsync(authenticateSubmitter(authenticator, { site: 'site-1', definition: definition({ [ANY_SITE]: await token({ email: 'mallory@a.org' }) }), submitter: alice }), 'E_POLICY_AUTHN_MISMATCH');
  });

  it('refuses when the provider cannot be reached over TLS the site trusts (E_POLICY_AUTHN_JWKS)', async () => {
    // No ca_file: the system store does not know the private CA.
    await authFile({ ...siteConfig(), jwks: { url: jwksUrl, timeout_s: 30 } });
    const authenticator = await loadSiteAuthenticator(local);
    await expectFlareCodeAsync(authenticateSubmitter(authenticator, { site: 'site-1', definition: definition({ [ANY_SITE]: await token() }), submitter: alice }), 'E_POLICY_AUTHN_JWKS');
  });
});

describe('local/authentication.json is re-read when it changes (issue #13)', () => {
  type Reload = PolicyReloadResult;
  /** A watched folder of its own, and a way to wait (bounded) for the reload a change causes. */
  async function watched(name: string, initial?: Record<string, unknown>) {
    const folder = join(dir, name);
    await mkdir(folder);
    await writeFile(join(folder, 'idp-ca.pem'), await readFile(join(local, 'idp-ca.pem')));
    const write = (oidc: Record<string, unknown>) => writeFile(join(folder, 'authentication.json'), JSON.stringify({ format_version: '1.0', oidc }));
    if (initial !== undefined) await write(initial);
    const warnings: string[] = [];
    const audited: string[] = [];
    const waiters: Array<{ until: (r: Reload) => boolean; resolve: (r: Reload) => void }> = [];
    const logger = { ...silentLogger, warn: (msg: string) => void warnings.push(msg) };
    const file = await openSiteAuthentication(folder, {
      logger,
      audit: (e) => void audited.push(e.action),
      onReload: (r) => {
        for (const w of waiters.splice(0)) if (w.until(r)) w.resolve(r);
        else waiters.push(w);
      },
    });
    const next = (until: (r: Reload) => boolean, what: string) =>
      new Promise<Reload>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no reload (${what}) within 60 s`)), 60_000);
        waiters.push({ until, resolve: (r) => (clearTimeout(timer), resolve(r)) });
      });
    return { folder, file, write, warnings, audited, next };
  }
  const login = (a: SiteAuthenticator | undefined, t: string) => authenticateSubmitter(a, { site: 'site-1', definition: definition({ [ANY_SITE]: t }), submitter: alice });

  it('a watching site takes a changed file without a restart: a token refused under the old issuer is accepted under the new', async () => {
    const w = await watched('reload-watch', { ...siteConfig(), issuer: 'https://old-idp.example/realms/fl' });
    try {
      w.file.watch();
      await expectFlareCodeAsync(login(w.file.current, await token()), 'E_POLICY_AUTHN_TOKEN');
      const changed = w.next((r) => r.changed, 'the new issuer');
      await w.write(siteConfig());
      expect(await changed).toMatchObject({ ok: true, changed: true, path: join(w.folder, 'authentication.json') });
      expect(await login(w.file.current, await token())).toMatchObject({ ok: true, name: alice.name });
      expect(w.audited).toEqual(['policy_loaded', 'policy_changed']);
    } finally {
      w.file.close();
    }
  }, 120_000);

  it('an invalid new file keeps the config in force and logs its code naming the file (E_POLICY_AUTHN_CONFIG)', async () => {
    const w = await watched('reload-invalid', siteConfig());
    try {
      const before = w.file.current;
      await writeFile(join(w.folder, 'authentication.json'), JSON.stringify({ format_version: '1.0', oidc: { ...siteConfig(), audiance: 'typo' } }));
      const r = await w.file.reload();
      expect(r.ok).toBe(false);
      expect(r.error?.code).toBe('E_POLICY_AUTHN_CONFIG');
      expect(r.error?.message).toContain(join(w.folder, 'authentication.json'));
      expect(w.file.current).toBe(before);
      expect(await login(w.file.current, await token())).toMatchObject({ ok: true });
      expect(w.warnings).toHaveLength(1);
      expect(w.warnings[0]).toMatch(/E_POLICY_AUTHN_CONFIG: .*authentication\.json: .*audiance/);
      expect(w.audited).toContain('policy_reload_failed');
      // Not JSON at all, and a CA file that does not exist: refused the same way.
      await writeFile(join(w.folder, 'authentication.json'), '{ "format_version": ');
      expect((await w.file.reload()).error?.code).toBe('E_POLICY_AUTHN_CONFIG');
      await w.write({ ...siteConfig(), jwks: { url: jwksUrl, ca_file: 'gone.pem' } });
      expect((await w.file.reload()).error?.message).toContain(join(w.folder, 'gone.pem'));
      expect(w.file.current).toBe(before);
    } finally {
      w.file.close();
    }
  });

  it('a file added later requires tokens from then on; removing it lifts the requirement, as a restart would', async () => {
    const w = await watched('reload-add-remove');
    try {
      expect(w.file.current).toBeUndefined();
      expect(await login(w.file.current, 'not.a.token')).toBeUndefined();
      await w.write(siteConfig());
      expect(await w.file.reload()).toMatchObject({ ok: true, changed: true });
      await expectFlareCodeAsync(login(w.file.current, 'not.a.token'), 'E_POLICY_AUTHN_TOKEN');
      await rm(join(w.folder, 'authentication.json'));
      expect(await w.file.reload()).toMatchObject({ ok: true, changed: true, path: undefined });
      expect(w.file.current).toBeUndefined();
    } finally {
      w.file.close();
    }
  });

  it('a site does not start with an invalid file (E_POLICY_AUTHN_CONFIG naming it)', async () => {
    const folder = join(dir, 'reload-bad-start');
    await mkdir(folder);
    await writeFile(join(folder, 'authentication.json'), JSON.stringify({ format_version: '1.0', oidc: { ...siteConfig(), jwks: { url: 'http://idp.example/certs' } } }));
    expect((await expectFlareCodeAsync(openSiteAuthentication(folder), 'E_POLICY_AUTHN_CONFIG')).message).toContain(join(folder, 'authentication.json'));
  });
});

describe('tokens in meta.json', () => {
  it("a site takes its own entry, else the '*' entry", () => {
    const d = definition({ '*': 'for.every.one', 'site-2': 'for.site.two' });
    expect(jobTokenFor(d, 'site-2')).toBe('for.site.two');
    expect(jobTokenFor(d, 'site-1')).toBe('for.every.one');
    expect(jobTokenFor(definition({ 'site-2': 'x.y.z' }), 'site-1')).toBeUndefined();
  });

  it('attachAuthTokens writes them into meta.json (what the admin then signs), keeping the other fields', () => {
    const meta = new TextEncoder().encode(JSON.stringify({ name: 'j', rounds: 1, min_clients: 1, deploy: ['site-1'], learner: { name: 'l' }, auth_tokens: { 'site-9': 'old.one.x' } }));
    const bundle = attachAuthTokens({ meta, files: new Map() }, new Map([['*', 'a.b.c']]));
    expect(parseMetaJson(bundle.meta).definition.auth_tokens).toEqual({ 'site-9': 'old.one.x', '*': 'a.b.c' });
    expect(attachAuthTokens({ meta, files: new Map() }, new Map()).meta).toBe(meta);
    expectFlareCode(() => attachAuthTokens({ meta, files: new Map() }, new Map([['*', 'a b']])), 'E_POLICY_AUTHN_TOKEN');
  });

  it('meta.json refuses a token keyed by something that is not a site name (E_RUNTIME_JOB_INVALID)', () => {
    expectFlareCode(() => definition({ '../x': 'a.b.c' }), 'E_RUNTIME_JOB_INVALID');
    expectFlareCode(() => definition({ '*': '' }), 'E_RUNTIME_JOB_INVALID');
  });
});
