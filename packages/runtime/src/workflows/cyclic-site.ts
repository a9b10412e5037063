import { FlareRuntimeError, type FLModel } from '@flare/core';
import { reasonOf } from '../errors.js';
import { CYCLIC, CyclicArgs, CyclicHop } from './cyclic.js';
import { compareHops, nextHopModel, signHop, verifyHop, type CyclicSiteIdentity, type HopPosition } from './cyclic-hop.js';
import { parseWorkflowArgs } from './args.js';
import { scatterAndGatherSite } from './scatter-gather.js';
import type { RoundZeroTask, SiteTaskContext, SiteTaskHandler, SiteWorkflow } from './workflow.js';

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

/** Writes the server's claim about a hop to the site's audit log (`hop_received`, naming the claimed trainer). */
function auditReceived(t: SiteTaskContext, hop: CyclicHop): void {
  const { from } = hop;
  t.audit({
    action: 'hop_received',
    job: t.job,
    ...(from === undefined ? {} : { user: from }),
    msg: `round ${t.round} hop ${hop.hop} (attempt ${hop.attempt}): ${from === undefined ? 'no site trained this model yet this round, says the server' : `the server says ${from} trained this model last`}`,
    data: { round: t.round, hop: hop.hop, attempt: hop.attempt, ...(from === undefined ? {} : { from }), signed: hop.proof !== undefined },
  });
}

const settings = (): Pick<SiteWorkflow, 'name' | 'admit'> => ({
  name: CYCLIC,
  admit(job) {
    parseWorkflowArgs(CyclicArgs, job.definition);
  },
});

/**
 * The site side of the cyclic workflow for a site without a kit identity (the simulator, in-memory tests):
 * scatter-and-gather's `train` (the model that arrives goes through this site's data filters, the model it
 * passes on through its result filters) and `validate`.
 *
 * Round 0 starts from the model the admin signed: a round-0 `train` is checked against the signed initial model
 * (E_RUNTIME_INITIAL_MODEL) unless the server names a site of the job that trained it before this hop. Such a
 * site cannot check that claim (it signs nothing and holds no project root): it writes it to its hash-chained
 * audit log (`hop_received` naming that site). A site with its kit uses {@link signedCyclicSite}, which signs
 * what it trains and verifies what it receives; `flare client` does.
 */
export const cyclicSite: SiteWorkflow = {
  ...settings(),
  initialModelTasks: (task) => task.kind === 'train' && claimedTrainer(task) === undefined,
  tasks: new Map<string, SiteTaskHandler>([
    [
      'train',
      (t) => {
        const hop = CyclicHop.safeParse(t.data);
        if (hop.success) auditReceived(t, hop.data);
        return train(t);
      },
    ],
    ['validate', validate],
  ]),
};

/** The job memory key of the newest hop place this site holds (one it verified or signed). */
const NEWEST = 'cyclic.newest';

/**
 * The site side of the cyclic workflow for a site with its kit: every model it passes on is signed, and every
 * model it receives after round 0's first training is verified before its learner (or its data filters) see it.
 *
 * - It signs the model the next site will receive (the server adds a `diff` result to the model it sent, or
 *   takes a `full` one: the site computes the same, after its result filters) with its kit key, bound to the
 *   project, the admin-signed job's digest, the round, attempt and hop, and its name (`hop_signed`). The proof
 *   and its certificate go back with the result; the server passes them on with the next hop.
 * - It accepts a hop naming a trainer only with that trainer's proof ({@link verifyHop}): chained to the project
 *   root, not revoked by the newest CRL the site holds, a client of the signed job, the name the server claims,
 *   this job, a place before this task and not before what this site already holds, over exactly the tensors
 *   that arrived (`hop_verified`). A hop naming no trainer is the initial model, checked against the admin's
 *   signature: in round 0 only, and only while this site holds no signed hop of the job. Anything else is
 *   refused (`hop_refused` naming the claimed trainer; E_RUNTIME_HOP_*), and the task fails with that code.
 * - The final `validate` model is verified the same way.
 *
 * What it cannot stop: the server may drop hops (say a site timed out) and so send a site any signed model of
 * the job not older than what that site already holds.
 */
