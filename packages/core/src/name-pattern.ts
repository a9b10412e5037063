import { ModelError } from './errors/areas.js';

// Tensor-name patterns come from job definitions and site policies (exclude-vars, HE tensor selection). A
// backtracking engine (JavaScript's RegExp, Python's re) can take exponential time on patterns such as
// `(a+)+$`, so one pattern from a job could stall a site. This module accepts a documented subset of regular
// expression syntax and matches it with a Thompson NFA simulation (Thompson 1968; Cox, "Regular Expression
// Matching Can Be Simple And Fast", 2007): at most a constant times (states x (name length + 1)) steps,
// whatever the pattern and the name. Constructs that need backtracking (backreferences, lookaround) are refused.

/** Limits of {@link compileNamePattern}. */
export const NAME_PATTERN_LIMITS = Object.freeze({
  /** Longest pattern source, in UTF-16 code units. */
  maxSource: 1024,
  /** Most NFA states after expanding counted repetitions (`{n,m}`). */
  maxStates: 8192,
  /** Largest count in `{n}`, `{n,}` or `{n,m}`. */
  maxCount: 1000,
  /** Deepest group nesting. */
  maxDepth: 64,
});

/** A compiled tensor-name pattern: immutable, safe to share, linear-time to match. */
export interface NamePattern {
  /** The pattern as given. */
  readonly source: string;
  /** NFA states; a match costs at most `2 * states * (length + 1)` steps (see {@link NamePattern.match}). */
  readonly states: number;
  /** True when the pattern matches anywhere in `name` (JavaScript's `RegExp.test`, Python's `re.search`). */
  test(name: string): boolean;
  /** {@link NamePattern.test} with the number of steps the matcher took (states visited and characters tested). */
  match(name: string): { readonly matched: boolean; readonly steps: number };
}

// ---- syntax tree -------------------------------------------------------------------------------------------

/** A set of code points: sorted, merged [lo, hi] ranges, possibly negated. */
interface CharSet {
  readonly ranges: readonly (readonly [number, number])[];
  readonly negate: boolean;
}
type Assertion = 'start' | 'end' | 'word' | 'nonword';
type Node =
  | { readonly t: 'set'; readonly set: CharSet }
  | { readonly t: 'assert'; readonly kind: Assertion }
  | { readonly t: 'cat'; readonly items: readonly Node[] }
  | { readonly t: 'alt'; readonly items: readonly Node[] }
  | { readonly t: 'rep'; readonly item: Node; readonly min: number; readonly max: number }
  | { readonly t: 'empty' };

const MAX_CODE_POINT = 0x10ffff;
const DIGIT: CharSet = { ranges: [[0x30, 0x39]], negate: false };
const WORD: CharSet = { ranges: [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]], negate: false };
// ECMAScript WhiteSpace and LineTerminator (ECMA-262 22.2.2.9, CharacterClassEscape :: s).
const SPACE: CharSet = {
  ranges: [[0x09, 0x0d], [0x20, 0x20], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a], [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff]],
  negate: false,
};
// `.` without the s flag: anything but a line terminator (ECMA-262 22.2.2.7).
const DOT: CharSet = { ranges: [[0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029]], negate: true };
const SYNTAX = new Set('^$\\.*+?()[]{}|/');

const negated = (s: CharSet): CharSet => ({ ranges: s.ranges, negate: !s.negate });

function inSet(set: CharSet, c: number): boolean {
  let hit = false;
  for (const [lo, hi] of set.ranges) {
    if (c < lo) break;
    if (c <= hi) {
      hit = true;
      break;
    }
  }
  return hit !== set.negate;
}

