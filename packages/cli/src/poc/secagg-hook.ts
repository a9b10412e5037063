import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SecAggSitePhase } from '@flare/runtime';

/**
 * TEST HOOK (never for production): the environment variable that makes chosen site processes exit at a named
 * phase of secure aggregation, so an e2e test kills a site at an exact point of the protocol instead of racing
 * a timer. Its value lists `site:phase` pairs, comma-separated, e.g.
 * `FLARE_TEST_SECAGG_EXIT_AT=site-2:masked-input,site-4:unmask`; phases: setup, keys, masked-input,
 * consistency, unmask. `flare poc` passes its environment to every participant process.
 */
export const SECAGG_EXIT_ENV = 'FLARE_TEST_SECAGG_EXIT_AT';

const PHASES: readonly SecAggSitePhase[] = ['setup', 'keys', 'masked-input', 'consistency', 'unmask'];

/** The exit code of a site process the hook stopped (so its log and the test can tell it from a crash). */
const SECAGG_EXIT_CODE = 86;

/**
 * The phase at which `site` must exit, from {@link SECAGG_EXIT_ENV}, or undefined when the variable does not
 * name it. A malformed value is refused (RangeError) so a test cannot silently run without its kill.
 */
export function secaggExitPhase(site: string, env: Readonly<Record<string, string | undefined>> = process.env): SecAggSitePhase | undefined {
  const value = env[SECAGG_EXIT_ENV];
  if (value === undefined || value === '') return undefined;
  for (const pair of value.split(',')) {
    const [name, phase, ...rest] = pair.trim().split(':');
    if (name === undefined || name === '' || phase === undefined || rest.length > 0 || !PHASES.includes(phase as SecAggSitePhase)) {
      throw new RangeError(`${SECAGG_EXIT_ENV}: expected site:phase pairs (phases ${PHASES.join(', ')}), got ${JSON.stringify(pair)}`);
    }
    if (name === site) return phase as SecAggSitePhase;
  }
  return undefined;
}

/** The `beforeAnswer` hook of a site's secure-aggregation workflow from {@link SECAGG_EXIT_ENV}: exits the process at its phase. */
export function secaggExitHook(site: string, log: (message: string) => void, env: Readonly<Record<string, string | undefined>> = process.env): ((phase: SecAggSitePhase) => void) | undefined {
  const at = secaggExitPhase(site, env);
  if (at === undefined) return undefined;
  return (phase) => {
    if (phase !== at) return;
    log(`${SECAGG_EXIT_ENV}: ${site} exits at the ${phase} phase of secure aggregation (test hook)`);
    process.exit(SECAGG_EXIT_CODE);
  };
}

/**
 * TEST HOOK (never for production): when `FLARE_TEST_SECAGG_RECORD=1`, a site writes its plaintext update of each
 * secure-aggregation round (before clipping) to `<workspace>/secagg-test-update-<round>.json`, so an e2e test
 * can check the unmasked sum against the plaintext sum of the summed sites. It defeats secure aggregation by
 * design: the variable exists for tests only.
 */
const SECAGG_RECORD_ENV = 'FLARE_TEST_SECAGG_RECORD';

/** The `onUpdate` hook of a site's secure-aggregation workflow from {@link SECAGG_RECORD_ENV}, or undefined. */
export function secaggRecordHook(workspace: string, env: Readonly<Record<string, string | undefined>> = process.env): ((round: number, update: Float64Array) => void) | undefined {
  if (env[SECAGG_RECORD_ENV] !== '1') return undefined;
  return (round, update) => writeFileSync(join(workspace, `secagg-test-update-${round}.json`), JSON.stringify(Array.from(update)), { mode: 0o600 });
}
