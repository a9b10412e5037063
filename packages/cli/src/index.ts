// @flare/cli: the `flare` command. Programs embed it through createProgram (e.g. to add their own commands).
export { createProgram, main } from './program.js';
export { EXIT, runCommand, usageError } from './run.js';
export type { Io } from './run.js';
