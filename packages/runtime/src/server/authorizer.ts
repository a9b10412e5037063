import type { Identity } from '@flare/core';
import { authorize, type AuthorizationPolicy, type Person } from '@flare/policy';
import type { Authorizer } from './admin-api.js';

/**
 * An {@link Authorizer} for the server's admin commands from an authorization.json policy (the server's own
 * `local/authorization.json`), evaluated for the server's org. `policy` is read on every call, so a reloaded
 * file applies at once.
 */
export function authorizerFromPolicy(policy: () => AuthorizationPolicy, serverOrg: string): Authorizer {
  return ({ user, right, submitter }) => authorize(policy(), { right, user: person(user), siteOrg: serverOrg, ...(submitter === undefined ? {} : { submitter: person(submitter) }) }).allowed;
}

/** Authorization decides on name, org and role; a participant without a role has the empty one. */
const person = (id: Identity): Person => ({ name: id.name, org: id.org, role: id.role ?? '' });
