import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { PolicyError, type JsonValue, type PolicyErrorCode } from '@flare/core';
import { z } from 'zod';
import { httpsFetch } from './https-fetch.js';
import { policyJson } from './json-input.js';
import { normalizeName } from './normalize.js';
import type { SiteAuthenticator, SiteAuthInput, SiteAuthVerdict } from './site-authenticator.js';

/** Where the identity provider's signing keys come from. */
export type JwksSource =
  | {
      /** The provider's JWKS endpoint (KeyCloak: `<issuer>/protocol/openid-connect/certs`); https only. */
      readonly url: string;
      /** CA certificate(s) (PEM) to trust for this endpoint instead of the system store, e.g. a hospital's private CA. */
      readonly ca?: string | readonly string[];
      /** Request timeout, ms (default 5000). */
      readonly timeoutMs?: number;
      /** How long fetched keys are used before refetching, ms (default 600000). */
      readonly cacheMaxAgeMs?: number;
      /** Least time between refetches on an unknown key id, ms (default 30000). */
      readonly cooldownMs?: number;
    }
  | { /** A JWKS JSON file (for air-gapped sites). */ readonly file: string }
  | { /** A JWKS given as a value. */ readonly keys: unknown };

/** Options of {@link createOidcAuthenticator}. */
export interface OidcAuthenticatorOptions {
  /** Authenticator name in verdicts and audit (default `oidc`). */
  readonly name?: string;
  /** Expected `iss`, exactly. */
  readonly issuer: string;
  /** Expected `aud` (one of them). */
  readonly audience: string | readonly string[];
  readonly jwks: JwksSource;
  /** Accepted signature algorithms (default RS256, PS256, ES256, EdDSA). HMAC and `none` are never accepted. */
  readonly algorithms?: readonly string[];
  /** Clock skew tolerated on exp/nbf/iat, seconds (default 30). */
  readonly clockToleranceSec?: number;
  /** Oldest acceptable `iat`, seconds; unset: no limit beyond `exp`. */
  readonly maxTokenAgeSec?: number;
  /** Claims that must be present (beyond iss, aud, exp which are always required). */
  readonly requiredClaims?: readonly string[];
  /**
   * Which claims carry the user name, role and org, as dotted paths (KeyCloak roles: `realm_access.roles`).
   * Defaults: name `email`, role `role`, org none (the org then comes from the certificate).
   */
  readonly claims?: { readonly name?: string; readonly role?: string; readonly org?: string };
  /**
   * Provider role → FLARE role, in priority order: the first provider role the token carries decides. Without
   * a map the role claim must hold exactly one role, used as is.
   */
  readonly roleMap?: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** Require the token's user (and org, when mapped) to be the certificate's (default true). */
  readonly bindToCertificate?: boolean;
  /** Clock for tests. */
  readonly now?: () => Date;
}

const DEFAULT_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const;
const ASYMMETRIC = /^(RS|PS|ES)(256|384|512)$|^ES256K$|^EdDSA$|^Ed25519$/;
/** Longest credential looked at: bounds work on hostile input before any parsing. */
const MAX_TOKEN_CHARS = 16 * 1024;

const jwksSchema = z.object({ keys: z.array(z.looseObject({ kty: z.string() })).min(1).max(100) });
const claimPath = z.string().regex(/^[A-Za-z0-9_:\-/]+(\.[A-Za-z0-9_:\-/]+)*$/);
const optionsSchema = z.object({
  name: z.string().min(1).max(64).optional(),
  issuer: z.string().min(1),
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  clockToleranceSec: z.number().min(0).max(3600).optional(),
  maxTokenAgeSec: z.number().positive().optional(),
  requiredClaims: z.array(z.string().min(1)).optional(),
  claims: z.object({ name: claimPath.optional(), role: claimPath.optional(), org: claimPath.optional() }).optional(),
});

/** A failure to obtain the provider's keys, as opposed to a problem with the token. */
class JwksUnavailable extends Error {
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : 'JWKS unavailable', { cause });
  }
}

const config = (message: string, cause?: unknown): never => {
  throw new PolicyError('E_POLICY_AUTHN_CONFIG', message, cause === undefined ? undefined : { cause });
};

