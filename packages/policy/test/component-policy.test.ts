import { expectFlareCode } from '@flare/core/testing';
import { describe, expect, it } from 'vitest';
import { parseComponentPolicy } from '../src/index.js';


describe('parseComponentPolicy', () => {
  it('reads the allow-list and the BYOC consent (off unless stated)', () => {
    const p = parseComponentPolicy('{"format_version": "1.0", "allow": ["fedavg", "tfjs-learner", "gaussian-dp"], "byoc": true}');
    expect([...p.allow]).toEqual(['fedavg', 'tfjs-learner', 'gaussian-dp']);
    expect(p.byoc).toBe(true);
    expect(parseComponentPolicy({ allow: [] }).byoc).toBe(false);
  });
  it('keeps the learner definitions as read and admits each learner by its name', () => {
    const learners = { 'pytorch-digits': { type: 'external', command: ['python3', 'train.py'] } };
    const p = parseComponentPolicy({ allow: ['fedavg'], learners });
    expect([...p.allow]).toEqual(['fedavg', 'pytorch-digits']);
    expect(p.learners).toEqual(learners);
    expect(parseComponentPolicy({ allow: [] }).learners).toBeUndefined();
  });
  const bad: Array<[string, unknown]> = [
    ['a missing allow list', { byoc: false }],
    ['a pattern instead of a name', { allow: ['fed*'] }],
    ['a name with spaces', { allow: ['fed avg'] }],
    ['byoc as a string', { allow: [], byoc: 'yes' }],
    ['an unknown key', { allow: [], allowed: ['x'] }],
    ['a learner named with spaces', { allow: [], learners: { 'my learner': { type: 'external' } } }],
    ['a learner definition that is not an object', { allow: [], learners: { x: ['python3'] } }],
  ];
  for (const [title, value] of bad) {
    it(`refuses ${title} (E_POLICY_COMPONENTS_PARSE)`, () => {
      expectFlareCode(() => parseComponentPolicy(value), 'E_POLICY_COMPONENTS_PARSE');
    });
  }
});
