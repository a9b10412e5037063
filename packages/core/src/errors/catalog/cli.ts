import type { Catalog } from '../info.js';

/** Error codes of the flare command (@flare/cli). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const CLI_CODES = {
  E_CLI_USAGE: {
    meaning: 'The command line is not one the flare command accepts: an unknown command or option, a missing argument or required option, or a value of the wrong form (the message names it); the command did nothing and exits with 2.',
    action: 'Correct the argument the message names; `flare <command> --help` lists the arguments and options of each command and the form of their values.',
  },
  E_CLI_NOT_BUILT: {
    meaning: 'The flare command was run from a clone of the repository before its first build: packages/cli/dist is missing.',
    action: 'Run `npm run build` at the root of the clone, then the command again (an installed @flare/cli always has it).',
  },
  E_CLI_NOT_FOUND: {
    meaning: "A startup kit's start.sh or fl_admin.sh could not find the flare command: not in FLARE_CLI, not on PATH, not where the kit was provisioned, not installed for npx.",
    action: 'Install it (npm install -g @flare/cli; from a FLARE-TS checkout: npm ci && npm run build && npm link -w @flare/cli), or set FLARE_CLI to the command that runs it, e.g. "node /path/to/packages/cli/dist/bin.js".',
  },
  E_CLI_JOB_EXISTS: {
    meaning: '`flare job create` was asked to write a job folder where a file or a non-empty folder already is.',
    action: 'Choose another name or --dir, or move the existing folder away; nothing was written.',
  },
  E_CLI_PYTHON_MISSING: {
    meaning: 'A Python job template needs a python3 that can import what the message names (numpy; torch for --learner pytorch), and none was found.',
    action: 'Install it (Debian/Ubuntu: apt-get install python3-numpy python3-torch; elsewhere: pip install numpy torch), or pass --python with the interpreter that has it.',
  },
  E_CLI_JOB_INIT: {
    meaning: 'The training program of a job template failed to write the initial model (its exit code and last output are in the message).',
    action: 'Run the command the message shows by hand, fix what its output says, then create the job again.',
  },
  E_CLI_JOB_OPTIONS: {
    meaning: '`flare job create` was given options that do not go together (--csv and --label are for --learner tfjs, and each needs the other), or a CSV file whose labels cannot make the job (one class only).',
    action: 'Run `flare job create NAME --learner tfjs --csv FILE --label COLUMN` (add --task regression for a numeric target), or leave --csv and --label out for the other learners.',
  },
  E_CLI_JOB_MODEL_MISMATCH: {
    meaning: 'The job\'s model.safetensors does not hold the tensors the learner expects: a name is missing or extra, or a shape differs.',
    action: 'Write model.safetensors again from the learner\'s own initial weights (`flare job create` does), or change the learner args in meta.json to match the model.',
  },
  E_CLI_SIMULATE_CONFIG: {
    meaning: 'A `flare simulate` option or a file of the simulated sites\' folder (components.json, privacy.json) is invalid, or the job names a learner no simulated site has.',
    action: 'Fix the option or the field the message names; a job\'s learner must be built in (tfjs-spam) or defined in the learners section of the site folder\'s components.json.',
  },
  E_CLI_METRICS_EMPTY: {
    meaning: 'There are no metrics to export or plot: the job has no round with metrics yet, none of the metrics named, or a file read as a metrics CSV is not one.',
    action: 'Wait until the job has completed a round (`flare admin status JOB`), name metrics it has (the table lists them), or give a CSV that `flare admin metrics --csv` wrote.',
  },
} as const satisfies Catalog;
