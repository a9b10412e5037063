import { PolicyError } from '@flare/core';
import { z } from 'zod';
import { policyJson } from './json-input.js';

/** Which components jobs may use at this site, and whether jobs may bring their own code. */
export interface ComponentPolicy {
  /** Registered component names this site admits (exact names). */
  readonly allow: ReadonlySet<string>;
  /** The site's consent to job-supplied code (BYOC); false unless the file says true. */
  readonly byoc: boolean;
  /**
   * The site's learner definitions (`learners`: name -> definition), as read: the runtime parses them
   * (@flare/runtime `learnerFactories`). Each name is admitted as a component too.
   */
  readonly learners?: Readonly<Record<string, unknown>>;
}

const componentName = z.string().regex(/^[A-Za-z0-9_.:@/-]{1,256}$/, 'a registered component name (letters, digits, _ . : @ / -)');

const componentsSchema = z.strictObject({
  format_version: z.literal('1.0').optional(),
  allow: z.array(componentName).max(4096),
  byoc: z.boolean().optional(),
  /** Learner definitions, checked by the runtime that builds them; here only their names. */
  learners: z.record(componentName, z.record(z.string(), z.unknown())).optional(),
});

/**
 * Parses a component allow-list (local/components.json): `{"format_version": "1.0", "allow": [names], "byoc":
 * false, "learners": {name: definition}}`. FLARE has no such file; it is ours. Names are exact (no patterns), so what a site admits is
 * exactly what it reads.
 *
 * @throws PolicyError E_POLICY_COMPONENTS_PARSE naming the field at fault.
 */
export function parseComponentPolicy(json: unknown): ComponentPolicy {
  const parsed = componentsSchema.safeParse(policyJson(json, 'E_POLICY_COMPONENTS_PARSE', 'component allow-list'));
  if (!parsed.success) {
    throw new PolicyError('E_POLICY_COMPONENTS_PARSE', `component allow-list: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  }
  const learners = parsed.data.learners;
  // A learner the site defines is one it admits: no need to list it in `allow` as well.
  const allow = new Set([...parsed.data.allow, ...Object.keys(learners ?? {})]);
  return Object.freeze({ allow, byoc: parsed.data.byoc ?? false, ...(learners === undefined ? {} : { learners }) });
}
