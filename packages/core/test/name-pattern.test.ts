import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileNamePattern, ModelError, NAME_PATTERN_LIMITS, toNamePattern } from '../src/index.js';

const refused = (source: string, message?: RegExp) => {
  let thrown: unknown;
  try {
    compileNamePattern(source);
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected ${JSON.stringify(source)} to be refused`).toBeInstanceOf(ModelError);
  expect((thrown as ModelError).code).toBe('E_MODEL_NAME_PATTERN');
  if (message) expect((thrown as ModelError).message).toMatch(message);
};

describe('compileNamePattern: what it matches', () => {
  it.each([
    ['(^|\\.)num_batches_tracked$', 'bn1.num_batches_tracked', true],
    ['(^|\\.)num_batches_tracked$', 'num_batches_tracked', true],
    ['(^|\\.)num_batches_tracked$', 'bn1_num_batches_tracked', false],
    ['^fc\\.', 'fc.weight', true],
    ['^fc\\.', 'conv.fc.weight', false],
    ['weight', 'layer.0.weight.scale', true],
    ['^layer\\.[0-9]+\\.(weight|bias)$', 'layer.12.bias', true],
    ['^layer\\.[0-9]+\\.(weight|bias)$', 'layer.x.bias', false],
    ['^[^.]+$', 'no_dots', true],
    ['^[^.]+$', 'has.dot', false],
    ['\\bfc\\b', 'model.fc.w', true],
    ['\\bfc\\b', 'model.fcx.w', false],
    ['\\Bc\\B', 'abcd', true],
    ['^a{2,3}$', 'aaa', true],
    ['^a{2,3}$', 'aaaa', false],
    ['^a{2,}$', 'aaaaaa', true],
    ['^(?:ab)*?c$', 'ababc', true],
    ['^(?<layer>dense)_\\d$', 'dense_1', true],
    ['\\u{1F600}', 'emoji😀', true],
    ['^\\uD83D\\uDE00$', '😀', true],
    ['^.$', '😀', true],
    ['^[😀-😂]$', '😁', true],
    ['^\\x41\\u0042$', 'AB', true],
    ['[]', 'anything', false],
    ['^[\\w-]+$', 'a-b_c', true],
    ['^\\s*$', ' \t', true],
    ['', 'x', 'refused'],
  ] as const)('%s on %s', (source, name, expected) => {
    if (expected === 'refused') return refused(source);
    expect(compileNamePattern(source).test(name)).toBe(expected);
    expect(new RegExp(source, 'u').test(name)).toBe(expected);
  });

  // Patterns built from the supported grammar, compared with JavaScript's own engine (the `u` flag), on names
  // over a small alphabet so that matches and near-misses are both common.
  const alphabet = ['a', 'b', '.', '_', '1'];
  const pattern: fc.Arbitrary<string> = fc.letrec<{ p: string; alt: string; seq: string; atom: string }>((tie) => ({
    p: tie('alt'),
    alt: fc.oneof({ depthSize: 'xsmall', withCrossShrink: true }, tie('seq'), fc.tuple(tie('seq'), tie('seq')).map(([a, b]) => `${a}|${b}`)),
    seq: fc.array(
      fc.tuple(tie('atom'), fc.constantFrom('', '', '*', '+', '?', '{1,2}', '{2}', '{0,}', '*?')).map(([a, q]) => (a === '^' || a === '$' || a === '\\b' ? a : a + q)),
      { minLength: 1, maxLength: 3 },
    ).map((parts) => parts.join('')),
    atom: fc.oneof(
      { depthSize: 'xsmall' },
      fc.constantFrom('a', 'b', '\\.', '_', '1', '.', '[ab]', '[^a]', '\\d', '\\w', '\\W', '[a-b1]', '^', '$', '\\b'),
      tie('alt').map((inner) => `(${inner})`),
      tie('alt').map((inner) => `(?:${inner})`),
    ),
  })).p.filter((p) => p.length <= 160);

  it('agrees with RegExp (u flag) on the supported syntax (property)', () => {
    fc.assert(
      fc.property(pattern, fc.array(fc.constantFrom(...alphabet), { maxLength: 10 }).map((a) => a.join('')), (source, name) => {
        expect(compileNamePattern(source).test(name)).toBe(new RegExp(source, 'u').test(name));
      }),
      { numRuns: 1000, seed: 2026120514 },
    );
  });
});

describe('compileNamePattern: ReDoS patterns run in linear steps', () => {
  // Classic catastrophic-backtracking patterns (OWASP "Regular expression Denial of Service"; Davis et al.,
  // "The Impact of Regular Expression Denial of Service (ReDoS) in Practice", FSE 2018) on names of 100,000
  // characters. A backtracking engine takes 2^n steps on these; the bound below is linear in the name length.
  const long = 'a'.repeat(100_000);
  const cases: Array<[string, string, boolean]> = [
    ['(a+)+$', `${long}!`, false],
    ['^(a|a)*$', `${long}!`, false],
    ['(a|aa)+$', `${long}!`, false],
    ['(a*)*b', long, false],
    ['^([a-zA-Z]+)*$', `${long}1`, false],
    ['^(\\w+\\s?)*$', `${long}!`, false],
    ['(.*a){20}', long.slice(0, 50_000), true],
    ['(x+x+)+y', 'x'.repeat(100_000), false],
    ['^(([a-z])+.)+[A-Z]([a-z])+$', `${long}!`, false],
    ['(a+)+$', long, true],
  ];
  for (const [source, name, expected] of cases) {
    it(`${source} on ${name.length} characters: ${expected ? 'matches' : 'no match'}, steps <= 2 x states x (length + 1)`, () => {
      const p = compileNamePattern(source);
      const { matched, steps } = p.match(name);
      expect(matched).toBe(expected);
      expect(steps).toBeLessThanOrEqual(2 * p.states * ([...name].length + 1));
    });
  }

  it('the step count grows linearly with the name: doubling the name at most doubles the steps (plus the start)', () => {
    const p = compileNamePattern('(a+)+$');
    const s1 = p.match(`${'a'.repeat(10_000)}!`).steps;
    const s2 = p.match(`${'a'.repeat(20_000)}!`).steps;
    expect(s2).toBeLessThanOrEqual(2 * s1 + 2 * p.states);
  });
});

describe('compileNamePattern: refusals (E_MODEL_NAME_PATTERN)', () => {
  it.each([
    ['(a)\\1', /backreference/],
    ['(?<x>a)\\k<x>', /backreference/],
    ['a(?=b)', /lookaround/],
    ['a(?!b)', /lookaround/],
    ['(?<=a)b', /lookaround/],
    ['(?<!a)b', /lookaround/],
    ['\\p{L}', /property/],
    ['a**', /quantifier after a quantifier/],
    ['a+*', /quantifier after a quantifier/],
    ['a{2}{3}', /quantifier after a quantifier/],
    ['a*?+', /quantifier after a quantifier/],
    ['^*', /quantifier on an assertion/],
    ['\\b+', /quantifier on an assertion/],
    ['*a', /nothing to repeat/],
    ['a{2,1}', /m < n/],
    ['a{1001}', /count above/],
    ['a{', /count/],
    ['a}', /lone/],
    ['(a', /unclosed/],
    ['a)', /unmatched/],
    ['[a', /unclosed/],
    ['[z-a]', /out of order/],
    ['[\\d-z]', /class escape/],
    ['\\q', /unknown escape/],
    ['\\', /ends in/],
    ['\\01', /octal/],
    ['(?i)a', /group modifier/],
    ['\\cA', /control/],
  ])('refuses %s', (source, message) => refused(source, message));

  it('refuses patterns that are too long, too deep or too large once expanded', () => {
    refused('a'.repeat(NAME_PATTERN_LIMITS.maxSource + 1), /1 to 1024 characters/);
    refused(`${'('.repeat(65)}a${')'.repeat(65)}`, /nested deeper/);
    refused('(a{1000}){1000}', /states/);
  });

  it('refuses non-strings as a programming error (TypeError)', () => {
    expect(() => compileNamePattern(1 as unknown as string)).toThrow(TypeError);
    expect(() => compileNamePattern('a').test(undefined as unknown as string)).toThrow(TypeError);
  });
});

describe('toNamePattern', () => {
  it('compiles strings and RegExp sources with the same matcher, and passes compiled patterns through', () => {
    const p = compileNamePattern('^fc\\.');
    expect(toNamePattern(p)).toBe(p);
    expect(toNamePattern('^fc\\.').test('fc.w')).toBe(true);
    expect(toNamePattern(/^fc\./gu).test('fc.w')).toBe(true);
    expect(() => toNamePattern(/(a)\1/)).toThrow(expect.objectContaining({ code: 'E_MODEL_NAME_PATTERN' }));
  });

  it('refuses flags that would change the meaning (RangeError) and other values (TypeError)', () => {
    expect(() => toNamePattern(/a/i)).toThrow(RangeError);
    expect(() => toNamePattern(/a/s)).toThrow(RangeError);
    expect(() => toNamePattern({ source: 'a', test: () => true } as never)).toThrow(TypeError);
  });
});
