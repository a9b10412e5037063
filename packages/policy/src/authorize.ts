import { PolicyError, type Identity } from '@flare/core';
import { ANY_RIGHT, type AuthorizationCondition, type AuthorizationPolicy, type AuthorizationRule } from './authorization-policy.js';
import { normalizeName } from './normalize.js';

/**
 * A person as authorization sees them: the name, org and role of an authenticated admin {@link Identity} (from the
 * certificate or session, never from a message field). The participant type does not take part in the decision.
 */
export type Person = Pick<Identity, 'name' | 'org'> & { readonly role: string };

/** What is being asked: may `user` exercise `right` at a site whose org is `siteOrg`? */
export interface AuthorizationRequest {
  /** The right or command, e.g. `submit_job`, `abort_job`, `ls` (normalized before lookup). */
  readonly right: string;
  readonly user: Person;
  /** The job's submitter, for job commands; `null` or absent when there is no job. */
  readonly submitter?: Person | null;
  /** The org of the site that decides (its own org from its kit). */
  readonly siteOrg: string;
}

/** The outcome of {@link authorize}. */
export interface AuthorizationDecision {
  readonly allowed: boolean;
  /** FLARE's sentence: `user '<name>' is not authorized for '<right>'` when denied; `user '<name>' is authorized for '<right>'` when allowed. */
  readonly reason: string;
  /** Why, for an admin previewing a policy: which rule and condition decided. */
  readonly explanation: string;
  /** The rule that decided, when one applied. */
  readonly rule?: AuthorizationRule;
}

interface Subject {
  readonly name: string;
  readonly org: string;
}

function matches(c: AuthorizationCondition, user: Subject, submitter: Subject | undefined, siteOrg: string): boolean {
  switch (c.kind) {
    case 'true':
      return true;
    case 'false':
      return false;
    case 'org':
      if (c.target === 'site') return user.org === siteOrg;
      // We differ from FLARE: with no submitter, o:submitter is false (FLARE compares with an empty org, so a
      // user with an empty org passed).
      if (c.target === 'submitter') return submitter !== undefined && user.org === submitter.org;
      return user.org === c.target;
    case 'name':
      if (c.target === 'submitter') return submitter !== undefined && user.name === submitter.name;
      return user.name === c.target;
  }
}

const quote = (c: AuthorizationCondition, blocked = false) => `"${blocked ? 'not ' : ''}${c.text}"`;

function person(p: Person, what: string): Subject {
  if (p === null || typeof p !== 'object' || typeof p.name !== 'string' || typeof p.org !== 'string' || typeof p.role !== 'string') {
    throw new TypeError(`${what} must be { name, org, role } strings`);
  }
  return { name: normalizeName(p.name), org: normalizeName(p.org) };
}

/**
 * Decides whether a user may exercise a right at this site, with FLARE's evaluation
 * (nvflare/fuel/sec/authz.py Policy.evaluate): the role's role-wide rule first, else the right's rule (a
 * command's own rule, else its category's); no rule denies. Within a rule, any matching `not` condition
 * denies; otherwise one matching allowing condition allows; a rule of only `not` conditions allows. Roles,
 * rights, names and orgs compare lower-cased with whitespace collapsed.
 *
 * We differ from FLARE on purpose: there is no `super` role that bypasses the policy; the requested right is
 * normalized too (FLARE never matches `SUBMIT_JOB`); `o:submitter`/`n:submitter` are false without a submitter.
 *
 * @throws TypeError when the request is not shaped as documented (programmer error).
 */
export function authorize(policy: AuthorizationPolicy, request: AuthorizationRequest): AuthorizationDecision {
  if (typeof request.right !== 'string') throw new TypeError('right must be a string');
  if (typeof request.siteOrg !== 'string') throw new TypeError('siteOrg must be a string');
  const user = person(request.user, 'user');
  const role = normalizeName(request.user.role);
  const submitter = request.submitter === undefined || request.submitter === null ? undefined : person(request.submitter, 'submitter');
  const right = normalizeName(request.right);
  const siteOrg = normalizeName(request.siteOrg);
  const denied = `user '${user.name}' is not authorized for '${right}'`;

  const rules = policy.roles.get(role);
  if (rules === undefined) return { allowed: false, reason: denied, explanation: `the policy has no role '${role}'` };
  const rule = rules.all ?? rules.rights.get(right);
  if (rule === undefined) return { allowed: false, reason: denied, explanation: `role '${role}' has no rule for '${right}'` };
  const from = rule.right === ANY_RIGHT ? `role '${role}' (all rights)` : rule.category !== undefined && rule.category !== right ? `role '${role}', category '${rule.category}'` : `role '${role}', right '${right}'`;
  for (const c of rule.blocked) {
    if (matches(c, user, submitter, siteOrg)) return { allowed: false, reason: denied, explanation: `${from}: blocked by ${quote(c, true)}`, rule };
  }
  const allowed = `user '${user.name}' is authorized for '${right}'`;
  if (rule.allowed.length === 0) return { allowed: true, reason: allowed, explanation: `${from}: no blocking condition matched`, rule };
  for (const c of rule.allowed) {
    if (matches(c, user, submitter, siteOrg)) return { allowed: true, reason: allowed, explanation: `${from}: ${quote(c)} matched`, rule };
  }
  return { allowed: false, reason: denied, explanation: `${from}: none of ${rule.allowed.map((c) => quote(c)).join(', ')} matched`, rule };
}

/**
 * {@link authorize}, throwing when denied: for code paths that must stop (deploy-time re-checks).
 *
 * @throws PolicyError E_POLICY_DENIED with FLARE's denial sentence.
 */
export function assertAuthorized(policy: AuthorizationPolicy, request: AuthorizationRequest): AuthorizationDecision {
  const decision = authorize(policy, request);
  if (!decision.allowed) throw new PolicyError('E_POLICY_DENIED', `${decision.reason} (${decision.explanation})`);
  return decision;
}
