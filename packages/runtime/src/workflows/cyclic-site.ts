import { CYCLIC, CyclicArgs } from './cyclic.js';
import { parseWorkflowArgs } from './args.js';
import { scatterAndGatherSite } from './scatter-gather.js';
import type { SiteWorkflow } from './workflow.js';

/**
 * The site side of the cyclic workflow: scatter-and-gather's `train` (the model that arrives goes through this
 * site's data filters, the model it passes on through its result filters) and `validate`.
 */
export const cyclicSite: SiteWorkflow = {
  name: CYCLIC,
  tasks: scatterAndGatherSite.tasks,
  admit(job) {
    parseWorkflowArgs(CyclicArgs, job.definition);
  },
};
