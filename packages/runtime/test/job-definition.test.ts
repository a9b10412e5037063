import { isFlareError, type JsonValue } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { parseJobDefinition, parseMetaJson } from '../src/protocol/job-definition.js';
import { jobDefinition } from './helpers.js';

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return isFlareError(e) ? e.code : 'not a FlareError';
  }
  return undefined;
}

describe('parseJobDefinition', () => {
  it('fills defaults (workflow, retries, filters, resources)', () => {
    const d = parseJobDefinition(jobDefinition());
    expect(d.workflow).toBe('scatter_and_gather');
    expect(d.retries).toBe(1);
    expect(d.task_result_filters).toEqual([]);
    expect(d.resources).toEqual({ num_of_gpus: 0, mem_per_gpu_in_GiB: 0, memory_MiB: 0 });
  });

  const bad: Array<[string, Record<string, JsonValue>]> = [
    ['an unknown field', { extra: 1 }],
    ['zero rounds', { rounds: 0 }],
    ['a fractional min_clients', { min_clients: 1.5 }],
    ['min_clients above the sites named', { min_clients: 4 }],
    ['a site name with a path', { deploy: ['../x'] }],
    ['a job name with a leading dot', { name: '.hidden' }],
    ['a workflow name with a path', { workflow: '../cyclic' }],
    ['an unknown aggregator', { aggregator: { name: 'fedmagic' } }],
    ['an aggregator argument out of range', { aggregator: { name: 'trimmed-mean', args: { beta: 0.7 } } }],
    ['a learner without a name', { learner: { args: {} } }],
    ['an unknown field in a filter', { task_result_filters: [{ name: 'gaussian-dp', args: {}, code: 'x' }] }],
    ['a byoc file escaping its folder', { byoc: { files: { '../a.js': '0'.repeat(64) }, signature: '' } }],
  ];
  for (const [what, over] of bad) {
    it(`refuses ${what} (E_RUNTIME_JOB_INVALID)`, () => {
      expect(code(() => parseJobDefinition(jobDefinition(over)))).toBe('E_RUNTIME_JOB_INVALID');
    });
  }

  it('accepts an aggregator from @flare/aggregator\'s schema (krum, norm bound, a server optimizer)', () => {
    expect(parseJobDefinition(jobDefinition({ aggregator: { name: 'krum', args: { f: 1 } } })).aggregator?.name).toBe('krum');
    expect(parseJobDefinition(jobDefinition({ aggregator: { name: 'fedadam', args: { eta: 0.01, normBound: { maxNorm: 5 } } } })).aggregator?.name).toBe('fedadam');
  });

  it('parseMetaJson names the file, line and column of a syntax error, and refuses duplicate keys', () => {
    const err = (() => {
      try {
        parseMetaJson(new TextEncoder().encode('{\n  "name": "x",\n  "rounds" 3\n}'), 'jobs/a/meta.json');
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(isFlareError(err, 'E_RUNTIME_JOB_INVALID')).toBe(true);
    expect(err?.message).toMatch(/^jobs\/a\/meta\.json is not valid JSON at line 3, column 12/);
    expect(code(() => parseMetaJson(new TextEncoder().encode('{"name": "a", "name": "b"}')))).toBe('E_RUNTIME_JOB_INVALID');
    expect(code(() => parseMetaJson(new Uint8Array([0xff, 0xfe])))).toBe('E_RUNTIME_JOB_INVALID');
  });

  it('accepts @ALL with any min_clients', () => {
    expect(parseJobDefinition(jobDefinition({ deploy: ['@ALL'], min_clients: 7 })).deploy).toEqual(['@ALL']);
  });
});
