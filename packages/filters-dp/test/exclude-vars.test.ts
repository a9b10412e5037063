import { model, tensor, type AuditEventInput, type FilterContext } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { excludeVars } from '../src/index.js';

const m = () =>
  model({
    'conv1.weight': tensor(new Float32Array(4)),
    'bn1.num_batches_tracked': tensor(new Int32Array(1)),
    'fc.weight': tensor(new Float32Array(2)),
  }, 'diff');
const ctx: FilterContext = { site: 's', job: 'j', round: 0 };

describe('excludeVars', () => {
  it('removes the named tensors and keeps the others (shared, not copied)', async () => {
    const input = m();
    const out = await excludeVars({ names: ['fc.weight', 'absent'] }).apply(input, ctx);
    expect([...out.params.keys()]).toEqual(['conv1.weight', 'bn1.num_batches_tracked']);
    expect(out.params.get('conv1.weight')).toBe(input.params.get('conv1.weight'));
    expect(input.params.size).toBe(3);
  });

  it("removes tensors a regular expression matches anywhere in the name (Python's re.search)", async () => {
    const events: AuditEventInput[] = [];
    const out = await excludeVars({ pattern: 'num_batches' }).apply(m(), { ...ctx, audit: (e) => (events.push(e), undefined) });
    expect([...out.params.keys()]).toEqual(['conv1.weight', 'fc.weight']);
    expect(events[0]?.data?.['excluded']).toBe(1);
  });

  it('is not fooled by a global RegExp (lastIndex state)', async () => {
    const out = await excludeVars({ pattern: /weight/g }).apply(m(), ctx);
    expect([...out.params.keys()]).toEqual(['bn1.num_batches_tracked']);
  });

  it('refuses an empty configuration with RangeError (FLARE would filter nothing)', () => {
    expect(() => excludeVars({ names: [] })).toThrow(RangeError);
    expect(() => excludeVars({} as never)).toThrow(RangeError);
    expect(() => excludeVars({ pattern: /a/i })).toThrow(RangeError);
  });

  it('refuses empty, invalid, too long and backtracking-only patterns (E_MODEL_NAME_PATTERN)', () => {
    for (const pattern of ['', '(', 'x'.repeat(1025), '(a)\\1$', '^(?=a)', '(?<!x)y', /(a)\1/]) {
      expect(() => excludeVars({ pattern })).toThrow(expect.objectContaining({ code: 'E_MODEL_NAME_PATTERN' }));
    }
  });

  it('matches job patterns with the linear-time matcher: a ReDoS pattern on a long name answers correctly', async () => {
    // (a+)+$ against 'aaa...a!' takes 2^n steps in a backtracking engine; core's matcher takes O(n) (its own
    // test bounds the steps). Here: the filter uses that matcher and gets the answer right on long names.
    const long = `${'a'.repeat(4000)}!`;
    const input = model({ [long]: tensor(new Float32Array(1)), aaaa: tensor(new Float32Array(1)) }, 'diff');
    const out = await excludeVars({ pattern: '(a+)+$' }).apply(input, ctx);
    expect([...out.params.keys()]).toEqual([long]);
  });
});
