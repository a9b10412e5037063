import { FlareRuntimeError, META, add, cloneModel, encodeModel, model, type FLModel } from '@flare/core';
import { checkLocalModelRelease } from '@flare/policy';
import { parseWorkflowArgs } from './args.js';
import { CROSS_SITE_EVAL, CrossSiteEvalArgs } from './cross-site-eval.js';
import { scatterAndGatherSite } from './scatter-gather.js';
import type { SiteTaskContext, SiteTaskHandler, SiteWorkflow } from './workflow.js';

/** Where the site keeps its last local model for the job (SiteTaskContext.memory). */
const LOCAL_MODEL = 'cross_site_eval.local_model';

const sagTrain = scatterAndGatherSite.tasks.get('train')!;
const sagValidate = scatterAndGatherSite.tasks.get('validate')!;

/** The site's own model after training: the global model it trained on plus its update (or the update, when full). */
function localModel(trainedOn: FLModel, update: FLModel): FLModel {
  const params = update.kind === 'diff' ? add(cloneModel(trainedOn), model(update.params, 'diff')).params : cloneModel(update).params;
  return model(params, 'full');
}

/**
 * Scatter-and-gather's `train`, remembering the site's local model (the model it trained on plus its update,
 * before any result filter) for `submit_model`. What leaves the site is exactly what `train` releases.
 */
const train: SiteTaskHandler = async (t: SiteTaskContext) => {
  let trainedOn: FLModel | undefined;
  let update: FLModel | undefined;
  const answer = await sagTrain({
    ...t,
    filterIn: async (m) => (trainedOn = await t.filterIn(m)),
    filterOut: async (m) => {
      update = m;
      return t.filterOut(m);
    },
  });
  if (trainedOn !== undefined && update !== undefined) t.memory.set(LOCAL_MODEL, localModel(trainedOn, update));
  return answer;
};

/**
 * Sends the site's last local model for the others to evaluate, through the site's result filters, unless its
 * privacy scope keeps it here (E_POLICY_LOCAL_MODEL).
 */
const submitModel: SiteTaskHandler = async (t: SiteTaskContext) => {
  checkLocalModelRelease(t.scope);
  const local = t.memory.get(LOCAL_MODEL) as FLModel | undefined;
  if (local === undefined) throw new FlareRuntimeError('E_RUNTIME_JOB_STATE', `${t.site} has no local model for job ${t.job}: it has not trained in this job since it (re)joined`);
  const out = await t.filterOut({ ...cloneModel(local), meta: { [META.CURRENT_ROUND]: t.round } });
  t.audit({ action: 'local_model_released', job: t.job, msg: `local model released for cross-site evaluation (${out.params.size} tensors)`, data: { round: t.round } });
  return { payload: encodeModel(out), metrics: out.metrics ?? {} };
};

/**
 * The site side of cross-site evaluation: `train` (scatter-and-gather's, keeping the local model),
 * `submit_model`, and `validate` (scatter-and-gather's: any model, the global one or another site's).
 */
export const crossSiteEvalSite: SiteWorkflow = {
  name: CROSS_SITE_EVAL,
  initialModelTasks: ['train'],
  tasks: new Map([
    ['train', train],
    ['submit_model', submitModel],
    ['validate', sagValidate],
  ]),
  admit(job) {
    parseWorkflowArgs(CrossSiteEvalArgs, job.definition);
  },
};
