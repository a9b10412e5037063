// flare policy check: preview what a site's authorization.json decides, before deploying it.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { FlareError, PolicyError } from '@flare/core';
import { authorize, parseAuthorizationPolicy, type AuthorizationPolicy, type Person } from '@flare/policy';
import { EXIT, runCommand, stdio, usageError, type Io } from '../run.js';

interface CheckOptions {
  policy: string;
  user: string;
  org: string;
  role: string;
  right: string;
  siteOrg: string;
  submitterName?: string;
  submitterOrg?: string;
  submitterRole?: string;
}

/** Reads and parses the policy; any failure is a bad policy (exit 2), printed with its code and what to do. */
async function loadPolicy(path: string): Promise<AuthorizationPolicy> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (cause) {
    throw new PolicyError('E_POLICY_FILE', `cannot read ${path}`, { cause });
  }
  return parseAuthorizationPolicy(bytes);
}

/** Registers `flare policy ...` on `program`; `io` is where it prints (tests pass their own). */
export function register(program: Command, io: Io = stdio): void {
  const policy = program.command('policy').description('site policy tools');
  policy
    .command('check')
    .description("preview a site's authorization decision: exit 0 allowed, 1 denied, 2 bad policy")
    .requiredOption('--policy <file>', 'the authorization.json to evaluate')
    .requiredOption('--user <name>', "the user's name (admin certificate CN)")
    .requiredOption('--org <org>', "the user's org")
    .requiredOption('--role <role>', "the user's role (project_admin, org_admin, lead, member, ...)")
    .requiredOption('--right <right>', 'the right or command, e.g. submit_job, abort_job, ls')
    .requiredOption('--site-org <org>', "the org of the site that decides")
    .option('--submitter-name <name>', "the job's submitter (for job commands)")
    .option('--submitter-org <org>', "the submitter's org")
    .option('--submitter-role <role>', "the submitter's role (not used by conditions; shown for completeness)")
    .action(async (opts: CheckOptions) => {
      if ((opts.submitterName === undefined) !== (opts.submitterOrg === undefined)) {
        io.err(usageError('--submitter-name and --submitter-org go together', 'flare policy check').describe());
        process.exitCode = EXIT.usage;
        return;
      }
      await runCommand(async () => {
        let parsed: AuthorizationPolicy;
        try {
          parsed = await loadPolicy(opts.policy);
        } catch (e) {
          if (!(e instanceof FlareError)) throw e;
          io.err(e.describe());
          return EXIT.usage;
        }
        const submitter: Person | null =
          opts.submitterName === undefined ? null : { name: opts.submitterName, org: opts.submitterOrg ?? '', role: opts.submitterRole ?? '' };
        const d = authorize(parsed, { right: opts.right, user: { name: opts.user, org: opts.org, role: opts.role }, submitter, siteOrg: opts.siteOrg });
        io.out(`${d.allowed ? 'allowed' : 'denied'}: ${d.reason}`);
        io.out(`  why: ${d.explanation}`);
        if (d.rule !== undefined) io.out(`  rule: ${JSON.stringify(d.rule.expression)}`);
        return d.allowed ? EXIT.ok : EXIT.refused;
      }, io);
    });
}
