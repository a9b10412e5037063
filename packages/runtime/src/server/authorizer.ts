import { authorize, type AuthorizationPolicy } from '@flare/policy';
import type { Authorizer } from './admin-api.js';

/**
 * An {@link Authorizer} for the server's admin commands from an authorization.json policy (the server's own
 * `local/authorization.json`), evaluated for the server's org. `policy` is read on every call, so a reloaded
 * file applies at once.
 */
export function authorizerFromPolicy(policy: () => AuthorizationPolicy, serverOrg: string): Authorizer {
  return ({ user, right, submitter }) => authorize(policy(), { right, user, siteOrg: serverOrg, ...(submitter === undefined ? {} : { submitter }) }).allowed;
}
