import { CYCLIC, CyclicArgs, CyclicHop } from './cyclic.js';
import { parseWorkflowArgs } from './args.js';
import { scatterAndGatherSite } from './scatter-gather.js';
import type { RoundZeroTask, SiteTaskHandler, SiteWorkflow } from './workflow.js';

const train = scatterAndGatherSite.tasks.get('train')!;
const validate = scatterAndGatherSite.tasks.get('validate')!;

/**
 * The site the server says trained the model of this hop last, when that claim is well formed and names a site
 * of the signed job (any name under `@ALL`); undefined otherwise.
 */
function claimedTrainer(task: Pick<RoundZeroTask, 'data' | 'definition'>): string | undefined {
  const hop = CyclicHop.safeParse(task.data);
  const from = hop.success ? hop.data.from : undefined;
  if (from === undefined) return undefined;
  const deploy = task.definition.deploy;
  return deploy.includes('@ALL') || deploy.includes(from) ? from : undefined;
}

/**
 * The site side of the cyclic workflow: scatter-and-gather's `train` (the model that arrives goes through this
 * site's data filters, the model it passes on through its result filters) and `validate`.
 *
 * Round 0 starts from the model the admin signed. A hop's model is the initial model until a site has trained
 * it, so a round-0 `train` is checked against the signed initial model (E_RUNTIME_INITIAL_MODEL) unless the
 * server names a site of the job that trained it before this hop. The site cannot verify that claim alone (the
 * previous site's training is not signed), so it writes it to its hash-chained audit log (`hop_received`
 * naming that site): the claimed site's own log shows whether it sent a round-0 result for the job. A claim
 * that is missing, malformed or names a site outside the job is no claim: the model is checked.
 */
export const cyclicSite: SiteWorkflow = {
  name: CYCLIC,
  initialModelTasks: (task) => task.kind === 'train' && claimedTrainer(task) === undefined,
  tasks: new Map<string, SiteTaskHandler>([
    [
      'train',
      (t) => {
        const hop = CyclicHop.safeParse(t.data);
        if (hop.success) {
          const { from } = hop.data;
          t.audit({
            action: 'hop_received',
            job: t.job,
            ...(from === undefined ? {} : { user: from }),
            msg: `round ${t.round} hop ${hop.data.hop} (attempt ${hop.data.attempt}): ${from === undefined ? 'no site trained this model yet this round, says the server' : `the server says ${from} trained this model last`}`,
            data: { round: t.round, hop: hop.data.hop, attempt: hop.data.attempt, ...(from === undefined ? {} : { from }) },
          });
        }
        return train(t);
      },
    ],
    ['validate', validate],
  ]),
  admit(job) {
    parseWorkflowArgs(CyclicArgs, job.definition);
  },
};
