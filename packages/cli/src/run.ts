import { CliError, FlareError } from '@flare/core';

/** Exit codes every `flare` command uses. */
export const EXIT = { ok: 0, refused: 1, usage: 2 } as const;

/**
 * The E_CLI_USAGE error for a command line the CLI does not accept: `problem` is what is wrong (commander's
 * message, with or without its `error: ` prefix), `command` the command it concerns (`flare attest verify`),
 * which the message names together with its --help.
 */
export function usageError(problem: string, command = 'flare'): CliError {
  const what = problem.replace(/^error:\s*/i, '').replace(/\s*\n\s*/g, ' ').trim().replace(/[.\s]*$/, '');
  return new CliError('E_CLI_USAGE', `${command}: ${what}; \`${command} --help\` shows its usage.`);
}

/** Where a command writes; tests pass their own. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

export const stdio: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/**
 * Runs a command body and turns its outcome into an exit code: the number it returns (default 0), 1 with
 * `CODE: message What to do: hint` on stderr for a FlareError, 1 with the message for anything else.
 * Sets process.exitCode instead of exiting, so pending output is flushed.
 */
export async function runCommand(body: () => Promise<number | void> | number | void, io: Io = stdio): Promise<number> {
  let code: number;
  try {
    code = (await body()) ?? EXIT.ok;
  } catch (e) {
    if (e instanceof FlareError) io.err(e.describe());
    else io.err(`error: ${e instanceof Error ? e.message : String(e)}`);
    code = EXIT.refused;
  }
  process.exitCode = code;
  return code;
}