function readClaim(payload: JWTPayload, path: string): unknown {
  let v: unknown = payload;
  for (const key of path.split('.')) {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, key)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

async function keySource(jwks: JwksSource): Promise<JWTVerifyGetKey> {
  if ('url' in jwks) {
    let url: URL;
    try {
      url = new URL(jwks.url);
    } catch (cause) {
      return config(`JWKS url ${JSON.stringify(jwks.url)} is not a URL`, cause);
    }
    // Keys fetched over plain http could be swapped by anyone on the path, and with them every login.
    if (url.protocol !== 'https:') config(`JWKS url must use https, got ${url.protocol}`);
    const remote = createRemoteJWKSet(url, {
      timeoutDuration: jwks.timeoutMs ?? 5000,
      cooldownDuration: jwks.cooldownMs ?? 30_000,
      cacheMaxAge: jwks.cacheMaxAgeMs ?? 600_000,
      [customFetch]: httpsFetch(jwks.ca),
    });
    // Tell a provider outage (network, TLS, HTTP status, bad JSON) apart from a bad token: only "no such key",
    // "several keys" and "algorithm not allowed" are about the token.
    return async (header, token) => {
      try {
        return await remote(header, token);
      } catch (e) {
        if (e instanceof errors.JWKSNoMatchingKey || e instanceof errors.JWKSMultipleMatchingKeys || e instanceof errors.JOSEAlgNotAllowed) throw e;
        throw new JwksUnavailable(e);
      }
    };
  }
  let value: unknown;
  if ('file' in jwks) {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(jwks.file);
    } catch (cause) {
      throw new PolicyError('E_POLICY_AUTHN_JWKS', `cannot read JWKS file ${JSON.stringify(jwks.file)}`, { cause });
    }
    try {
      value = policyJson(bytes, 'E_POLICY_AUTHN_JWKS', `JWKS file ${JSON.stringify(jwks.file)}`);
    } catch (cause) {
      throw new PolicyError('E_POLICY_AUTHN_JWKS', `JWKS file ${JSON.stringify(jwks.file)} is not JSON`, { cause });
    }
  } else value = jwks.keys;
  const parsed = jwksSchema.safeParse(value);
  if (!parsed.success) throw new PolicyError('E_POLICY_AUTHN_JWKS', 'the JWKS is not {"keys": [JWK, ...]}');
  return createLocalJWKSet(parsed.data as JSONWebKeySet);
}

function classify(e: unknown, required: ReadonlySet<string>): { code: PolicyErrorCode; reason: string } {
  if (e instanceof errors.JWTExpired) return { code: 'E_POLICY_AUTHN_TOKEN', reason: 'the token has expired' };
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.reason === 'missing' && required.has(e.claim)) return { code: 'E_POLICY_AUTHN_CLAIMS', reason: `the token lacks the required claim ${JSON.stringify(e.claim)}` };
    return { code: 'E_POLICY_AUTHN_TOKEN', reason: `the token's ${JSON.stringify(e.claim)} claim is not acceptable (${e.reason})` };
  }
  if (e instanceof JwksUnavailable) return { code: 'E_POLICY_AUTHN_JWKS', reason: `the identity provider's keys could not be fetched (${e.message})` };
  if (e instanceof errors.JWKSTimeout || e instanceof errors.JWKSInvalid) return { code: 'E_POLICY_AUTHN_JWKS', reason: `the identity provider's keys could not be fetched (${e.code})` };
  if (e instanceof errors.JWKSNoMatchingKey) return { code: 'E_POLICY_AUTHN_TOKEN', reason: 'the token is signed with a key the identity provider does not publish' };
  if (e instanceof errors.JWSSignatureVerificationFailed) return { code: 'E_POLICY_AUTHN_TOKEN', reason: 'the token signature is invalid' };
  if (e instanceof errors.JOSEAlgNotAllowed) return { code: 'E_POLICY_AUTHN_TOKEN', reason: 'the token uses a signature algorithm this site does not accept' };
  if (e instanceof errors.JOSEError) return { code: 'E_POLICY_AUTHN_TOKEN', reason: `the token is malformed or unacceptable (${e.code})` };
  // Anything else comes from fetching the keys (network, TLS, HTTP status): not the user's fault.
  return { code: 'E_POLICY_AUTHN_JWKS', reason: `the identity provider's keys could not be fetched (${e instanceof Error ? e.message : 'error'})` };
}

/**
 * An OIDC/JWT site authenticator on `jose`: verifies the token's signature against the provider's JWKS (from an
 * https URL, a file or a value), its issuer, audience, expiry and not-before with a clock tolerance, the
 * required claims, then maps claims to the user's name, FLARE role and org. By default the token must belong to
 * the same user as the project certificate, so a site can require, say, its KeyCloak login for admin users in
 * addition to the certificate.
 *
 * @throws PolicyError E_POLICY_AUTHN_CONFIG for bad options (non-https JWKS URL, bad claim paths), or
 * E_POLICY_AUTHN_JWKS when a JWKS file or value cannot be read. Refusals of tokens are verdicts, not throws.
 * @example
 * ```ts
 * const kc = await createOidcAuthenticator({
 *   issuer: 'https://kc.hospital.example/realms/fl', audience: 'flare-site-a',
 *   jwks: { url: 'https://kc.hospital.example/realms/fl/protocol/openid-connect/certs' },
 *   claims: { role: 'realm_access.roles' }, roleMap: { 'fl-lead': 'lead', 'fl-member': 'member' },
 * });
 * const verdict = await kc.authenticate({ credential: jwt, user: { name: 'alice@a.org' } });
 * ```
 */
