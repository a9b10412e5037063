import { FlareRuntimeError } from '@flare/core';
import type { z } from 'zod';
import type { JobDefinition } from '../protocol/job-definition.js';

/**
 * meta.json's `workflow_args` parsed by the workflow's schema (defaults applied). A workflow without a schema
 * takes no arguments: any given are refused, so a typo fails at submit, not at round 3.
 *
 * @throws FlareRuntimeError E_RUNTIME_JOB_INVALID naming the first bad field (`workflow_args.<path>`).
 */
export function parseWorkflowArgs<T = unknown>(schema: z.ZodType<T> | undefined, definition: JobDefinition): T {
  const given = definition.workflow_args ?? {};
  if (schema === undefined) {
    const [first] = Object.keys(given);
    if (first !== undefined) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `meta.json: workflow_args.${first}: workflow '${definition.workflow}' takes no arguments`);
    return undefined as T;
  }
  const r = schema.safeParse(given);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i === undefined || i.path.length === 0 ? 'workflow_args' : `workflow_args.${i.path.join('.')}`;
    throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `meta.json: ${where}: ${i?.message ?? 'invalid'} (workflow '${definition.workflow}')`, { cause: r.error });
  }
  return r.data;
}
