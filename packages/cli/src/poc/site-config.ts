import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FlareRuntimeError, parseStrictJson } from '@flare/core';
import { z } from 'zod';
import { DataSources } from '../data-sources.js';

/**
 * A site's own run-time configuration (`<workspace>/site.json`), next to its kit: which data it trains on
 * and which components it admits. It is the site's file, never the job's: a job cannot point a site at
 * other data or widen its allow-list.
 */
export const SiteConfig = z.strictObject({
  data: z
    .strictObject({
      dataset: z.enum(['spam-assassin', 'iris']).default('spam-assassin'),
      /** This site's index among `sites` (0-based), for the poc's deterministic non-IID split. */
      site: z.int().min(0),
      sites: z.int().min(1).max(1000),
      seed: z.int().default(42),
      features: z.int().min(1).max(1 << 20).default(1024),
    })
    .optional(),
  /**
   * The site's own data for the built-in `tfjs` learner, by name (a job names one in its learner args): CSV files
   * or folders of .npy / .safetensors arrays. Paths are the site's: relative to this file's folder, never sent.
   */
  datasets: DataSources.optional(),
  /**
   * This site's budget for secure aggregation with distributed DP: its cap on ε (all jobs together, in the
   * privacy ledger its DP filters share) at δ. Without it the site refuses distributed-DP jobs.
   */
  secagg_dp_budget: z.strictObject({ max_epsilon: z.number().positive().max(1e6), delta: z.number().positive().lt(1).default(1e-5) }).optional(),
  /** The component allow-list (@flare/policy components format) when the kit has none. */
  components: z.strictObject({ allow: z.array(z.string().max(256)).max(4096), byoc: z.boolean().default(false) }).default({ allow: [], byoc: false }),
});
/** A parsed site.json. */
export type SiteConfig = z.output<typeof SiteConfig>;

/** Reads `<workspace>/site.json`; a missing file is an empty configuration (no data, nothing admitted). */
export async function readSiteConfig(workspace: string): Promise<SiteConfig> {
  let text: string;
  try {
    text = await readFile(join(workspace, 'site.json'), 'utf8');
  } catch {
    return SiteConfig.parse({});
  }
  const file = join(workspace, 'site.json');
  let value: unknown;
  try {
    value = parseStrictJson(text);
  } catch (cause) {
    throw new FlareRuntimeError('E_RUNTIME_CONFIG', `${file} is not valid JSON (${cause instanceof Error ? cause.message : 'invalid'})`, { cause });
  }
  const r = SiteConfig.safeParse(value);
  if (!r.success) throw new FlareRuntimeError('E_RUNTIME_CONFIG', `${file}: ${r.error.issues[0]?.path.join('.') || '(top)'}: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}
