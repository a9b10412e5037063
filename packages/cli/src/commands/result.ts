import { resolve } from 'node:path';
import { writeFileAtomic } from '@flare/core';
import { CROSS_SITE_EVAL_RESULT, type CrossSiteMatrix } from '@flare/runtime';
import type { Command } from 'commander';
import { connectAdmin } from '../poc/participants.js';
import { renderCrossSiteMatrix } from '../poc/workflows.js';
import { runCommand, stdio } from '../run.js';

/**
 * `flare admin result JOB [NAME] [-o FILE] [--json]`: a result a job's workflow stored (default
 * `cross_site_eval`, the cross-site evaluation matrix), as a table, as JSON, or written to FILE atomically.
 * Registered under the `admin` command that `commands/runtime.ts` defines (its `--kit` and `--server`).
 */
export function register(program: Command): void {
  const admin = program.commands.find((c) => c.name() === 'admin');
  if (admin === undefined) throw new Error('the admin command group must be registered before admin result');
  admin
    .command('result <job> [name]')
    .description(`a result the job's workflow stored: ${CROSS_SITE_EVAL_RESULT} (default) is the cross-site evaluation matrix`)
    .option('-o, --output <file>', 'write the result as JSON to this file (atomically) instead of printing it')
    .option('--json', 'print the result as JSON instead of a table', false)
    .action((job: string, name: string | undefined, o: { output?: string; json: boolean }) =>
      runCommand(async () => {
        const k = admin.opts<{ kit: string; server?: string }>();
        const client = await connectAdmin(k.kit, k.server);
        let value;
        try {
          value = await client.result(job, name ?? CROSS_SITE_EVAL_RESULT);
        } finally {
          client.close();
        }
        if (o.output !== undefined) {
          const file = resolve(o.output);
          // Atomic: a reader never sees half a matrix; a missing folder is E_FILE_WRITE naming it.
          await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o644 });
          stdio.out(file);
        } else if (o.json || (name ?? CROSS_SITE_EVAL_RESULT) !== CROSS_SITE_EVAL_RESULT) stdio.out(JSON.stringify(value, null, 2));
        else for (const l of renderCrossSiteMatrix(value as unknown as CrossSiteMatrix)) stdio.out(l);
      }).then(() => undefined),
    );
}
