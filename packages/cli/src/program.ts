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
import { EXIT, usageError } from './run.js';

// Each command group lives in src/commands/<group>.ts and exports `register(program)`; add one line below.
// result and metrics add `admin result` / `admin metrics`: they come after runtime, which registers `admin`.
const groups: Array<(program: Command) => void> = [pki, runtime, result, relay, policy, audit, attest, metrics, job, simulate];

/** Builds the `flare` program with every command group registered. */
export function createProgram(): Command {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  const program = new Command('flare')
    .description('FLARE-TS: secure federated learning. Provision, run, verify.')
    .version(version)
    .exitOverride();
  for (const register of groups) register(program);
  codeUsageErrors(program);
  return program;
}

/**
 * Makes every usage error commander reports (unknown option or command, missing argument, a value its parser
 * refused with InvalidArgumentError, `cmd.error(...)`) one E_CLI_USAGE line naming the command, printed the way
 * every refusal is; `main` turns it into exit 2. Set on each command: commander copies output settings to a
 * subcommand only when it is created, and the line names the command it concerns.
 */
function codeUsageErrors(command: Command): void {
  const path = commandPath(command);
  command.configureOutput({ outputError: (message, write) => write(`${usageError(message, path).describe()}\n`) });
  // A group run without one of its commands (`flare`, `flare admin`): commander prints the help to stderr and
  // exits; the coded line after it says why, and `main` makes the exit 2 like every other usage error.
  if (command.commands.length > 0) {
    command.addHelpText('after', ({ error }) => (error ? `\n${usageError('missing command: name one of the commands listed above', path).describe()}` : ''));
  }
  for (const sub of command.commands) codeUsageErrors(sub);
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Parses argv and runs the command; usage errors exit 2 (printed as E_CLI_USAGE), help and version 0. A command
 * group given without a command (bare `flare`, `flare admin`) is a usage error: its help and the coded line go
 * to stderr, exit 2.
 */
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
