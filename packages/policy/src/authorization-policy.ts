import { PolicyError } from '@flare/core';
import { z } from 'zod';
import { FLARE_COMMAND_CATEGORIES } from './command-categories.js';
import { isJsonObject, jsonType, policyJson } from './json-input.js';
import { normalizeName } from './normalize.js';

/** The right name that stands for every right (a role given a string or list instead of an object). */
export const ANY_RIGHT = '*';

/**
 * One condition of a rule, compiled from its text. `any`/`all` is `true`, `none`/`no` is `false`; `org` and
 * `name` compare the user's org or name with `target`, where the targets `site` (org only) and `submitter`
 * refer to the site's org and to the job's submitter.
 */
export interface AuthorizationCondition {
  readonly kind: 'true' | 'false' | 'org' | 'name';
  /** Normalized target of an `org` or `name` condition; empty for `true`/`false`. */
  readonly target: string;
  /** The condition as written in the policy (without `not`). */
  readonly text: string;
}

/** The conditions one role has for one right (or for every right, when `right` is `*`). */
export interface AuthorizationRule {
  /** Normalized role name. */
  readonly role: string;
  /** Normalized right name, or `*` for a role-wide rule. */
  readonly right: string;
  /** The category this rule was written for, when the right got it from its category. */
  readonly category?: string;
  /** The expression as written in the policy (a string or a list of strings). */
  readonly expression: string | readonly string[];
  /** Conditions of which one must match (when the list is not empty). */
  readonly allowed: readonly AuthorizationCondition[];
  /** `not` conditions: any match denies, before `allowed` is looked at. */
  readonly blocked: readonly AuthorizationCondition[];
}

/** The rules of one role. */
export interface AuthorizationRole {
  /** A role-wide rule (FLARE's role shorthand): when present it decides every right, before `rights`. */
  readonly all: AuthorizationRule | undefined;
  /** Rules per normalized right; categories are expanded to their commands, command entries override them. */
  readonly rights: ReadonlyMap<string, AuthorizationRule>;
}

/** A parsed, validated authorization.json. Immutable; evaluate it with {@link authorize}. */
export interface AuthorizationPolicy {
  readonly formatVersion: '1.0';
  /** Rules per normalized role name. */
  readonly roles: ReadonlyMap<string, AuthorizationRole>;
  /** The command → category table the policy was parsed with. */
  readonly categories: ReadonlyMap<string, string>;
}

/** Options of {@link parseAuthorizationPolicy}. */
export interface AuthorizationPolicyOptions {
  /**
   * Command → category table (default {@link FLARE_COMMAND_CATEGORIES}). A category named in the policy grants
   * its rule to each of its commands; names are normalized like everything else.
   */
  readonly commandCategories?: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
}

// Top-level keys other than these are refused: a misspelt "permission" must not load as an empty policy.
const policyShape = z.strictObject({ format_version: z.literal('1.0'), permissions: z.record(z.string(), z.unknown()) });

const fail = (message: string): never => {
  throw new PolicyError('E_POLICY_AUTHZ_PARSE', message);
};

function parseCondition(exp: unknown, where: string): { blocked: boolean; condition: AuthorizationCondition } {
  if (typeof exp !== 'string') return fail(`${where}: bad condition expression type - expect str or list but got ${jsonType(exp)}`);
  // nvflare/fuel/sec/authz.py _parse_one_expression: normalize, then "not <cond>" blocks. FLARE requires exactly
  // two words, so it refuses "not n:bob smith"; we accept the rest of the text as the condition (an extension:
  // every expression FLARE accepts keeps its meaning).
  let v = normalizeName(exp);
  const blocked = v.startsWith('not ');
  if (blocked) v = v.slice(4);
  const text = v;
  if (v === 'any' || v === 'all') return { blocked, condition: { kind: 'true', target: '', text } };
  if (v === 'none' || v === 'no') return { blocked, condition: { kind: 'false', target: '', text } };
  const parts = v.split(':');
  if (parts.length !== 2) return fail(`${where}: bad condition expression ${JSON.stringify(exp)}`);
  const type = normalizeName(parts[0]!);
  const target = normalizeName(parts[1]!);
  let kind: 'org' | 'name';
  if (type === 'o' || type === 'org') kind = 'org';
  else if (type === 'n' || type === 'name') kind = 'name';
  else return fail(`${where}: bad condition expression ${JSON.stringify(exp)}: invalid type ${JSON.stringify(type)}`);
  // We differ from FLARE: an empty target ("o:") would match every user whose org is empty. Refuse it.
  if (target === '') return fail(`${where}: bad condition expression ${JSON.stringify(exp)}: empty ${kind}`);
  return { blocked, condition: { kind, target, text } };
}

function parseRule(role: string, right: string, exp: unknown, category?: string): AuthorizationRule {
  const where = `role '${role}', right '${right}'`;
  const allowed: AuthorizationCondition[] = [];
  const blocked: AuthorizationCondition[] = [];
  let expression: string | readonly string[];
  if (typeof exp === 'string') expression = exp;
  else if (Array.isArray(exp)) {
    if (exp.length === 0) return fail(`${where}: bad condition expression - no conditions specified`);
    expression = exp.map((e) => (typeof e === 'string' ? e : fail(`${where}: bad condition expression type - expect str but got ${jsonType(e)} in the list`)));
  } else return fail(`${where}: bad condition expression type - expect str or list but got ${jsonType(exp)}`);
  for (const e of typeof expression === 'string' ? [expression] : expression) {
    const c = parseCondition(e, `${where}, expression ${JSON.stringify(e)}`);
    (c.blocked ? blocked : allowed).push(c.condition);
  }
  return Object.freeze({
    role,
    right,
    ...(category === undefined ? {} : { category }),
    expression: Object.freeze(expression),
    allowed: Object.freeze(allowed),
    blocked: Object.freeze(blocked),
  });
}

