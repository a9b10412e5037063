import { expectFlareCode } from '@flare/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assertAuthorized, authorize, FLARE_COMMAND_CATEGORIES, parseAuthorizationPolicy, type Person } from '../src/index.js';


const parse = (permissions: unknown) => parseAuthorizationPolicy({ format_version: '1.0', permissions });
const alice: Person = { name: 'alice@a.org', org: 'org_a', role: 'lead' };
const bob: Person = { name: 'bob@a.org', org: 'org_a', role: 'lead' };
const carol: Person = { name: 'carol@b.org', org: 'org_b', role: 'lead' };
const ask = (permissions: unknown, right: string, user: Person, submitter: Person | null = null, siteOrg = 'org_a') =>
  authorize(parse(permissions), { right, user, submitter, siteOrg });

describe('authorize', () => {
  describe('each category grants its commands (and itself)', () => {
    const byCategory = new Map<string, string[]>();
    for (const [command, category] of FLARE_COMMAND_CATEGORIES) byCategory.set(category, [...(byCategory.get(category) ?? []), command]);
    for (const [category, commands] of byCategory) {
      it(`${category}: ${commands.join(', ')}`, () => {
        const p = parse({ lead: { [category]: 'any' }, member: { [category]: 'none' } });
        for (const right of [category, ...commands]) {
          expect(authorize(p, { right, user: alice, siteOrg: 'org_a' }).allowed, right).toBe(true);
          expect(authorize(p, { right, user: { ...alice, role: 'member' }, siteOrg: 'org_a' }).allowed, right).toBe(false);
        }
        // A category does not leak into other categories' commands or standalone rights.
        expect(authorize(p, { right: 'submit_job', user: alice, siteOrg: 'org_a' }).allowed).toBe(false);
      });
    }
    it('standalone rights (submit_job, clone_job, byoc) have no category', () => {
      const p = parse({ lead: { submit_job: 'any', byoc: 'none' } });
      expect(authorize(p, { right: 'submit_job', user: alice, siteOrg: 'org_a' }).allowed).toBe(true);
      expect(authorize(p, { right: 'byoc', user: alice, siteOrg: 'org_a' }).allowed).toBe(false);
      expect(authorize(p, { right: 'clone_job', user: alice, siteOrg: 'org_a' }).allowed).toBe(false);
    });
  });

  describe('conditions', () => {
    const table: Array<[string, string, Person, Person | null, boolean]> = [
      ['any', 'any', carol, null, true],
      ['all (= any)', 'all', carol, null, true],
      ['none', 'none', alice, alice, false],
      ['no (= none)', 'no', alice, alice, false],
      ['o:site, same org', 'o:site', alice, null, true],
      ['o:site, other org', 'o:site', carol, null, false],
      ['o:submitter, same org', 'o:submitter', bob, alice, true],
      ['o:submitter, other org', 'o:submitter', carol, alice, false],
      ['o:submitter, no submitter (we differ: false)', 'o:submitter', alice, null, false],
      ['n:submitter, is the submitter', 'n:submitter', alice, alice, true],
      ['n:submitter, another person of the same org', 'n:submitter', bob, alice, false],
      ['n:submitter, no submitter', 'n:submitter', alice, null, false],
      ['o:<org>, matching', 'o:org_b', carol, null, true],
      ['o:<org>, not matching', 'o:org_b', alice, null, false],
      ['org:<org> long form', 'org:org_b', carol, null, true],
      ['n:<name>, matching', 'n:carol@b.org', carol, null, true],
      ['n:<name>, not matching', 'n:carol@b.org', bob, null, false],
      ['name:<name> long form', 'name:bob@a.org', bob, null, true],
    ];
    for (const [title, exp, user, submitter, allowed] of table) {
      it(`${title}: ${allowed ? 'allowed' : 'denied'}`, () => {
        expect(ask({ lead: { abort_job: exp } }, 'abort_job', user, submitter).allowed).toBe(allowed);
      });
    }
    it('a list is OR over its conditions', () => {
      const rule = { lead: { submit_job: ['o:site', 'O:orgA', 'N:john'] } };
      expect(ask(rule, 'submit_job', { name: 'John', org: 'org_z', role: 'lead' }).allowed).toBe(true);
      expect(ask(rule, 'submit_job', { name: 'zz', org: 'ORGA', role: 'lead' }).allowed).toBe(true);
      expect(ask(rule, 'submit_job', alice).allowed).toBe(true);
      expect(ask(rule, 'submit_job', carol).allowed).toBe(false);
    });
    it('a condition on an org named "site" means the site\'s org', () => {
      expect(ask({ lead: { view: 'o:site' } }, 'view', { ...carol, org: 'site' }).allowed).toBe(false);
    });
  });

  describe('blocking conditions', () => {
    const table: Array<[string, unknown, Person, boolean]> = [
      ['a not-only rule allows whoever it does not block', 'not o:org_b', alice, true],
      ['a not-only rule blocks a match', 'not o:org_b', carol, false],
      ['blocking is checked before allowing (any + not n:eve)', ['any', 'not n:eve'], { name: 'eve', org: 'org_a', role: 'lead' }, false],
      ['blocking order in the list does not matter', ['not n:eve', 'any'], { name: 'Eve', org: 'org_a', role: 'lead' }, false],
      ['allowed when not blocked and an allowing condition matches', ['o:site', 'not n:eve'], alice, true],
      ['denied when not blocked but no allowing condition matches', ['o:site', 'not n:eve'], carol, false],
      ['not any blocks everyone', 'not any', alice, false],
      ['not none blocks no one', 'not none', carol, true],
      ['a blocked name may contain spaces (FLARE refuses "not n:eve smith"; we accept it)', 'not n:eve  smith', { name: 'Eve Smith', org: 'org_a', role: 'lead' }, false],
    ];
    for (const [title, exp, user, allowed] of table) {
      it(title, () => {
        const d = ask({ lead: { submit_job: exp } }, 'submit_job', user);
        expect(d.allowed).toBe(allowed);
        if (!allowed && JSON.stringify(exp).includes('not')) expect(d.explanation).toMatch(/blocked by|none of/);
      });
    }
  });

  describe('role shorthand precedence', () => {
    it('a string for a role applies to every right, even unknown ones', () => {
      expect(ask({ lead: 'o:site' }, 'anything', alice).allowed).toBe(true);
      expect(ask({ lead: 'o:site' }, 'anything', carol).allowed).toBe(false);
    });
    it('a list for a role applies to every right', () => {
      expect(ask({ lead: ['n:alice@a.org', 'o:org_b'] }, 'shutdown', carol).allowed).toBe(true);
    });
    it('the role-wide rule is checked before the specific right (FLARE _eval_for_role)', () => {
      expect(ask({ lead: { '*': 'none', submit_job: 'any' } }, 'submit_job', alice).allowed).toBe(false);
      expect(ask({ lead: { '*': 'any', submit_job: 'none' } }, 'submit_job', alice).allowed).toBe(true);
    });
  });

  describe('command-over-category override', () => {
    const rules = { lead: { shell_commands: 'none', ls: 'o:site', grep: 'o:site' } };
    it('the listed command uses its own rule', () => {
      expect(ask(rules, 'ls', alice).allowed).toBe(true);
      expect(ask(rules, 'grep', alice).allowed).toBe(true);
    });
    it('the other commands of the category keep the category rule', () => {
      for (const right of ['cat', 'head', 'pwd', 'tail', 'shell_commands']) expect(ask(rules, right, alice).allowed, right).toBe(false);
    });
    it('an override can also deny what the category allows', () => {
      expect(ask({ lead: { manage_job: 'any', delete_job: 'none' } }, 'delete_job', alice).allowed).toBe(false);
      expect(ask({ lead: { manage_job: 'any', delete_job: 'none' } }, 'abort_job', alice).allowed).toBe(true);
    });
  });

  describe('case and whitespace folding', () => {
    it('role, names, orgs and site org compare case-insensitively with whitespace collapsed', () => {
      const d = ask({ Lead: { Submit_Job: 'n:bob  smith' } }, 'submit_job', { name: ' Bob Smith ', org: 'ORG_A', role: 'LEAD' });
      expect(d.allowed).toBe(true);
      expect(ask({ lead: { view: 'o:site' } }, 'view', { ...alice, org: 'Org_A' }, null, ' ORG_A ').allowed).toBe(true);
    });
    it('the requested right is normalized too (we differ: FLARE never matches SUBMIT_JOB)', () => {
      expect(ask({ lead: { submit_job: 'any' } }, ' SUBMIT_JOB ', alice).allowed).toBe(true);
    });
    it('property: folding the case and spacing of any input never changes the decision', () => {
      const p = parse({ lead: { submit_job: ['o:site', 'not n:eve smith'], shell_commands: 'n:submitter', ls: 'o:org_b' }, member: 'o:org_b' });
      const word = fc.constantFrom('eve smith', 'alice', 'org_a', 'org_b', 'lead', 'member', 'submit_job', 'ls', 'cat', 'view');
      const mangle = (s: string, upper: boolean[], pad: number) =>
        ' '.repeat(pad) + [...s].map((ch, i) => (upper[i % upper.length] ? ch.toUpperCase() : ch)).join('').replace(/ /g, '  \t') + ' '.repeat(pad);
      fc.assert(
        fc.property(word, word, word, word, fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), fc.nat(3), (name, org, role, right, upper, pad) => {
          const plain = authorize(p, { right, user: { name, org, role }, submitter: { name: 'alice', org: 'org_a', role: 'lead' }, siteOrg: 'org_a' });
          const folded = authorize(p, {
            right: mangle(right, upper, pad),
            user: { name: mangle(name, upper, pad), org: mangle(org, upper, pad), role: mangle(role, upper, pad) },
            submitter: { name: mangle('alice', upper, pad), org: 'ORG_A', role: 'lead' },
            siteOrg: mangle('org_a', upper, pad),
          });
          expect(folded.allowed).toBe(plain.allowed);
        }),
        { seed: 6, numRuns: 500 },
      );
    });
  });

  describe('denials', () => {
    it('denies an unknown role, and a right the role does not list, with FLARE\'s sentence', () => {
      const d = ask({ lead: 'any' }, 'submit_job', { name: 'x@a.org', org: 'org_a', role: 'guest' });
      expect(d).toMatchObject({ allowed: false, reason: "user 'x@a.org' is not authorized for 'submit_job'" });
      expect(d.explanation).toBe("the policy has no role 'guest'");
      const e = ask({ lead: { view: 'any' } }, 'submit_job', alice);
      expect(e.reason).toBe("user 'alice@a.org' is not authorized for 'submit_job'");
      expect(e.explanation).toBe("role 'lead' has no rule for 'submit_job'");
    });
    it('has no super role that bypasses the policy (we differ from FLARE)', () => {
      expect(ask({ lead: 'none' }, 'shutdown', { name: 'bob', org: 'org_b', role: 'super' }).allowed).toBe(false);
      expect(ask({ lead: 'none' }, 'shutdown', { name: 'bob', org: 'org_b', role: 'SUPER' }).allowed).toBe(false);
      expect(ask({ super: 'o:site' }, 'shutdown', { name: 'bob', org: 'org_b', role: 'super' }).allowed).toBe(false);
    });
    it('explains which rule and condition decided', () => {
      expect(ask({ lead: { manage_job: 'n:submitter' } }, 'abort_job', bob, alice).explanation).toBe(
        "role 'lead', category 'manage_job': none of \"n:submitter\" matched",
      );
      expect(ask({ lead: { ls: 'o:site' } }, 'ls', alice).explanation).toBe("role 'lead', right 'ls': \"o:site\" matched");
      expect(ask({ lead: 'o:site' }, 'ls', alice).explanation).toBe("role 'lead' (all rights): \"o:site\" matched");
    });
    it('assertAuthorized throws E_POLICY_DENIED when denied and returns the decision when allowed', () => {
      const p = parse({ lead: { submit_job: 'o:site' } });
      expect(assertAuthorized(p, { right: 'submit_job', user: alice, siteOrg: 'org_a' }).allowed).toBe(true);
      const e = expectFlareCode(() => assertAuthorized(p, { right: 'submit_job', user: carol, siteOrg: 'org_a' }), 'E_POLICY_DENIED');
      expect(e.message).toContain("user 'carol@b.org' is not authorized for 'submit_job'");
    });
    it('refuses a misshapen request as programmer misuse (TypeError)', () => {
      const p = parse({ lead: 'any' });
      expect(() => authorize(p, { right: 'x', user: { name: 'a', org: 'b' } as unknown as Person, siteOrg: 'o' })).toThrow(TypeError);
      expect(() => authorize(p, { right: 3 as unknown as string, user: alice, siteOrg: 'o' })).toThrow(TypeError);
    });
  });
});
