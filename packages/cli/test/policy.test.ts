import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { register } from '../src/commands/policy.js';

const dir = mkdtempSync(join(tmpdir(), 'flare-cli-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// site_a's authorization.json from FLARE's federated-policies example (leads may submit only at their own org's site).
const siteA = join(dir, 'authorization.json');
writeFileSync(
  siteA,
  JSON.stringify({
    format_version: '1.0',
    permissions: {
      project_admin: 'any',
      org_admin: { submit_job: 'none', clone_job: 'none', manage_job: 'o:submitter', download_job: 'o:submitter', view: 'any', operate: 'o:site', shell_commands: 'o:site', byoc: 'none' },
      lead: { submit_job: 'o:site', clone_job: 'n:submitter', manage_job: 'n:submitter', download_job: 'n:submitter', view: 'any', operate: 'o:site', shell_commands: 'o:site', byoc: 'any' },
      member: { view: 'any' },
    },
  }),
);
const broken = join(dir, 'broken.json');
writeFileSync(broken, JSON.stringify({ format_version: '1.0', permissions: { lead: { submit_job: 'x:foo' } } }));

/** Runs `flare policy ...` in-process; returns the exit code the command set and what it printed. */
async function flare(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('flare').exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
  register(program, { out: (l) => out.push(l), err: (l) => err.push(l) });
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'flare', ...args]);
  } catch (e) {
    if (e instanceof CommanderError) return { code: e.exitCode === 0 ? 0 : 2, out, err };
    throw e;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { code, out, err };
}
const check = (user: string, org: string, role: string, right: string, extra: string[] = []) =>
  flare(['policy', 'check', '--policy', siteA, '--user', user, '--org', org, '--role', role, '--right', right, '--site-org', 'org_a', ...extra]);

describe('flare policy check', () => {
  it('prints allowed and why, exit 0', async () => {
    const r = await check('trainer@a.org', 'org_a', 'lead', 'submit_job');
    expect(r.code).toBe(0);
    expect(r.out).toEqual(["allowed: user 'trainer@a.org' is authorized for 'submit_job'", "  why: role 'lead', right 'submit_job': \"o:site\" matched", '  rule: "o:site"']);
  });

  it('prints denied and why with FLARE\'s sentence, exit 1', async () => {
    const r = await check('trainer@b.org', 'org_b', 'lead', 'submit_job');
    expect(r.code).toBe(1);
    expect(r.out[0]).toBe("denied: user 'trainer@b.org' is not authorized for 'submit_job'");
    expect(r.out[1]).toBe("  why: role 'lead', right 'submit_job': none of \"o:site\" matched");
  });

  it('evaluates job commands against the submitter', async () => {
    const sub = ['--submitter-name', 'trainer@a.org', '--submitter-org', 'org_a'];
    expect((await check('trainer@a.org', 'org_a', 'lead', 'abort_job', sub)).code).toBe(0);
    const other = await check('trainer@b.org', 'org_b', 'lead', 'abort_job', sub);
    expect(other.code).toBe(1);
    expect(other.out[1]).toContain("category 'manage_job'");
    expect((await check('admin@a.org', 'org_a', 'org_admin', 'abort_job', sub)).code).toBe(0);
    // Without a submitter, o:submitter is false (we differ from FLARE on purpose).
    expect((await check('admin@a.org', 'org_a', 'org_admin', 'abort_job')).code).toBe(1);
  });

  it('a bad policy exits 2 with the code, the place and what to do', async () => {
    const r = await flare(['policy', 'check', '--policy', broken, '--user', 'u', '--org', 'o', '--role', 'lead', '--right', 'submit_job', '--site-org', 'o']);
    expect(r.code).toBe(2);
    expect(r.err[0]).toMatch(/^E_POLICY_AUTHZ_PARSE: role 'lead', right 'submit_job', expression "x:foo": bad condition expression "x:foo": invalid type "x" What to do: /);
    const missing = await flare(['policy', 'check', '--policy', join(dir, 'nope.json'), '--user', 'u', '--org', 'o', '--role', 'lead', '--right', 'x', '--site-org', 'o']);
    expect(missing.code).toBe(2);
    expect(missing.err[0]).toMatch(/^E_POLICY_FILE: /);
  });

  it('usage errors exit 2 (missing option, half a submitter)', async () => {
    expect((await flare(['policy', 'check', '--policy', siteA])).code).toBe(2);
    expect((await check('u', 'o', 'lead', 'abort_job', ['--submitter-name', 'x'])).code).toBe(2);
  });

  it('the flare binary exits 0 / 1 / 2', () => {
    const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
    const run = (args: string[]) => spawnSync(process.execPath, [bin, 'policy', 'check', ...args], { encoding: 'utf8' }).status;
    const who = ['--user', 'trainer@b.org', '--org', 'org_b', '--role', 'lead', '--site-org', 'org_a'];
    expect(run(['--policy', siteA, ...who, '--right', 'list_jobs'])).toBe(0);
    expect(run(['--policy', siteA, ...who, '--right', 'submit_job'])).toBe(1);
    expect(run(['--policy', broken, ...who, '--right', 'submit_job'])).toBe(2);
  });
});
