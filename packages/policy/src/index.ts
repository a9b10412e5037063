// @flare/policy: site-local authorization.json, privacy.json scopes, resources.json, component allow-list and
// site authenticators. Flat named exports only (house style).
export { FLARE_COMMAND_CATEGORIES } from './command-categories.js';
export { ANY_RIGHT, parseAuthorizationPolicy } from './authorization-policy.js';
export type {
  AuthorizationCondition,
  AuthorizationPolicy,
  AuthorizationPolicyOptions,
  AuthorizationRole,
  AuthorizationRule,
} from './authorization-policy.js';
export { assertAuthorized, authorize } from './authorize.js';
export type { AuthorizationDecision, AuthorizationRequest, Person } from './authorize.js';
