import { expectFlareCode } from '@flare/core/testing';
import { describe, expect, it } from 'vitest';
import { ANY_RIGHT, FLARE_COMMAND_CATEGORIES, parseAuthorizationPolicy } from '../src/index.js';


const policy = (permissions: unknown) => ({ format_version: '1.0', permissions });

describe('parseAuthorizationPolicy', () => {
  it('reads FLARE\'s default authorization.json.default (project_admin any; per-right rules for other roles)', () => {
    // The default policy FLARE provisions (flare-compat.md, "Default policy").
    const p = parseAuthorizationPolicy(
      JSON.stringify(
        policy({
          project_admin: 'any',
          org_admin: { submit_job: 'none', clone_job: 'none', manage_job: 'o:submitter', download_job: 'o:submitter', view: 'any', operate: 'o:site', shell_commands: 'o:site', byoc: 'none' },
          lead: { submit_job: 'any', clone_job: 'n:submitter', manage_job: 'n:submitter', download_job: 'n:submitter', view: 'any', operate: 'o:site', shell_commands: 'o:site', byoc: 'any' },
          member: { view: 'any' },
        }),
      ),
    );
    expect([...p.roles.keys()]).toEqual(['project_admin', 'org_admin', 'lead', 'member']);
    expect(p.roles.get('project_admin')!.all!.right).toBe(ANY_RIGHT);
    const lead = p.roles.get('lead')!;
    expect(lead.all).toBeUndefined();
    // manage_job expands to its five commands, each remembering its category.
    for (const c of ['abort', 'abort_job', 'delete_job', 'delete_workspace', 'configure_job_log', 'manage_job']) {
      expect(lead.rights.get(c)?.category, c).toBe('manage_job');
      expect(lead.rights.get(c)?.allowed[0]).toEqual({ kind: 'name', target: 'submitter', text: 'n:submitter' });
    }
    expect(lead.rights.get('ls')?.category).toBe('shell_commands');
    expect(lead.rights.get('byoc')?.category).toBeUndefined();
  });

  it('accepts bytes and parsed values as well as text', () => {
    const v = policy({ lead: 'any' });
    expect(parseAuthorizationPolicy(v).roles.has('lead')).toBe(true);
    expect(parseAuthorizationPolicy(new TextEncoder().encode(JSON.stringify(v))).roles.has('lead')).toBe(true);
  });

  it('folds case and whitespace in role, right and condition names', () => {
    const p = parseAuthorizationPolicy(policy({ '  Lead ': { ' Submit_JOB': 'N:Bob   Smith', VIEW: 'O:Org_A' } }));
    const lead = p.roles.get('lead')!;
    expect(lead.rights.get('submit_job')!.allowed[0]).toEqual({ kind: 'name', target: 'bob smith', text: 'n:bob smith' });
    expect(lead.rights.get('list_jobs')!.allowed[0]!.target).toBe('org_a');
  });

  it('a command entry overrides its category whatever the key order', () => {
    const p = parseAuthorizationPolicy(policy({ lead: { ls: 'o:site', shell_commands: 'none' } }));
    const lead = p.roles.get('lead')!;
    expect(lead.rights.get('ls')!.allowed[0]!.kind).toBe('org');
    expect(lead.rights.get('cat')!.allowed[0]!.kind).toBe('false');
  });

  it('compiles blocking conditions apart from allowing ones', () => {
    const rule = parseAuthorizationPolicy(policy({ lead: { submit_job: ['any', 'not n:eve', 'NOT  o:org_b'] } })).roles.get('lead')!.rights.get('submit_job')!;
    expect(rule.allowed.map((c) => c.text)).toEqual(['any']);
    expect(rule.blocked.map((c) => c.text)).toEqual(['n:eve', 'o:org_b']);
    expect(rule.expression).toEqual(['any', 'not n:eve', 'NOT  o:org_b']);
  });

  it('takes a custom command-category table', () => {
    const p = parseAuthorizationPolicy(policy({ lead: { train_ops: 'o:site' } }), { commandCategories: { start_training: 'train_ops' } });
    expect(p.roles.get('lead')!.rights.get('start_training')!.category).toBe('train_ops');
    expect(p.categories.get('start_training')).toBe('train_ops');
    expect(parseAuthorizationPolicy(policy({ lead: 'any' })).categories).toBe(FLARE_COMMAND_CATEGORIES);
  });

  it('treats a "*" right as the role-wide rule, as FLARE does', () => {
    const lead = parseAuthorizationPolicy(policy({ lead: { '*': 'none', submit_job: 'any' } })).roles.get('lead')!;
    expect(lead.all!.right).toBe('*');
    expect(lead.rights.get('submit_job')).toBeDefined();
  });

  describe('parse errors (E_POLICY_AUTHZ_PARSE) name the role, the right and the expression', () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['a boolean condition', policy({ lead: { submit_job: true } }), /role 'lead', right 'submit_job': bad condition expression type - expect str or list but got a boolean/],
      ['an empty condition list', policy({ lead: { submit_job: [] } }), /role 'lead', right 'submit_job': bad condition expression - no conditions specified/],
      ['an unknown condition type', policy({ lead: { submit_job: 'x:foo' } }), /role 'lead', right 'submit_job', expression "x:foo": bad condition expression "x:foo": invalid type "x"/],
      ['a condition without a type', policy({ lead: { view: 'sometimes' } }), /role 'lead', right 'view', expression "sometimes": bad condition expression "sometimes"/],
      ['too many colons', policy({ lead: { view: 'o:a:b' } }), /right 'view', expression "o:a:b": bad condition expression "o:a:b"/],
      ['a non-string inside a list', policy({ org_admin: { operate: ['o:site', 3] } }), /role 'org_admin', right 'operate': .*got a number in the list/],
      ['an empty target', policy({ lead: { view: 'o:' } }), /role 'lead', right 'view', expression "o:": .*empty org/],
      ['a bad role-wide expression', policy({ member: 'maybe' }), /role 'member', right '\*', expression "maybe"/],
      ['a role given a number', policy({ lead: 7 }), /role 'lead': bad right config: expect a dict but got a number/],
      ['format_version as a number', { format_version: 1.0, permissions: { lead: 'any' } }, /missing or invalid policy format_version: must be 1.0/],
      ['missing permissions', { format_version: '1.0' }, /missing permissions/],
      ['empty permissions', policy({}), /missing permissions/],
      ['permissions as a list', policy(['lead']), /invalid permissions: expect a dict but got a list/],
      ['an unknown top-level key', { format_version: '1.0', permissions: { lead: 'any' }, permission: {} }, /permission/],
      ['a policy that is a list', [], /policy definition must be a dict but got a list/],
      ['two roles equal once folded', policy({ lead: 'any', LEAD: 'none' }), /role "LEAD": defined twice/],
      ['two rights equal once folded', policy({ lead: { submit_job: 'any', Submit_Job: 'none' } }), /role 'lead', right "Submit_Job": defined twice/],
    ];
    for (const [title, value, message] of cases) {
      it(`refuses ${title}`, () => {
        expect(expectFlareCode(() => parseAuthorizationPolicy(value), 'E_POLICY_AUTHZ_PARSE').message).toMatch(message);
      });
    }
    it('refuses text that is not JSON, and duplicate keys that JSON.parse would silently merge', () => {
      expectFlareCode(() => parseAuthorizationPolicy('{"format_version": "1.0",'), 'E_POLICY_AUTHZ_PARSE');
      const dup = '{"format_version":"1.0","permissions":{"lead":"none","lead":"any"}}';
      expect(expectFlareCode(() => parseAuthorizationPolicy(dup), 'E_POLICY_AUTHZ_PARSE').message).toMatch(/duplicate key "lead"/);
      expectFlareCode(() => parseAuthorizationPolicy(new Uint8Array([0xff, 0xfe])), 'E_POLICY_AUTHZ_PARSE');
    });
    it('refuses a misshapen category table as programmer misuse (TypeError)', () => {
      expect(() => parseAuthorizationPolicy(policy({ lead: 'any' }), { commandCategories: { ls: 3 } as unknown as Record<string, string> })).toThrow(TypeError);
    });
  });
});
