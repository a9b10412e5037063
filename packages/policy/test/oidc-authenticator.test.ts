import { expectFlareCodeAsync } from '@flare/core/testing';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exportJWK, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOidcAuthenticator, requireSiteAuthentication, type OidcAuthenticatorOptions, type SiteAuthVerdict } from '../src/index.js';
import { issue, makeCa, scratch, type TestCert } from './helpers.js';

// A KeyCloak-like identity provider: a JWKS served over real HTTPS by this test, with a TLS certificate issued
// by a private CA made with the openssl CLI (so the site must be told to trust that CA).
const tmp = scratch('flare-oidc-');
const ISSUER = 'https://kc.hospital.example/realms/fl';
const AUDIENCE = 'flare-site-a';
let tlsCa: TestCert;
let server: Server;
let jwksUrl: string;
let requests = 0;
let published: JWK[] = [];
let serveStatus = 200;

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rotated = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 });

const jwk = async (key: KeyObject, kid: string, alg: string): Promise<JWK> => ({ ...(await exportJWK(key)), kid, alg, use: 'sig' });

beforeAll(async () => {
  tlsCa = makeCa(tmp.dir, 'hospital-ca');
  const tls = issue(tmp.dir, tlsCa, 'kc', { cn: '127.0.0.1', ext: ['basicConstraints=critical,CA:FALSE', 'extendedKeyUsage=serverAuth', 'subjectAltName=IP:127.0.0.1'] });
  published = [await jwk(rsa.publicKey, 'rsa-1', 'RS256'), await jwk(ec.publicKey, 'ec-1', 'ES256')];
  server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    requests++;
    if (req.url !== '/certs') res.writeHead(404).end();
    else res.writeHead(serveStatus, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: published }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  jwksUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}/certs`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  tmp.cleanup();
});

const token = (claims: Record<string, unknown>, { key = rsa.privateKey, kid = 'rsa-1', alg = 'RS256', exp = '5m' as string | number, iss = ISSUER, aud = AUDIENCE as string | string[] } = {}) => {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg, kid }).setIssuedAt().setIssuer(iss).setAudience(aud);
  if (exp !== 0) jwt = jwt.setExpirationTime(exp);
  return jwt.sign(key);
};
const keycloakClaims = { email: 'alice@a.org', org: 'org_a', realm_access: { roles: ['offline_access', 'fl-lead', 'fl-member'] } };
const options = (extra: Partial<OidcAuthenticatorOptions> = {}): OidcAuthenticatorOptions => ({
  issuer: ISSUER,
  audience: AUDIENCE,
  jwks: { url: jwksUrl, ca: tlsCa.cert, cooldownMs: 0 },
  claims: { role: 'realm_access.roles', org: 'org' },
  roleMap: new Map([['fl-lead', 'lead'], ['fl-member', 'member']]),
  ...extra,
});
const refused = (v: SiteAuthVerdict) => (v.ok ? 'accepted' : v.code);
const cert = { name: 'alice@a.org', org: 'org_a' };

describe('OIDC site authenticator', () => {
  it('accepts a KeyCloak-style token from a JWKS served over HTTPS, mapping claims to role and org', async () => {
    const auth = await createOidcAuthenticator(options({ name: 'keycloak' }));
    const v = await auth.authenticate({ credential: await token(keycloakClaims), user: cert });
    expect(v).toMatchObject({ ok: true, authenticator: 'keycloak', name: 'alice@a.org', role: 'lead', org: 'org_a' });
    if (v.ok) {
      expect(v.claims['email']).toBe('alice@a.org');
      expect(v.expiresAt).toBeGreaterThan(Date.now());
    }
    // An ES256 key from the same JWKS works too.
    expect((await auth.authenticate({ credential: await token(keycloakClaims, { key: ec.privateKey, kid: 'ec-1', alg: 'ES256' }), user: cert })).ok).toBe(true);
  });

  it('the role map is ordered: the first mapped role the token carries decides', async () => {
    const auth = await createOidcAuthenticator(options({ roleMap: { 'fl-member': 'member', 'fl-lead': 'lead' } }));
    expect(await auth.authenticate({ credential: await token(keycloakClaims), user: cert })).toMatchObject({ ok: true, role: 'member' });
  });

  it('without a role map the role claim must hold exactly one role; the org may come from the certificate', async () => {
    const auth = await createOidcAuthenticator({ issuer: ISSUER, audience: [AUDIENCE, 'other'], jwks: { url: jwksUrl, ca: tlsCa.cert } });
    expect(await auth.authenticate({ credential: await token({ email: 'alice@a.org', role: 'lead' }), user: cert })).toMatchObject({ ok: true, role: 'lead', org: 'org_a' });
    expect(refused(await auth.authenticate({ credential: await token({ email: 'alice@a.org', role: ['lead', 'member'] }), user: cert }))).toBe('E_POLICY_AUTHN_CLAIMS');
  });

  describe('refusals', () => {
    const cases: Array<[string, () => Promise<string>, Partial<OidcAuthenticatorOptions>, string]> = [
      ['an expired token', () => token(keycloakClaims, { exp: Math.floor(Date.now() / 1000) - 120 }), {}, 'E_POLICY_AUTHN_TOKEN'],
      ['another issuer', () => token(keycloakClaims, { iss: 'https://evil.example/realms/fl' }), {}, 'E_POLICY_AUTHN_TOKEN'],
      ['another audience', () => token(keycloakClaims, { aud: 'flare-site-b' }), {}, 'E_POLICY_AUTHN_TOKEN'],
      ['a signature by a key the provider does not publish (same kid)', () => token(keycloakClaims, { key: attacker.privateKey }), {}, 'E_POLICY_AUTHN_TOKEN'],
      ['an unknown key id', () => token(keycloakClaims, { key: attacker.privateKey, kid: 'nope' }), {}, 'E_POLICY_AUTHN_TOKEN'],
      ['an HMAC token', () => new SignJWT(keycloakClaims).setProtectedHeader({ alg: 'HS256' }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(new Uint8Array(32)), {}, 'E_POLICY_AUTHN_TOKEN'],
      ['an unsigned (alg none) token', async () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ ...keycloakClaims, iss: ISSUER, aud: AUDIENCE, exp: 4e9 })).toString('base64url')}.`, {}, 'E_POLICY_AUTHN_TOKEN'],
      ['a token without exp', () => token(keycloakClaims, { exp: 0 }), {}, 'E_POLICY_AUTHN_TOKEN'],
      ['garbage', async () => 'not.a.jwt', {}, 'E_POLICY_AUTHN_TOKEN'],
      ['an empty credential', async () => '', {}, 'E_POLICY_AUTHN_TOKEN'],
      ['an oversized credential', async () => 'a'.repeat(20_000), {}, 'E_POLICY_AUTHN_TOKEN'],
      ['a missing required claim', () => token(keycloakClaims), { requiredClaims: ['email_verified'] }, 'E_POLICY_AUTHN_CLAIMS'],
      ['no mapped role', () => token({ ...keycloakClaims, realm_access: { roles: ['offline_access'] } }), {}, 'E_POLICY_AUTHN_CLAIMS'],
      ['no name claim', () => token({ org: 'org_a', realm_access: { roles: ['fl-lead'] } }), {}, 'E_POLICY_AUTHN_CLAIMS'],
      ['no org claim when one is mapped', () => token({ email: 'alice@a.org', realm_access: { roles: ['fl-lead'] } }), {}, 'E_POLICY_AUTHN_CLAIMS'],
      ['a token of another user than the certificate', () => token({ ...keycloakClaims, email: 'mallory@a.org' }), {}, 'E_POLICY_AUTHN_MISMATCH'],
      ['a token of another org than the certificate', () => token({ ...keycloakClaims, org: 'org_b' }), {}, 'E_POLICY_AUTHN_MISMATCH'],
      ['a token too old for maxTokenAgeSec', () => new SignJWT(keycloakClaims).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).setIssuedAt(Math.floor(Date.now() / 1000) - 3600).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(rsa.privateKey), { maxTokenAgeSec: 600 }, 'E_POLICY_AUTHN_TOKEN'],
    ];
    for (const [title, make, extra, code] of cases) {
      it(`refuses ${title} (${code})`, async () => {
        const auth = await createOidcAuthenticator(options(extra));
        const v = await auth.authenticate({ credential: await make(), user: cert });
        expect(refused(v)).toBe(code);
        if (!v.ok) expect(v.reason).not.toMatch(/eyJ/);
      });
    }
  });

  it('honours the clock tolerance around exp', async () => {
    const exp = Math.floor(Date.now() / 1000) - 20;
    const strict = await createOidcAuthenticator(options({ clockToleranceSec: 0 }));
    const lenient = await createOidcAuthenticator(options({ clockToleranceSec: 60 }));
    const t = await token(keycloakClaims, { exp });
    expect(refused(await strict.authenticate({ credential: t, user: cert }))).toBe('E_POLICY_AUTHN_TOKEN');
    expect((await lenient.authenticate({ credential: t, user: cert })).ok).toBe(true);
  });

  it('follows key rotation: an unknown kid refetches the JWKS', async () => {
    const auth = await createOidcAuthenticator(options());
    expect((await auth.authenticate({ credential: await token(keycloakClaims), user: cert })).ok).toBe(true);
    const before = requests;
    published = [...published, await jwk(rotated.publicKey, 'ec-2', 'ES256')];
    const v = await auth.authenticate({ credential: await token(keycloakClaims, { key: rotated.privateKey, kid: 'ec-2', alg: 'ES256' }), user: cert });
    expect(v.ok).toBe(true);
    expect(requests).toBeGreaterThan(before);
  });

  it('reads the JWKS from a file or a value for air-gapped sites', async () => {
    const file = join(tmp.dir, 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: published }));
    for (const jwks of [{ file }, { keys: { keys: published } }]) {
      const auth = await createOidcAuthenticator(options({ jwks }));
      expect((await auth.authenticate({ credential: await token(keycloakClaims), user: cert })).ok).toBe(true);
    }
  });

  it('reports an unreachable, untrusted or failing JWKS endpoint as E_POLICY_AUTHN_JWKS', async () => {
    const untrusted = await createOidcAuthenticator(options({ jwks: { url: jwksUrl } }));
    expect(refused(await untrusted.authenticate({ credential: await token(keycloakClaims), user: cert }))).toBe('E_POLICY_AUTHN_JWKS');
    serveStatus = 500;
    try {
      const failing = await createOidcAuthenticator(options());
      expect(refused(await failing.authenticate({ credential: await token(keycloakClaims), user: cert }))).toBe('E_POLICY_AUTHN_JWKS');
    } finally {
      serveStatus = 200;
    }
    const closed = await createOidcAuthenticator(options({ jwks: { url: 'https://127.0.0.1:1/certs', ca: tlsCa.cert, timeoutMs: 2000 } }));
    expect(refused(await closed.authenticate({ credential: await token(keycloakClaims), user: cert }))).toBe('E_POLICY_AUTHN_JWKS');
  });

  it('refuses bad configuration at creation (E_POLICY_AUTHN_CONFIG / E_POLICY_AUTHN_JWKS)', async () => {
    await expectFlareCodeAsync(() => createOidcAuthenticator(options({ jwks: { url: jwksUrl.replace('https:', 'http:') } })), 'E_POLICY_AUTHN_CONFIG');
    await expectFlareCodeAsync(() => createOidcAuthenticator(options({ jwks: { url: 'not a url' } })), 'E_POLICY_AUTHN_CONFIG');
    await expectFlareCodeAsync(() => createOidcAuthenticator(options({ algorithms: ['RS256', 'HS256'] })), 'E_POLICY_AUTHN_CONFIG');
    await expectFlareCodeAsync(() => createOidcAuthenticator(options({ claims: { role: 'a..b' } })), 'E_POLICY_AUTHN_CONFIG');
    await expectFlareCodeAsync(() => createOidcAuthenticator(options({ issuer: '' })), 'E_POLICY_AUTHN_CONFIG');
    await expectFlareCodeAsync(() => createOidcAuthenticator(options({ jwks: { file: join(tmp.dir, 'missing.json') } })), 'E_POLICY_AUTHN_JWKS');
    await expectFlareCodeAsync(() => createOidcAuthenticator(options({ jwks: { keys: { keys: [] } } })), 'E_POLICY_AUTHN_JWKS');
  });

  it('requireSiteAuthentication returns the accepting verdict or throws the refusal\'s code', async () => {
    const auth = await createOidcAuthenticator(options());
    expect((await requireSiteAuthentication(auth, { credential: await token(keycloakClaims), user: cert })).role).toBe('lead');
    await expectFlareCodeAsync(async () => requireSiteAuthentication(auth, { credential: await token({ ...keycloakClaims, email: 'x@a.org' }), user: cert }), 'E_POLICY_AUTHN_MISMATCH');
  });
});
