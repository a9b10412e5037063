import { isAbsolute, join } from 'node:path';
import { PolicyError, parseStrictJson, readFileIfExists, type AuditHook, type Identity, type JsonValue, type Logger } from '@flare/core';
import { PolicyFile, createOidcAuthenticator, requireSiteAuthentication, type PolicyReloadResult, type SiteAuthenticator, type SiteAuthVerdict } from '@flare/policy';
import { z } from 'zod';
import type { JobBundle } from '../protocol/bundle.js';
import type { JobDefinition } from '../protocol/job-definition.js';

// Site-specific authentication (FLARE's KeyCloak site authentication): a site may require, besides the project
// certificate, a valid token from its own identity provider for the admin whose job it runs. The site's
// `local/authentication.json` says which provider; the admin's token travels in meta.json's `auth_tokens`, inside
// what the admin submits (and signs), and each site verifies the one meant for it before its policy decides.

/** The site's own authentication policy, in its kit's `local/` folder (never provisioned, never from the server). */
export const SITE_AUTHENTICATION_FILE = 'authentication.json';

/** meta.json's key for "the token for every site that has no token of its own in `auth_tokens`". */
export const ANY_SITE = '*';

/** Largest authentication.json read (a real one is well under 4 KiB). */
const MAX_FILE_BYTES = 64 * 1024;

const claimPath = z.string().min(1).max(256);
const OidcConfig = z.strictObject({
  /** Expected `iss`, exactly (KeyCloak: `https://kc.example/realms/<realm>`). */
  issuer: z.string().min(1).max(2048),
  /** Expected `aud` (one of them): this site's client id at the provider. */
  audience: z.union([z.string().min(1).max(512), z.array(z.string().min(1).max(512)).min(1).max(16)]),
  /**
   * Where the provider's signing keys are: an https URL (with `ca_file` to trust a private CA), or a JWKS file.
   * Relative paths are read from the kit's local/ folder; keep such files outside the kit (an absolute path):
   * kit verification refuses unsigned files in it other than the local policy files.
   */
  jwks: z.union([
    z.strictObject({ url: z.string().min(1).max(2048), ca_file: z.string().min(1).max(4096).optional(), timeout_s: z.number().positive().max(120).optional(), cache_max_age_s: z.number().positive().max(86_400).optional() }),
    z.strictObject({ file: z.string().min(1).max(4096) }),
  ]),
  algorithms: z.array(z.string().min(1).max(16)).min(1).max(16).optional(),
  clock_tolerance_s: z.number().min(0).max(3600).optional(),
  /** Oldest acceptable `iat`, seconds (e.g. 3600: a token issued more than an hour ago is refused). */
  max_token_age_s: z.number().positive().max(365 * 86_400).optional(),
  required_claims: z.array(claimPath).max(32).optional(),
  /** Which claims carry the user, role and org (dotted paths; KeyCloak roles: `realm_access.roles`). */
  claims: z.strictObject({ name: claimPath.optional(), role: claimPath.optional(), org: claimPath.optional() }).optional(),
  /** Provider role -> FLARE role, first match wins. */
  role_map: z.record(z.string().min(1).max(256), z.string().min(1).max(64)).optional(),
  /** The token's user (and org, when mapped) must be the submitter's certificate's (default true). */
  bind_to_certificate: z.boolean().default(true),
});

/** `local/authentication.json`: how this site authenticates the admins whose jobs it runs. */
export const SiteAuthenticationFile = z.strictObject({
  format_version: z.literal('1.0'),
  /** An OpenID Connect provider (KeyCloak, Entra ID, ...) whose token every submitter must present. */
  oidc: OidcConfig,
});
/** A parsed `local/authentication.json`. */
export type SiteAuthenticationFile = z.output<typeof SiteAuthenticationFile>;

const configError = (file: string, what: string, cause?: unknown): never => {
  throw new PolicyError('E_POLICY_AUTHN_CONFIG', `${file}: ${what}`, cause === undefined ? undefined : { cause });
};

/**
 * Reads the site's `local/authentication.json` and builds its authenticator (@flare/policy's OIDC authenticator);
 * undefined when the site has no such file (it then requires no token). Relative `jwks.file` and `jwks.ca_file`
 * are read from `localDir`.
 *
 * @throws PolicyError E_POLICY_AUTHN_CONFIG naming the file and the field (not JSON, unknown field, a CA file
 *   that cannot be read, a JWKS URL that is not https), E_POLICY_AUTHN_JWKS (a JWKS file that is not a JWKS).
 * @example
 * ```ts
 * const authenticator = await loadSiteAuthenticator(join(kitDir, 'local'));
 * ```
 */
