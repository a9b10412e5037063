import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { register as pki } from './commands/pki.js';
import { register as runtime } from './commands/runtime.js';
import { register as audit } from './commands/audit.js';
import { register as policy } from './commands/policy.js';
import { register as attest } from './commands/attest.js';
import { register as relay } from './commands/relay.js';
import { register as result } from './commands/result.js';
import { register as metrics } from './commands/metrics.js';
import { register as job } from './commands/job.js';
import { register as simulate } from './commands/simulate.js';
import { EXIT } from './run.js';

// Each command group lives in src/commands/<group>.ts and exports `register(program)`; add one line below.
// result and metrics add `admin result` / `admin metrics`: they come after runtime, which registers `admin`.
const groups: Array<(program: Command) => void> = [pki, runtime, result, relay, policy, audit, attest, metrics, job, simulate];

/** Builds the `flare` program with every command group registered. */
export function createProgram(): Command {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  const program = new Command('flare')
    .description('FLARE-TS: secure federated learning. Provision, run, verify.')
    .version(version)
    .showHelpAfterError()
    .exitOverride();
  for (const register of groups) register(program);
  return program;
}

/** Parses argv and runs the command; usage errors exit 2, help and version 0. */
export async function main(argv: readonly string[] = process.argv): Promise<void> {
  const program = createProgram();
  try {
    await program.parseAsync([...argv]);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    throw e;
  }
}