function categoryTable(option: AuthorizationPolicyOptions['commandCategories']): ReadonlyMap<string, string> {
  if (option === undefined) return FLARE_COMMAND_CATEGORIES;
  const entries = option instanceof Map ? [...option] : Object.entries(option);
  const table = new Map<string, string>();
  for (const [command, category] of entries) {
    if (typeof command !== 'string' || typeof category !== 'string') throw new TypeError('commandCategories must map command names to category names');
    table.set(normalizeName(command), normalizeName(category));
  }
  return table;
}

/**
 * Parses and validates an authorization.json (FLARE format_version 1.0), given as JSON text, UTF-8 bytes or a
 * parsed value. Follows FLARE's parser (nvflare/fuel/sec/authz.py): a role given a string or list applies it to
 * every right; a role given an object maps rights or categories to expressions; categories expand to their
 * commands and a command's own entry overrides its category; names are lower-cased and whitespace-collapsed.
 * Stricter than FLARE on purpose: duplicate JSON keys, unknown top-level keys, two role (or right) names that
 * are equal once normalized, and conditions with an empty target are refused.
 *
 * @throws PolicyError E_POLICY_AUTHZ_PARSE naming the role, the right and the expression at fault.
 * @example
 * ```ts
 * const policy = parseAuthorizationPolicy(readFileSync('local/authorization.json', 'utf8'));
 * authorize(policy, { right: 'submit_job', user: { name: 'a@x.org', org: 'x', role: 'lead' }, siteOrg: 'x' });
 * ```
 */
export function parseAuthorizationPolicy(json: unknown, options: AuthorizationPolicyOptions = {}): AuthorizationPolicy {
  const categories = categoryTable(options.commandCategories);
  const value = policyJson(json, 'E_POLICY_AUTHZ_PARSE', 'authorization policy');
  // FLARE's own messages, in FLARE's order, so users who know them recognise them.
  if (!isJsonObject(value)) return fail(`policy definition must be a dict but got ${jsonType(value)}`);
  if (value['format_version'] !== '1.0') return fail('missing or invalid policy format_version: must be 1.0');
  const permissions = value['permissions'];
  if (permissions === undefined || permissions === null) return fail('missing permissions');
  if (!isJsonObject(permissions)) return fail(`invalid permissions: expect a dict but got ${jsonType(permissions)}`);
  const shape = policyShape.safeParse(value);
  if (!shape.success) return fail(`authorization policy: ${shape.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  if (Object.keys(permissions).length === 0) return fail('missing permissions');

  const commandsOf = new Map<string, string[]>();
  for (const [command, category] of categories) commandsOf.set(category, [...(commandsOf.get(category) ?? []), command]);

  const roles = new Map<string, AuthorizationRole>();
  for (const [rawRole, conf] of Object.entries(permissions)) {
    const role = normalizeName(rawRole);
    if (role === '') return fail(`role ${JSON.stringify(rawRole)}: empty role name`);
    if (roles.has(role)) return fail(`role ${JSON.stringify(rawRole)}: defined twice (role names are compared case-insensitively)`);
    if (typeof conf === 'string' || Array.isArray(conf)) {
      roles.set(role, Object.freeze({ all: parseRule(role, ANY_RIGHT, conf), rights: new Map() }));
      continue;
    }
    if (!isJsonObject(conf)) return fail(`role '${role}': bad right config: expect a dict but got ${jsonType(conf)}`);
    const seen = new Set<string>();
    const rights = new Map<string, AuthorizationRule>();
    let all: AuthorizationRule | undefined;
    // Pass 1: categories, so that pass 2 (plain rights) overrides what a category gave its commands.
    for (const [rawRight, exp] of Object.entries(conf)) {
      const right = normalizeName(rawRight);
      if (right === '') return fail(`role '${role}': empty right name`);
      if (seen.has(right)) return fail(`role '${role}', right ${JSON.stringify(rawRight)}: defined twice (right names are compared case-insensitively)`);
      seen.add(right);
      const commands = commandsOf.get(right);
      if (commands === undefined) continue;
      const rule = parseRule(role, right, exp, right);
      rights.set(right, rule);
      for (const command of commands) rights.set(command, command === right ? rule : Object.freeze({ ...rule, right: command }));
    }
    for (const [rawRight, exp] of Object.entries(conf)) {
      const right = normalizeName(rawRight);
      if (commandsOf.has(right)) continue;
      const rule = parseRule(role, right, exp);
      // FLARE stores "*" under the same key as the role shorthand, so {"*": expr} is a role-wide rule.
      if (right === ANY_RIGHT) all = rule;
      else rights.set(right, rule);
    }
    roles.set(role, Object.freeze({ all, rights }));
  }
  return Object.freeze({ formatVersion: '1.0' as const, roles, categories });
}