/** Turns a class's items (plain ranges and nested sets) into sorted, merged ranges. */
function normalize(items: readonly CharSet[], negate: boolean): CharSet {
  const ranges: [number, number][] = [];
  for (const item of items) {
    if (!item.negate) ranges.push(...item.ranges.map(([a, b]): [number, number] => [a, b]));
    else {
      // The complement of a sorted range list within [0, MAX_CODE_POINT].
      let next = 0;
      for (const [lo, hi] of item.ranges) {
        if (lo > next) ranges.push([next, lo - 1]);
        next = hi + 1;
      }
      if (next <= MAX_CODE_POINT) ranges.push([next, MAX_CODE_POINT]);
    }
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return { ranges: merged, negate };
}

// ---- parser ------------------------------------------------------------------------------------------------

class Parser {
  readonly #src: string;
  #i = 0;
  #depth = 0;

  constructor(src: string) {
    this.#src = src;
  }

  refuse(what: string, at = this.#i): never {
    throw new ModelError('E_MODEL_NAME_PATTERN', `tensor-name pattern ${JSON.stringify(this.#src.slice(0, 80))}: ${what} at offset ${at}`);
  }

  parse(): Node {
    const node = this.#alternation();
    if (this.#i < this.#src.length) this.refuse(this.#peek() === ')' ? 'an unmatched ")"' : `unexpected ${JSON.stringify(this.#peek())}`);
    return node;
  }

  #peek(): string | undefined {
    return this.#src[this.#i];
  }

  #alternation(): Node {
    const items = [this.#sequence()];
    while (this.#peek() === '|') {
      this.#i++;
      items.push(this.#sequence());
    }
    return items.length === 1 ? items[0]! : { t: 'alt', items };
  }

  #sequence(): Node {
    const items: Node[] = [];
    for (;;) {
      const c = this.#peek();
      if (c === undefined || c === '|' || c === ')') break;
      items.push(this.#quantified());
    }
    return items.length === 0 ? { t: 'empty' } : items.length === 1 ? items[0]! : { t: 'cat', items };
  }

  #quantified(): Node {
    const start = this.#i;
    const atom = this.#atom();
    const q = this.#quantifier();
    if (q === undefined) return atom;
    if (atom.t === 'assert') this.refuse('a quantifier on an assertion', start);
    // Lazy quantifiers match the same names (only which substring matches differs): accepted, same meaning here.
    if (this.#peek() === '?') this.#i++;
    const after = this.#peek();
    if (after !== undefined && '*+?{'.includes(after)) this.refuse('a quantifier after a quantifier (possessive and nested quantifier syntax is not supported)');
    return { t: 'rep', item: atom, min: q.min, max: q.max };
  }

  #quantifier(): { min: number; max: number } | undefined {
    const c = this.#peek();
    if (c === '*') return this.#i++, { min: 0, max: Infinity };
    if (c === '+') return this.#i++, { min: 1, max: Infinity };
    if (c === '?') return this.#i++, { min: 0, max: 1 };
    if (c !== '{') return undefined;
    const m = /^\{(\d{1,7})(,(\d{0,7}))?\}/.exec(this.#src.slice(this.#i, this.#i + 20));
    if (m === null) this.refuse('a "{" that is not a count {n}, {n,} or {n,m} (escape it as \\{)');
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
    if (min > NAME_PATTERN_LIMITS.maxCount || (max !== Infinity && max > NAME_PATTERN_LIMITS.maxCount)) this.refuse(`a count above ${NAME_PATTERN_LIMITS.maxCount}`);
    if (max < min) this.refuse('a count {n,m} with m < n');
    this.#i += m[0].length;
    return { min, max };
  }

  #atom(): Node {
    const at = this.#i;
    const c = this.#src.codePointAt(this.#i)!;
    const ch = String.fromCodePoint(c);
    switch (ch) {
      case '(':
        return this.#group();
      case '[':
        return { t: 'set', set: this.#class() };
      case '.':
        this.#i++;
        return { t: 'set', set: DOT };
      case '^':
        this.#i++;
        return { t: 'assert', kind: 'start' };
      case '$':
        this.#i++;
        return { t: 'assert', kind: 'end' };
      case '\\':
        return this.#escape(false);
      case '*':
      case '+':
      case '?':
        return this.refuse(`a quantifier "${ch}" with nothing to repeat`, at);
      case '{':
      case '}':
      case ']':
        return this.refuse(`a lone "${ch}" (escape it with a backslash)`, at);
      default:
        this.#i += ch.length;
        return { t: 'set', set: { ranges: [[c, c]], negate: false } };
    }
  }

  #group(): Node {
    const at = this.#i;
    this.#i++;
    if (this.#src.startsWith('?', this.#i)) {
      const rest = this.#src.slice(this.#i, this.#i + 3);
      if (rest.startsWith('?:')) this.#i += 2;
      else if (rest.startsWith('?=') || rest.startsWith('?!') || rest.startsWith('?<=') || rest.startsWith('?<!')) this.refuse('lookaround ((?=, (?!, (?<=, (?<!) is not supported', at);
      else if (rest.startsWith('?<')) {
        const m = /^\?<[A-Za-z_$][A-Za-z0-9_$]{0,63}>/.exec(this.#src.slice(this.#i, this.#i + 70));
        if (m === null) this.refuse('a malformed group name', at);
        this.#i += m[0].length;
      } else this.refuse('an unsupported group modifier "(?"', at);
    }
    if (++this.#depth > NAME_PATTERN_LIMITS.maxDepth) this.refuse(`groups nested deeper than ${NAME_PATTERN_LIMITS.maxDepth}`, at);
    const inner = this.#alternation();
    this.#depth--;
    if (this.#peek() !== ')') this.refuse('an unclosed "("', at);
    this.#i++;
    // A group is never a bare assertion, so `($)+` is repeatable, as in JavaScript.
    return inner.t === 'assert' ? { t: 'cat', items: [inner] } : inner;
  }

  /** An escape after `\`: outside a class it may be an assertion; inside it is always a set. */
  #escape(inClass: boolean): Node & { t: 'set' | 'assert' } {
    const at = this.#i;
    this.#i++;
    const c = this.#peek();
    if (c === undefined) return this.refuse('a pattern that ends in "\\"', at);
    this.#i++;
    const one = (cp: number) => ({ t: 'set' as const, set: { ranges: [[cp, cp] as const], negate: false } });
    switch (c) {
      case 'd':
        return { t: 'set', set: DIGIT };
      case 'D':
        return { t: 'set', set: negated(DIGIT) };
      case 'w':
        return { t: 'set', set: WORD };
      case 'W':
        return { t: 'set', set: negated(WORD) };
      case 's':
        return { t: 'set', set: SPACE };
      case 'S':
        return { t: 'set', set: negated(SPACE) };
      case 'b':
        return inClass ? one(0x08) : { t: 'assert', kind: 'word' };
      case 'B':
        if (inClass) return this.refuse('"\\B" inside a class', at);
        return { t: 'assert', kind: 'nonword' };
      case 't':
        return one(0x09);
      case 'n':
        return one(0x0a);
      case 'v':
        return one(0x0b);
      case 'f':
        return one(0x0c);
      case 'r':
        return one(0x0d);
      case '0':
        if (/[0-9]/.test(this.#peek() ?? '')) return this.refuse('an octal escape', at);
        return one(0);
      case 'x': {
        const m = /^[0-9A-Fa-f]{2}/.exec(this.#src.slice(this.#i, this.#i + 2));
        if (m === null) return this.refuse('a malformed "\\x" escape', at);
        this.#i += 2;
        return one(Number.parseInt(m[0], 16));
      }
      case 'u': {
        const m = /^(?:[0-9A-Fa-f]{4}|\{[0-9A-Fa-f]{1,6}\})/.exec(this.#src.slice(this.#i, this.#i + 8));
        const cp = m === null ? NaN : Number.parseInt(m[0].replace(/[{}]/g, ''), 16);
        if (m === null || !(cp <= MAX_CODE_POINT)) return this.refuse('a malformed "\\u" escape', at);
        this.#i += m[0].length;
        // A surrogate pair written as two escapes is one code point (ECMA-262 22.2.1, RegExpUnicodeEscapeSequence).
        const low = /^\\u(d[c-f][0-9a-f]{2})/i.exec(this.#src.slice(this.#i, this.#i + 6));
        if (m[0].length === 4 && cp >= 0xd800 && cp <= 0xdbff && low !== null) {
          this.#i += 6;
          return one(0x10000 + ((cp - 0xd800) << 10) + (Number.parseInt(low[1]!, 16) - 0xdc00));
        }
        return one(cp);
      }
      case 'k':
        return this.refuse('a backreference ("\\k<name>") is not supported', at);
      case 'p':
      case 'P':
        return this.refuse('Unicode property escapes ("\\p{...}") are not supported', at);
      case 'c':
        return this.refuse('control escapes ("\\c") are not supported', at);
      default:
        if (/[1-9]/.test(c)) return this.refuse('a backreference ("\\1".."\\9") is not supported', at);
        if (SYNTAX.has(c) || (inClass && c === '-')) return one(c.codePointAt(0)!);
        return this.refuse(`an unknown escape "\\${c}"`, at);
    }
  }

  #class(): CharSet {
    const at = this.#i;
    this.#i++;
    let negate = false;
    if (this.#peek() === '^') {
      negate = true;
      this.#i++;
    }
    const items: CharSet[] = [];
    const single = (s: CharSet) => (!s.negate && s.ranges.length === 1 && s.ranges[0]![0] === s.ranges[0]![1] ? s.ranges[0]![0] : undefined);
    const member = (): CharSet => {
      if (this.#peek() === '\\') return (this.#escape(true) as { set: CharSet }).set;
      const cp = this.#src.codePointAt(this.#i)!;
      this.#i += cp > 0xffff ? 2 : 1;
      return { ranges: [[cp, cp]], negate: false };
    };
    for (;;) {
      const c = this.#peek();
      if (c === undefined) this.refuse('an unclosed "["', at);
      if (c === ']') break;
      const lo = member();
      if (this.#peek() === '-' && this.#src[this.#i + 1] !== ']' && this.#src[this.#i + 1] !== undefined) {
        this.#i++;
        const hi = member();
        const a = single(lo);
        const b = single(hi);
        if (a === undefined || b === undefined) this.refuse('a range with a class escape as an end (such as [\\d-z])');
        if (a > b) this.refuse('a range out of order');
        items.push({ ranges: [[a, b]], negate: false });
      } else items.push(lo);
    }
    this.#i++;
    return normalize(items, negate);
  }
}

// ---- NFA ---------------------------------------------------------------------------------------------------

// State kinds, in a struct of arrays: a set (consumes one code point), a split (two epsilon edges), an
// assertion (an epsilon edge taken only where it holds), the match.
const SET = 0;
const SPLIT = 1;
const ASSERT = 2;
const MATCH = 3;
const ASSERTIONS: readonly Assertion[] = ['start', 'end', 'word', 'nonword'];

class Nfa {
  readonly kind: number[] = [];
  readonly out: number[] = [];
  readonly out2: number[] = [];
  readonly sets: (CharSet | undefined)[] = [];
  readonly assertion: number[] = [];
  readonly #refuse: (what: string) => never;

  constructor(refuse: (what: string) => never) {
    this.#refuse = refuse;
  }

  add(kind: number, set?: CharSet, assertion = -1): number {
    if (this.kind.length >= NAME_PATTERN_LIMITS.maxStates) this.#refuse(`more than ${NAME_PATTERN_LIMITS.maxStates} states once counted repetitions are expanded`);
    this.kind.push(kind);
    this.out.push(-1);
    this.out2.push(-1);
    this.sets.push(set);
    this.assertion.push(assertion);
    return this.kind.length - 1;
  }

  /** Builds `node` so that it continues at `next`; returns its entry state. Built back to front. */
  build(node: Node, next: number): number {
    switch (node.t) {
      case 'empty':
        return next;
      case 'set': {
        const s = this.add(SET, node.set);
        this.out[s] = next;
        return s;
      }
      case 'assert': {
        const s = this.add(ASSERT, undefined, ASSERTIONS.indexOf(node.kind));
        this.out[s] = next;
        return s;
      }
      case 'cat': {
        let entry = next;
        for (let i = node.items.length - 1; i >= 0; i--) entry = this.build(node.items[i]!, entry);
        return entry;
      }
      case 'alt': {
        let entry = this.build(node.items[node.items.length - 1]!, next);
        for (let i = node.items.length - 2; i >= 0; i--) {
          const s = this.add(SPLIT);
          this.out[s] = this.build(node.items[i]!, next);
          this.out2[s] = entry;
          entry = s;
        }
        return entry;
      }
      case 'rep': {
        let entry = next;
        if (node.max === Infinity) {
          // item* : a split that either enters the item (which loops back to the split) or leaves.
          const loop = this.add(SPLIT);
          this.out[loop] = this.build(node.item, loop);
          this.out2[loop] = next;
          entry = loop;
        } else {
          for (let k = node.max - node.min; k > 0; k--) {
            const s = this.add(SPLIT);
            this.out[s] = this.build(node.item, entry);
            this.out2[s] = next;
            entry = s;
          }
        }
        for (let k = 0; k < node.min; k++) entry = this.build(node.item, entry);
        return entry;
      }
    }
  }
}

const isWord = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || (c >= 0x61 && c <= 0x7a);

class CompiledPattern implements NamePattern {
  readonly source: string;
  readonly states: number;
  readonly #nfa: Nfa;
  readonly #start: number;

  constructor(source: string, nfa: Nfa, start: number) {
    this.source = source;
    this.states = nfa.kind.length;
    this.#nfa = nfa;
    this.#start = start;
    Object.freeze(this);
  }

  test(name: string): boolean {
    return this.match(name).matched;
  }

  match(name: string): { readonly matched: boolean; readonly steps: number } {
    if (typeof name !== 'string') throw new TypeError('"name" expected a string');
    const { kind, out, out2, sets, assertion } = this.#nfa;
    const n = kind.length;
    const points: number[] = [];
    for (const ch of name) points.push(ch.codePointAt(0)!);
    const len = points.length;
    // Two lists of live states; `mark[s] === gen` means s is already in the list being built.
    let current = new Int32Array(n);
    let nextList = new Int32Array(n);
    let count = 0;
    let nextCount = 0;
    const mark = new Int32Array(n).fill(-1);
    const stack = new Int32Array(n);
    let steps = 0;
    let matched = false;
    let gen = 0;

    const holds = (a: number, at: number): boolean => {
      switch (ASSERTIONS[a]) {
        case 'start':
          return at === 0;
        case 'end':
          return at === len;
        default: {
          const before = at > 0 && isWord(points[at - 1]!);
          const after = at < len && isWord(points[at]!);
          return (before !== after) === (ASSERTIONS[a] === 'word');
        }
      }
    };
    // Adds the epsilon closure of `s` at position `at` to nextList (iterative: no recursion depth issues).
    const addClosure = (s0: number, at: number): void => {
      let top = 0;
      if (mark[s0] === gen) return;
      mark[s0] = gen;
      stack[top++] = s0;
      while (top > 0) {
        const s = stack[--top]!;
        steps++;
        const k = kind[s]!;
        if (k === MATCH) matched = true;
        else if (k === SET) nextList[nextCount++] = s;
        else {
          const targets = k === SPLIT ? [out2[s]!, out[s]!] : holds(assertion[s]!, at) ? [out[s]!] : [];
          for (const t of targets) {
            if (mark[t] !== gen) {
              mark[t] = gen;
              stack[top++] = t;
            }
          }
        }
      }
    };

    for (let at = 0; at <= len && !matched; at++) {
      // Search semantics: a match may start at any position, so the start state joins every step.
      addClosure(this.#start, at);
      if (matched || at === len) break;
      [current, nextList] = [nextList, current];
      count = nextCount;
      nextCount = 0;
      gen++;
      const c = points[at]!;
      for (let i = 0; i < count && !matched; i++) {
        const s = current[i]!;
        steps++;
        if (inSet(sets[s]!, c)) addClosure(out[s]!, at + 1);
      }
    }
    return { matched, steps };
  }
}

/**
 * Compiles a tensor-name pattern: a subset of JavaScript regular expression syntax (with the `u` flag's
 * meaning), matched in time linear in the name's length for any pattern, so patterns from jobs cannot stall a
 * site. A pattern matches when it matches anywhere in the name (`RegExp.test`, Python's `re.search`); anchor it
 * with `^` and `$` to match whole names.
 *
 * Supported: literal characters; `.`; classes `[a-z_]`, `[^...]`; escapes `\d \D \w \W \s \S \b \B \t \n \v
 * \f \r \0 \xHH \uHHHH \u{H...}` and escaped syntax characters (`\.`, `\\`, `\(`, ...); groups `(...)`,
 * `(?:...)`, `(?<name>...)`; alternation `|`; anchors `^ $`; quantifiers `* + ? {n} {n,} {n,m}` (counts up to
 * 1,000) and their lazy forms. Refused with E_MODEL_NAME_PATTERN: backreferences (`\1`, `\k<name>`),
 * lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`), Unicode property escapes, quantifiers on assertions or on
 * quantifiers, patterns longer than 1,024 characters, nesting deeper than 64, or more than 8,192 states once
 * counted repetitions are expanded. Nested quantifiers such as `(a+)+` are accepted: they cost nothing extra here.
 *
 * @throws ModelError E_MODEL_NAME_PATTERN naming the construct and its offset.
 * @example
 * ```ts
 * const p = compileNamePattern('(^|\\.)num_batches_tracked$');
 * p.test('bn1.num_batches_tracked'); // true
 * ```
 */
export function compileNamePattern(source: string): NamePattern {
  if (typeof source !== 'string') throw new TypeError('"source" expected a string');
  if (source.length === 0 || source.length > NAME_PATTERN_LIMITS.maxSource) {
    throw new ModelError('E_MODEL_NAME_PATTERN', `a tensor-name pattern must have 1 to ${NAME_PATTERN_LIMITS.maxSource} characters, got ${source.length}`);
  }
  const parser = new Parser(source);
  const tree = parser.parse();
  const nfa = new Nfa((what) => {
    throw new ModelError('E_MODEL_NAME_PATTERN', `tensor-name pattern ${JSON.stringify(source.slice(0, 80))}: ${what}`);
  });
  const match = nfa.add(MATCH);
  const start = nfa.build(tree, match);
  return new CompiledPattern(source, nfa, start);
}

/**
 * A tensor-name pattern from a string, a RegExp (its source, compiled by {@link compileNamePattern}: flags other
 * than g, y and u are refused) or an already compiled pattern. For APIs that accepted RegExp objects before:
 * whatever the caller passes, matching runs in linear time.
 *
 * @throws ModelError E_MODEL_NAME_PATTERN; TypeError for anything else; RangeError for unsupported flags.
 */
export function toNamePattern(pattern: string | RegExp | NamePattern): NamePattern {
  if (typeof pattern === 'string') return compileNamePattern(pattern);
  if (pattern instanceof RegExp) {
    if (/[^gyu]/.test(pattern.flags)) throw new RangeError(`RegExp flags ${JSON.stringify(pattern.flags)} are not supported for tensor names (patterns are case-sensitive and single-line)`);
    return compileNamePattern(pattern.source);
  }
  if (pattern instanceof CompiledPattern) return pattern;
  throw new TypeError('a tensor-name pattern must be a string, a RegExp or a pattern from compileNamePattern');
}
