import { PolicyError, type JsonValue, type PolicyErrorCode } from '@flare/core';

/** What a site authenticator is given at login. */
export interface SiteAuthInput {
  /** The credential the login request carries, e.g. a JWT from the site's identity provider. */
  readonly credential: string;
  /** The identity the project certificate already proved, when known; authenticators may require a match. */
  readonly user?: { readonly name: string; readonly org?: string; readonly role?: string };
}

/** A site authenticator's answer: who the credential proves, with the role and org its claims map to; or why not. */
export type SiteAuthVerdict =
  | {
      readonly ok: true;
      /** The authenticator that decided. */
      readonly authenticator: string;
      /** The user name the credential proves. */
      readonly name: string;
      /** The FLARE role its claims map to (project_admin, org_admin, lead, member, ...). */
      readonly role: string;
      /** The org its claims map to, when the authenticator maps one. */
      readonly org: string | undefined;
      /** The verified claims, for audit and for site-specific rules. */
      readonly claims: Readonly<Record<string, JsonValue>>;
      /** When the credential stops being valid, ms since the epoch, when it says. */
      readonly expiresAt: number | undefined;
    }
  | {
      readonly ok: false;
      readonly authenticator: string;
      /** Why, as a stable code (E_POLICY_AUTHN_*). */
      readonly code: PolicyErrorCode;
      /** A sentence for the user; never the credential itself. */
      readonly reason: string;
    };

/**
 * A site's own login requirement for admin users, on top of the project certificate (e.g. OIDC with
 * KeyCloak). @flare/auth's login hook calls it through the runtime with the credential the login request
 * carries. Implementations never throw for a bad credential: they return a refusal verdict.
 */
export interface SiteAuthenticator {
  readonly name: string;
  authenticate(input: SiteAuthInput): Promise<SiteAuthVerdict>;
}

/**
 * Runs `authenticator` and returns its accepting verdict, or throws its refusal.
 *
 * @throws PolicyError with the verdict's code (E_POLICY_AUTHN_TOKEN, _CLAIMS, _MISMATCH, _JWKS).
 */
export async function requireSiteAuthentication(authenticator: SiteAuthenticator, input: SiteAuthInput): Promise<Extract<SiteAuthVerdict, { ok: true }>> {
  const verdict = await authenticator.authenticate(input);
  if (!verdict.ok) throw new PolicyError(verdict.code, `${verdict.authenticator}: ${verdict.reason}`);
  return verdict;
}