export async function loadSiteAuthenticator(localDir: string): Promise<SiteAuthenticator | undefined> {
  const file = join(localDir, SITE_AUTHENTICATION_FILE);
  const bytes = await readFileIfExists(file, { maxBytes: MAX_FILE_BYTES });
  return bytes === undefined ? undefined : authenticatorOf(bytes, file, localDir);
}

/** Options of {@link openSiteAuthentication}. */
export interface SiteAuthenticationOptions {
  /** Where the load, each change and each refused change go (`policy_loaded`, `policy_changed`, `policy_reload_failed`). */
  readonly audit?: AuditHook;
  /** Where a refused change is logged (a warning with its code, naming the file). */
  readonly logger?: Logger;
  /** Called after every reload attempt (tests wait on it). */
  readonly onReload?: (result: PolicyReloadResult) => void;
}

/**
 * The site's `local/authentication.json` as a policy file that follows its changes (@flare/policy's `PolicyFile`,
 * like the site's other `local/` files): read and validated now, and again on `reload()` or, once `watch()` is
 * called, whenever the file changes. A new file that validates applies to the next job offered; one that does not
 * keeps the login in force, with `policy_reload_failed` in the audit log and a warning naming the file and its
 * code. `current` is undefined while the site has no file (no token required): adding one requires tokens from
 * then on, removing it lifts the requirement, as a restart would.
 *
 * @throws PolicyError E_POLICY_AUTHN_CONFIG (and E_POLICY_AUTHN_JWKS) for a file that is there but invalid: a
 *   site does not start with a login it cannot read.
 * @example
 * ```ts
 * const login = await openSiteAuthentication(join(kitDir, 'local'), { audit, logger });
 * login.watch(); // sitePolicyFromFiles(policies, { jobTrust, authenticator: () => login.current }); ... login.close();
 * ```
 */
export function openSiteAuthentication(localDir: string, options: SiteAuthenticationOptions = {}): Promise<PolicyFile<SiteAuthenticator | undefined>> {
  const file = join(localDir, SITE_AUTHENTICATION_FILE);
  return PolicyFile.load<SiteAuthenticator | undefined>({
    name: 'authentication',
    paths: [file],
    parse: (bytes) => {
      if (bytes.byteLength > MAX_FILE_BYTES) configError(file, `larger than ${MAX_FILE_BYTES} bytes`);
      return authenticatorOf(bytes, file, localDir);
    },
    fallback: () => undefined,
    ...(options.audit === undefined ? {} : { audit: options.audit }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    ...(options.onReload === undefined ? {} : { onReload: options.onReload }),
  });
}

async function authenticatorOf(bytes: Uint8Array, file: string, localDir: string): Promise<SiteAuthenticator> {
  let raw: unknown;
  try {
    raw = parseStrictJson(new TextDecoder().decode(bytes));
  } catch (e) {
    return configError(file, `not JSON: ${e instanceof Error ? e.message : 'invalid'}`, e);
  }
  const r = SiteAuthenticationFile.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    return configError(file, `${i === undefined || i.path.length === 0 ? '(top)' : i.path.join('.')}: ${i?.message ?? 'invalid'}`, r.error);
  }
  const o = r.data.oidc;
  const local = (p: string): string => (isAbsolute(p) ? p : join(localDir, p));
  let jwks;
  if ('url' in o.jwks) {
    const caFile = o.jwks.ca_file;
    const ca = caFile === undefined ? undefined : await readFileIfExists(local(caFile), { maxBytes: MAX_FILE_BYTES });
    if (caFile !== undefined && ca === undefined) configError(file, `oidc.jwks.ca_file: ${local(caFile)} does not exist`);
    jwks = {
      url: o.jwks.url,
      ...(ca === undefined ? {} : { ca: new TextDecoder().decode(ca) }),
      ...(o.jwks.timeout_s === undefined ? {} : { timeoutMs: o.jwks.timeout_s * 1000 }),
      ...(o.jwks.cache_max_age_s === undefined ? {} : { cacheMaxAgeMs: o.jwks.cache_max_age_s * 1000 }),
    };
  } else jwks = { file: local(o.jwks.file) };
  // The authenticator checks what the schema cannot (an https JWKS URL, a JWKS file's keys); its refusal names the field, this the file.
  return createOidcAuthenticator({
    issuer: o.issuer,
    audience: o.audience,
    jwks,
    bindToCertificate: o.bind_to_certificate,
    ...(o.algorithms === undefined ? {} : { algorithms: o.algorithms }),
    ...(o.clock_tolerance_s === undefined ? {} : { clockToleranceSec: o.clock_tolerance_s }),
    ...(o.max_token_age_s === undefined ? {} : { maxTokenAgeSec: o.max_token_age_s }),
    ...(o.required_claims === undefined ? {} : { requiredClaims: o.required_claims }),
    ...(o.claims === undefined ? {} : { claims: Object.fromEntries(Object.entries(o.claims).filter(([, v]) => v !== undefined)) as { name?: string; role?: string; org?: string } }),
    ...(o.role_map === undefined ? {} : { roleMap: o.role_map }),
  }).catch((e: unknown) => {
    if (e instanceof PolicyError && !e.message.includes(file)) throw new PolicyError(e.code, `${file}: ${e.message}`, { cause: e });
    throw e;
  });
}

