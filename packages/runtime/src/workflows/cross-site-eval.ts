import { checkUpdateAgainst, decodeModel, manifestOf, type FLModel, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { parseWorkflowArgs } from './args.js';
import { codeOf, scatter, trainRounds } from './scatter-gather.js';
import type { TaskResult, Workflow, WorkflowContext } from './workflow.js';

/** The name meta.json uses. */
export const CROSS_SITE_EVAL = 'cross_site_eval';

/** The name of the job result holding the matrix (`AdminClient.result(job, CROSS_SITE_EVAL_RESULT)`). */
export const CROSS_SITE_EVAL_RESULT = 'cross_site_eval';

/** The row of the final global model in the matrix. */
export const GLOBAL_MODEL = 'global';

/** `workflow_args` of cross-site evaluation. */
export const CrossSiteEvalArgs = z.strictObject({
  /** Seconds the evaluation phase waits for local models, then for every validation (default: round_timeout_s). */
  eval_timeout_s: z.number().positive().max(7 * 24 * 3600).optional(),
});

/** What one site reported for one model: its validation metrics, or the code and reason it gave none. */
export type CrossSiteCell = { readonly metrics: Readonly<Record<string, number>> } | { readonly error: { readonly code: string; readonly message: string } };

/**
 * The cross-site evaluation matrix (FLARE's cross_val_results.json, with every refusal kept): `results[model][site]`
 * is what `site` measured on `model` on its own data; models are the final global model and each site's last
 * local model that left its site.
 */
export interface CrossSiteMatrix {
  readonly format: 'flare-ts/cross-site-eval/v1';
  /** The job's rounds of training before the evaluation. */
  readonly rounds: number;
  /** Row names: `global`, then the sites whose local models were evaluated. */
  readonly models: readonly string[];
  /** Column names: the sites that evaluated. */
  readonly sites: readonly string[];
  readonly results: Readonly<Record<string, Readonly<Record<string, CrossSiteCell>>>>;
  /** Sites whose local model did not leave the site (their privacy scope keeps it, they never trained, ...). */
  readonly refused_models: Readonly<Record<string, { readonly code: string; readonly message: string }>>;
}

const why = (e: unknown): { code: string; message: string } => ({ code: codeOf(e), message: (e instanceof Error ? e.message : String(e)).slice(0, 500) });

/** Validation metrics as a site released them (`val_accuracy`), without the prefix. */
const validationOf = (r: TaskResult): Record<string, number> =>
  Object.fromEntries(Object.entries(r.metrics).flatMap(([k, v]) => (k.startsWith('val_') ? [[k.slice(4), v]] : [])));

/**
 * FLARE's CrossSiteModelEval after scatter-and-gather training: the job's `rounds` rounds of scatter-and-gather
 * (resumable, as there), then every site sends its last local model (`submit_model`, through its own result
 * filters; a privacy scope with `share_local_model: false` refuses with E_POLICY_LOCAL_MODEL), and every site
 * validates the final global model and every local model that arrived (`validate`, through its data filters
 * on the way in and its result filters on the metrics going out). The matrix, with every refusal and its code,
 * is stored as the job result `cross_site_eval`. A local model that does not fit the global model's tensors is
 * refused (E_MODEL_MISMATCH) and never sent to another site.
 */
export const crossSiteEval: Workflow = {
  name: CROSS_SITE_EVAL,
  args: CrossSiteEvalArgs,
  async run(ctx: WorkflowContext): Promise<void> {
    const args = parseWorkflowArgs(CrossSiteEvalArgs, ctx.definition);
    const global = await trainRounds(ctx);
    const round = ctx.definition.rounds;
    const timeoutMs = (args.eval_timeout_s ?? ctx.definition.round_timeout_s) * 1000;
    const manifest = manifestOf(global);
    const sites = ctx.sites();
    const ref = ctx.audit({ action: 'cross_site_eval_started', job: ctx.job, msg: `cross-site evaluation with ${sites.length} sites`, data: { sites: [...sites] } });

    // 1. Local models, each through its own site's result filters.
    const local = new Map<string, FLModel>();
    const refused: Record<string, { code: string; message: string }> = {};
    await scatter(
      ctx,
      sites,
      timeoutMs,
      (site) => ctx.send(site, { kind: 'submit_model', round, ref }),
      (site, r) => {
        try {
          const m = decodeModel(r.payload);
          // Before any other site sees it: a local model must fit the global model's tensors.
          checkUpdateAgainst(manifest, m, { from: site, partial: true });
          local.set(site, m);
          ctx.audit({ action: 'local_model_received', job: ctx.job, ref: r.ref, msg: `local model of ${site} received for cross-site evaluation`, data: { site } });
        } catch (e) {
          refused[site] = why(e);
          ctx.audit({ action: 'local_model_rejected', job: ctx.job, ref: r.ref, msg: `local model of ${site} refused: ${codeOf(e)}`, data: { site, code: codeOf(e) } });
        }
      },
      (site, e, late) => {
        if (late) return;
        refused[site] = why(e);
        ctx.audit({ action: 'local_model_missing', job: ctx.job, ref, msg: `${site} sent no local model: ${codeOf(e)}`, data: { site, code: codeOf(e) } });
      },
    );
    ctx.signal.throwIfAborted();

    // 2. Every site validates every model that arrived; cells default to the timeout until an answer comes.
    const models: Array<[string, FLModel]> = [[GLOBAL_MODEL, global], ...[...local].sort(([a], [b]) => (a < b ? -1 : 1))];
    const results: Record<string, Record<string, CrossSiteCell>> = {};
    for (const [name] of models) results[name] = Object.fromEntries(sites.map((s) => [s, { error: { code: 'E_RUNTIME_TIMEOUT', message: `no answer within ${timeoutMs} ms` } }]));
    const pairs = sites.flatMap((site) => models.map(([name, m]) => ({ site, name, m })));
    await scatter(
      ctx,
      pairs.map((_, i) => String(i)),
      timeoutMs,
      (i) => {
        const p = pairs[Number(i)]!;
        return ctx.send(p.site, { kind: 'validate', round, model: p.m, data: { cross_site_model: p.name }, ref });
      },
      (i, r) => {
        const p = pairs[Number(i)]!;
        results[p.name]![p.site] = { metrics: validationOf(r) };
      },
      (i, e, late) => {
        if (late) return;
        const p = pairs[Number(i)]!;
        results[p.name]![p.site] = { error: why(e) };
      },
    );
    ctx.signal.throwIfAborted();
    const matrix: CrossSiteMatrix = { format: 'flare-ts/cross-site-eval/v1', rounds: round, models: models.map(([n]) => n), sites: [...sites], results, refused_models: refused };
    await ctx.saveResult(CROSS_SITE_EVAL_RESULT, matrix as unknown as JsonValue);
    const failed = Object.values(results).flatMap((row) => Object.values(row)).filter((c) => 'error' in c).length;
    ctx.audit({ action: 'cross_site_eval_done', job: ctx.job, ref, msg: `cross-site evaluation: ${models.length} models x ${sites.length} sites, ${failed} cells without metrics, ${Object.keys(refused).length} local models kept or refused`, data: { models: models.map(([n]) => n), refused: Object.keys(refused) } });
    ctx.logger.info('cross-site evaluation done', { job: ctx.job, models: models.length, sites: sites.length });
  },
};
