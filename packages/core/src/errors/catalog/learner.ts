import type { Catalog } from '../info.js';

/**
 * Error codes of site learners (@flare/runtime's learners: external programs and in-process plugins). Each
 * names the site and the learner in its message and reaches the admin through the task result. Add a code
 * here with its meaning and action, then run `npm run errors:doc`.
 */
export const LEARNER_CODES = {
  E_LEARNER_CONFIG: {
    meaning: "A learner definition in the site's local/components.json (or the arguments a job gives it) does not match its schema: a field is missing, unknown, of the wrong type or out of range.",
    action: 'Fix the field the message names in the `learners` section of local/components.json (or in the job\'s learner args) and restart the site (or resubmit the job).',
  },
  E_LEARNER_START: {
    meaning: 'The learner program could not be started (the command was not found or is not executable), or it did not announce itself on the protocol channel within its start timeout.',
    action: 'Run the command from components.json by hand in the job folder; check that it calls flare.init() (or writes the hello frame) and raise `start_timeout_s` for programs that load slowly.',
  },
  E_LEARNER_VERSION: {
    meaning: 'The learner program speaks a version of the external learner protocol this site does not.',
    action: 'Use the Python client shipped with this @flare/runtime (PYTHONPATH is set for the program), or update the program to the protocol version in docs/learners.md.',
  },
  E_LEARNER_EXITED: {
    meaning: 'The learner program exited or was killed while the site waited for it; the message gives its exit code or signal and its last lines of stderr.',
    action: "Read the program's stderr in the site log; the site starts the program again for the next task, up to `max_restarts` times per job.",
  },
  E_LEARNER_TIMEOUT: {
    meaning: 'The learner program did not answer a task within the time its component allows; the site killed its whole process group.',
    action: 'Raise `train_timeout_s` / `validate_timeout_s` of the learner in local/components.json, or make the training step shorter (fewer epochs or steps).',
  },
  E_LEARNER_PROTOCOL: {
    meaning: 'The learner program wrote bytes that are not a valid protocol frame (wrong magic, bad header, unknown message or an answer to another task), so the site stopped reading and killed it.',
    action: 'Write to the protocol channel only through the FLARE client (flare.send); print logs to stdout or stderr, which the site logs.',
  },
  E_LEARNER_OVERSIZED: {
    meaning: 'The learner program announced a frame larger than the site accepts (a result larger than the global model, or a header over 64 KiB); it was refused before any memory was allocated for it.',
    action: 'Return exactly the tensors of the global model (same names, shapes and dtypes); raise `max_frame_mib` only for very large models.',
  },
  E_LEARNER_RESULT_NAMES: {
    meaning: "The learner's result does not name the same tensors as the global model (a tensor is missing or extra).",
    action: 'Send back every tensor of the received model under its received name (the Python client keeps the names of flare.receive()).',
  },
  E_LEARNER_RESULT_SHAPE: {
    meaning: "A tensor of the learner's result has another shape or dtype than the same tensor of the global model.",
    action: 'Keep each tensor\'s shape and dtype (e.g. convert float64 back to float32) before flare.send.',
  },
  E_LEARNER_NOT_FINITE: {
    meaning: "The learner's result holds NaN or infinite values (in a tensor or a metric), so it was not sent.",
    action: 'Lower the learning rate or check the local data for extreme values; a diverged update would poison the global model.',
  },
  E_LEARNER_FAILED: {
    meaning: 'The learner program reported that it could not do the task (an exception in the training code), with its own message.',
    action: "Read the program's message and its stderr in the site log, fix the training script, and resubmit the job.",
  },
  E_LEARNER_RESTARTS: {
    meaning: 'The learner program failed more times in this job than its `max_restarts` allows, so the site does not start it again for this job.',
    action: 'Fix the cause of the earlier failures (the site log has each one), then resubmit the job.',
  },
  E_LEARNER_PLUGIN: {
    meaning: "An in-process learner plugin named in the site's components.json could not be loaded, or its default export does not make a Learner.",
    action: 'Check the module path or package name, and that its default export is a function (args, env) returning a Learner (train, validate).',
  },
  E_LEARNER_BYOC: {
    meaning: "The learner runs the job's own code ({custom_dir}) but the job brought none, or this site did not verify and consent to it.",
    action: 'Submit the job with its custom/ folder signed by its submitter, and ask the site to consent to BYOC (`byoc: true` in components.json).',
  },
} as const satisfies Catalog;