export async function createOidcAuthenticator(options: OidcAuthenticatorOptions): Promise<SiteAuthenticator> {
  const checked = optionsSchema.safeParse(options);
  if (!checked.success) config(`OIDC authenticator options: ${checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const name = options.name ?? 'oidc';
  const algorithms = [...(options.algorithms ?? DEFAULT_ALGORITHMS)];
  const symmetric = algorithms.find((a) => !ASYMMETRIC.test(a));
  if (symmetric !== undefined) config(`algorithm ${JSON.stringify(symmetric)} is not accepted: only public-key signatures (RS*, PS*, ES*, EdDSA)`);
  const roleMap = options.roleMap === undefined ? undefined : options.roleMap instanceof Map ? new Map(options.roleMap) : new Map(Object.entries(options.roleMap));
  const claimNames = { name: options.claims?.name ?? 'email', role: options.claims?.role ?? 'role', org: options.claims?.org };
  const required = new Set(options.requiredClaims ?? []);
  const bind = options.bindToCertificate ?? true;
  const getKey = await keySource(options.jwks);
  const audience = typeof options.audience === 'string' ? options.audience : [...options.audience];

  const refuse = (code: PolicyErrorCode, reason: string): SiteAuthVerdict => ({ ok: false, authenticator: name, code, reason });

  return {
    name,
    async authenticate(input: SiteAuthInput): Promise<SiteAuthVerdict> {
      const token = input.credential;
      if (typeof token !== 'string' || token.length === 0) return refuse('E_POLICY_AUTHN_TOKEN', 'no token was presented');
      if (token.length > MAX_TOKEN_CHARS) return refuse('E_POLICY_AUTHN_TOKEN', `the token is longer than ${MAX_TOKEN_CHARS} characters`);
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          issuer: options.issuer,
          audience,
          algorithms,
          clockTolerance: options.clockToleranceSec ?? 30,
          requiredClaims: ['exp', ...required],
          ...(options.maxTokenAgeSec === undefined ? {} : { maxTokenAge: options.maxTokenAgeSec }),
          ...(options.now === undefined ? {} : { currentDate: options.now() }),
        }));
      } catch (e) {
        const { code, reason } = classify(e, required);
        return refuse(code, reason);
      }
      const user = readClaim(payload, claimNames.name);
      if (typeof user !== 'string' || user === '') return refuse('E_POLICY_AUTHN_CLAIMS', `the token has no ${JSON.stringify(claimNames.name)} claim naming the user`);
      const raw = readClaim(payload, claimNames.role);
      const roles = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.filter((r): r is string => typeof r === 'string') : [];
      let role: string | undefined;
      if (roleMap !== undefined) {
        for (const [theirs, ours] of roleMap) if (role === undefined && roles.includes(theirs)) role = ours;
        if (role === undefined) return refuse('E_POLICY_AUTHN_CLAIMS', `the token's ${JSON.stringify(claimNames.role)} claim carries no role this site maps`);
      } else {
        if (roles.length !== 1) return refuse('E_POLICY_AUTHN_CLAIMS', `the token's ${JSON.stringify(claimNames.role)} claim must hold exactly one role (or configure roleMap)`);
        role = roles[0]!;
      }
      let org: string | undefined;
      if (claimNames.org !== undefined) {
        const o = readClaim(payload, claimNames.org);
        if (typeof o !== 'string' || o === '') return refuse('E_POLICY_AUTHN_CLAIMS', `the token has no ${JSON.stringify(claimNames.org)} claim naming the org`);
        org = o;
      }
      if (bind && input.user !== undefined) {
        if (normalizeName(user) !== normalizeName(input.user.name)) {
          return refuse('E_POLICY_AUTHN_MISMATCH', `the token is for ${JSON.stringify(user)}, the certificate for ${JSON.stringify(input.user.name)}`);
        }
        if (org !== undefined && input.user.org !== undefined && normalizeName(org) !== normalizeName(input.user.org)) {
          return refuse('E_POLICY_AUTHN_MISMATCH', `the token's org ${JSON.stringify(org)} is not the certificate's org ${JSON.stringify(input.user.org)}`);
        }
      }
      return {
        ok: true,
        authenticator: name,
        name: user,
        role,
        org: org ?? input.user?.org,
        claims: Object.freeze({ ...(payload as Record<string, JsonValue>) }),
        expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
      };
    },
  };
}
