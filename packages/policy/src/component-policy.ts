import { PolicyError } from '@flare/core';
import { z } from 'zod';
import { policyJson } from './json-input.js';

/** Which components jobs may use at this site, and whether jobs may bring their own code. */
export interface ComponentPolicy {
  /** Registered component names this site admits (exact names). */
  readonly allow: ReadonlySet<string>;
  /** The site's consent to job-supplied code (BYOC); false unless the file says true. */
  readonly byoc: boolean;
}

const componentName = z.string().regex(/^[A-Za-z0-9_.:@/-]{1,256}$/, 'a registered component name (letters, digits, _ . : @ / -)');

const componentsSchema = z.strictObject({
  format_version: z.literal('1.0').optional(),
  allow: z.array(componentName).max(4096),
  byoc: z.boolean().optional(),
});

/**
 * Parses a component allow-list (local/components.json): `{"format_version": "1.0", "allow": [names], "byoc":
 * false}`. FLARE has no such file; it is ours. Names are exact (no patterns), so what a site admits is
 * exactly what it reads.
 *
 * @throws PolicyError E_POLICY_COMPONENTS_PARSE naming the field at fault.
 */
export function parseComponentPolicy(json: unknown): ComponentPolicy {
  const parsed = componentsSchema.safeParse(policyJson(json, 'E_POLICY_COMPONENTS_PARSE', 'component allow-list'));
  if (!parsed.success) {
    throw new PolicyError('E_POLICY_COMPONENTS_PARSE', `component allow-list: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  }
  return Object.freeze({ allow: new Set(parsed.data.allow), byoc: parsed.data.byoc ?? false });
}