export function signedCyclicSite(identity: CyclicSiteIdentity): SiteWorkflow {
  /** Checks the model that arrived with task `t`, before anything else sees it. */
  const check = (t: SiteTaskContext, hop: CyclicHop) => (received: FLModel): void => {
    const current: HopPosition = { round: t.round, attempt: hop.attempt, hop: hop.hop };
    const newest = t.memory.get(NEWEST) as HopPosition | undefined;
    const { from, proof } = hop;
    try {
      if (t.manifest === undefined || t.definition === undefined) {
        throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `job ${t.job}: the task carries no signed job manifest to check the cyclic hop against`);
      }
      if (from === undefined) {
        // The initial model (checked against the admin's signature by the task runner): only before any site trained.
        if (proof !== undefined) throw new FlareRuntimeError('E_RUNTIME_HOP_BINDING', `job ${t.job}: a hop signature arrived naming no trainer`);
        if (t.round > 0) throw new FlareRuntimeError('E_RUNTIME_HOP_UNSIGNED', `job ${t.job}: the model of round ${t.round} names no site that trained it, and is not round 0's initial model`);
        if (newest !== undefined) throw new FlareRuntimeError('E_RUNTIME_HOP_UNSIGNED', `job ${t.job}: the model names no site that trained it, but this site already holds a signed hop of the job (round ${newest.round} attempt ${newest.attempt} hop ${newest.hop}): the initial model again is a rollback`);
        return;
      }
      const p = verifyHop(identity, proof, { job: t.job, manifest: t.manifest, deploy: t.definition.deploy, claimed: from, current, newest }, received);
      if (newest === undefined || compareHops(p, newest) > 0) t.memory.set(NEWEST, { round: p.round, attempt: p.attempt, hop: p.hop });
      t.audit({ action: 'hop_verified', job: t.job, user: p.site, msg: `round ${t.round} hop ${hop.hop}: the model is the one ${p.site} signed at round ${p.round} attempt ${p.attempt} hop ${p.hop}`, data: { round: t.round, hop: hop.hop, attempt: hop.attempt, from: p.site, signed: { round: p.round, attempt: p.attempt, hop: p.hop }, model: p.model } });
    } catch (e) {
      const error = reasonOf(e);
      t.audit({ action: 'hop_refused', job: t.job, ...(from === undefined ? {} : { user: from }), msg: `${error.code}: ${error.message}`, data: { code: error.code, site: t.site, kind: t.kind, round: t.round, hop: hop.hop, attempt: hop.attempt, ...(from === undefined ? {} : { from }) } });
      throw e;
    }
  };
  /** The task's hop data: a site that signs needs its place in the job. */
  const hopOf = (t: SiteTaskContext): CyclicHop => {
    const hop = CyclicHop.safeParse(t.data);
    if (!hop.success) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `job ${t.job} round ${t.round}: the ${t.kind} task's cyclic hop data is malformed (${hop.error.issues[0]?.message ?? 'invalid'})`);
    return hop.data;
  };
  const guarded = (t: SiteTaskContext, hop: CyclicHop): SiteTaskContext => {
    const verify = check(t, hop);
    return {
      ...t,
      filterIn: async (m) => {
        verify(m);
        return t.filterIn(m);
      },
    };
  };
  return {
    ...settings(),
    initialModelTasks: (task) => task.kind === 'train' && CyclicHop.safeParse(task.data).data?.from === undefined,
    tasks: new Map<string, SiteTaskHandler>([
      [
        'train',
        async (t) => {
          const hop = hopOf(t);
          auditReceived(t, hop);
          const answer = await train(guarded(t, hop));
          const position = { round: t.round, attempt: hop.attempt, hop: hop.hop };
          const proof = signHop(identity, t.manifest!, { site: t.site, job: t.job, ...position }, nextHopModel(t.payload, answer.payload ?? new Uint8Array(0)));
          const newest = t.memory.get(NEWEST) as HopPosition | undefined;
          if (newest === undefined || compareHops(position, newest) > 0) t.memory.set(NEWEST, position);
          t.audit({ action: 'hop_signed', job: t.job, msg: `round ${t.round} hop ${hop.hop} (attempt ${hop.attempt}): signed the model the next site receives`, data: { ...position, model: proof.model } });
          return { ...answer, data: { proof } };
        },
      ],
      ['validate', async (t) => validate(guarded(t, hopOf(t)))],
    ]),
  };
}