/** The token a job carries for `site`: its own entry in meta.json's `auth_tokens`, else the `*` entry. */
export function jobTokenFor(definition: JobDefinition, site: string): string | undefined {
  const tokens = definition.auth_tokens;
  if (tokens === undefined) return undefined;
  return Object.hasOwn(tokens, site) ? tokens[site] : Object.hasOwn(tokens, ANY_SITE) ? tokens[ANY_SITE] : undefined;
}

/**
 * Verifies, at `site`, the token the job carries for it against the site's authenticator, bound to the
 * submitter the server authenticated (the token must be theirs). A site without an authenticator accepts every
 * job here (its policy still decides).
 *
 * @throws PolicyError E_POLICY_AUTHN_TOKEN (no token for this site, expired, wrong issuer or audience, a key the
 *   provider does not publish, a bad signature), E_POLICY_AUTHN_CLAIMS, E_POLICY_AUTHN_MISMATCH (another user's
 *   token), E_POLICY_AUTHN_JWKS (the provider's keys could not be fetched).
 */
export async function authenticateSubmitter(
  authenticator: SiteAuthenticator | undefined,
  job: { readonly site: string; readonly definition: JobDefinition; readonly submitter: Pick<Identity, 'name' | 'org' | 'role'> },
): Promise<Extract<SiteAuthVerdict, { ok: true }> | undefined> {
  if (authenticator === undefined) return undefined;
  const credential = jobTokenFor(job.definition, job.site) ?? '';
  return requireSiteAuthentication(authenticator, { credential, user: { name: job.submitter.name, org: job.submitter.org, ...(job.submitter.role === undefined ? {} : { role: job.submitter.role }) } });
}

/**
 * Adds the admin's tokens to a job's meta.json (`auth_tokens`: site name or `*` -> token) before it is signed
 * and submitted; returns the bundle unchanged when there are none. Tokens already in meta.json are kept unless
 * replaced by one for the same site.
 *
 * @throws PolicyError E_POLICY_AUTHN_TOKEN for an empty token or one longer than 16 KiB (nothing is sent).
 */
export function attachAuthTokens(bundle: JobBundle, tokens: ReadonlyMap<string, string>): JobBundle {
  if (tokens.size === 0) return bundle;
  for (const [site, t] of tokens) {
    if (t.length === 0 || t.length > 16 * 1024 || /\s/.test(t)) throw new PolicyError('E_POLICY_AUTHN_TOKEN', `the token for ${site === ANY_SITE ? 'every site' : site} is empty, has white space inside or is longer than 16 KiB`);
  }
  const meta = parseStrictJson(new TextDecoder().decode(bundle.meta)) as { [k: string]: JsonValue };
  const before = typeof meta['auth_tokens'] === 'object' && meta['auth_tokens'] !== null && !Array.isArray(meta['auth_tokens']) ? meta['auth_tokens'] : {};
  const definition = { ...meta, auth_tokens: { ...before, ...Object.fromEntries(tokens) } };
  return { ...bundle, meta: new TextEncoder().encode(JSON.stringify(definition, null, 2)) };
}
