import type { AggregatorSpec } from '@flare/aggregator';
import type { FLModel, JsonValue, Learner, Logger } from '@flare/core';
import type { PrivacyScope } from '@flare/policy';
import type { z } from 'zod';
import type { LooseAuditEvent } from '../audit.js';
import type { EventBus } from '../event-bus.js';
import type { JobDefinition } from '../protocol/job-definition.js';
import type { RoundRecord } from '../server/job-store.js';
import type { JobAggregation } from './aggregation.js';

/** A task a workflow sends to one site: a kind the site's side of the workflow answers, JSON and bytes. */
export interface WorkflowTask {
  /** The task kind (`train`, `validate`, or the workflow's own: `secagg.share`, ...). */
  readonly kind: string;
  readonly round: number;
  /** A model to send: encoded once however many sites receive the same model object. */
  readonly model?: FLModel;
  /** Raw bytes to send instead of a model. */
  readonly payload?: Uint8Array;
  /** Small JSON for the site (it travels in the header: keep it well under 64 KiB). */
  readonly data?: JsonValue;
  /** The server's audit event id this task answers to. */
  readonly ref?: string | undefined;
}

/** What a site answered to a {@link WorkflowTask}. */
export interface TaskResult {
  readonly site: string;
  /** The answer's bytes (a model's safetensors, or the workflow's own bytes); empty when none. */
  readonly payload: Uint8Array;
  readonly data?: JsonValue;
  /** Numbers the site released through its result filters (validation of the model it received, epsilon spent, ...). */
  readonly metrics: Readonly<Record<string, number>>;
  /** The site's audit event id for the result. */
  readonly ref?: string;
  /** Bytes moved for this task, both directions. */
  readonly bytes: number;
}

/** Where a job (re)starts: round 0 with the initial model, or after its last checkpoint. */
export interface WorkflowStart {
  /** The first round to run. */
  readonly round: number;
  readonly global: FLModel;
  /** What the workflow checkpointed with the model (its own state), when resuming. */
  readonly state?: JsonValue;
}

/**
 * What the server gives a workflow for one job: the sites, a way to send them tasks, the job's aggregation
 * (aggregator from meta.json under the server's policy, encrypted rounds, checks of every update), durable
 * checkpoints, audit. A workflow never touches channels, the job store or a package that implements a
 * scheme (HE, secure aggregation): it composes these.
 */
export interface WorkflowContext {
  readonly job: string;
  readonly definition: JobDefinition;
  readonly start: WorkflowStart;
  /** Sites that take tasks now (deployed, connected, not withdrawn), sorted; a site that rejoins appears again. */
  sites(): readonly string[];
  /**
   * Sends a task and resolves with the site's answer; rejects with a FlareError carrying the site's own code
   * when it refuses or fails, E_RUNTIME_DISCONNECTED when it goes away, the abort reason when the job ends.
   */
  send(site: string, task: WorkflowTask): Promise<TaskResult>;
  readonly aggregation: JobAggregation;
  /**
   * Records round `round` as done, durably: the global model after it, the round's record and the workflow's
   * own state (resumed as `start.state`). A round counts as done once this resolves.
   */
  checkpoint(round: number, global: FLModel, record: RoundRecord, state?: JsonValue): Promise<void>;
  /**
   * Records progress inside round `round`, which is not complete yet, durably: the model so far and the
   * workflow's own state (a hop of a cyclic round). A job resumed after it starts round `round` again with this
   * model as `start.global` and this state as `start.state`. A later {@link checkpoint} supersedes it.
   */
  saveProgress(round: number, global: FLModel, state: JsonValue): Promise<void>;
  /**
   * Stores a named result of the job durably (JSON, e.g. the cross-site evaluation matrix), replacing one of
   * the same name; the admin reads it with `AdminClient.result(job, name)`. `name`: 1-64 of `a-z 0-9 _ -`.
   */
  saveResult(name: string, value: JsonValue): Promise<void>;
  /** Sets the metrics of an already recorded round (validation of round r's model arrives with round r + 1). */
  roundMetrics(round: number, metrics: Readonly<Record<string, number>>, perSite: Readonly<Record<string, Readonly<Record<string, number>>>>): Promise<void>;
  readonly audit: (event: LooseAuditEvent) => string | undefined;
  readonly logger: Logger;
  readonly events: EventBus;
  /** Aborted when the job is aborted or the server shuts down. */
  readonly signal: AbortSignal;
}

/** What a workflow's {@link Workflow.check} sees of a job at submit. */
export interface WorkflowCheck {
  readonly definition: JobDefinition;
  /** `workflow_args` as the workflow's `args` schema returned them (defaults applied). */
  readonly args: unknown;
  /**
   * The aggregator the job names, or else the server policy's default (undefined when the server's own
   * `aggregator` factory makes it: then nothing is known about it here).
   */
  readonly aggregator: AggregatorSpec | undefined;
  /** What the server's aggregation policy requires of every job's aggregator (`require`), when it applies. */
  readonly aggregationRequire: string | undefined;
}

/** The server side of a workflow (FLARE's controller): runs one job from its start to its last round. */
export interface Workflow {
  /** The name meta.json's `workflow` gives. */
  readonly name: string;
  /** Validates meta.json's `workflow_args` (default: the workflow takes none, and any given are refused). */
  readonly args?: z.ZodType;
  /**
   * Refuses at submit a job this workflow cannot run (throw a FlareError: its code reaches the admin), beyond
   * its arguments: e.g. secure aggregation with an aggregator that needs single updates.
   */
  check?(job: WorkflowCheck): void;
  /** Runs the job; resolves when it finished, rejects (a FlareError) when it failed. */
  run(ctx: WorkflowContext): Promise<void>;
}

/** What a site's task handler gets: the task, the job's learner and its filter chains. */
export interface SiteTaskContext {
  readonly site: string;
  readonly job: string;
  readonly round: number;
  readonly kind: string;
  readonly data?: JsonValue;
  readonly payload: Uint8Array;
  /** The signed job's definition (meta.json as the admin signed it), e.g. its deploy list. */
  readonly definition?: JobDefinition;
  /** SHA-256 of the admin-signed job manifest: names this exact job in what a site signs about it (a cyclic hop). */
  readonly manifest?: string;
  /** The job's learner, built at deploy. */
  readonly learner: Learner;
  /**
   * What the site's side of the workflow keeps for this job between its tasks (a local model, a protocol's
   * state): one map per job, dropped when the job ends here. Never sent anywhere by the runtime.
   */
  readonly memory: Map<string, unknown>;
  /** The privacy scope the job runs in at this site (undefined at a site without privacy.json): its rules bind the workflow. */
  readonly scope: PrivacyScope | undefined;
  /** The site's scope data filters, then the job's, on a model coming in. */
  filterIn(model: FLModel): Promise<FLModel>;
  /**
   * The site's scope result filters, then the job's, on anything leaving the site: updates, and metrics (as a
   * model with no tensors when there is no update), so a privacy scope can filter or noise both.
   */
  filterOut(model: FLModel): Promise<FLModel>;
  /** This site's audit log, with the task's event as `ref` by default. */
  readonly audit: (event: LooseAuditEvent) => string | undefined;
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

/** What {@link SiteWorkflow.initialModelTasks} sees of a round-0 task: its kind, the server's JSON, the signed job. */
export interface RoundZeroTask {
  readonly kind: string;
  readonly data?: JsonValue | undefined;
  readonly definition: JobDefinition;
}

/** A site's answer to a task. */
export interface SiteTaskAnswer {
  readonly payload?: Uint8Array;
  readonly data?: JsonValue;
  /** Numbers to release; they must have come out of `filterOut`. */
  readonly metrics?: Readonly<Record<string, number>>;
}

/** Answers one kind of task at a site. Throw a FlareError to refuse (its code reaches the server and the admin). */
export type SiteTaskHandler = (task: SiteTaskContext) => Promise<SiteTaskAnswer>;

/** What a site workflow's {@link SiteWorkflow.admit} sees of a job this site's policy already admitted. */
export interface SiteWorkflowAdmission {
  readonly site: string;
  readonly job: string;
  readonly definition: JobDefinition;
  /** The filters each chain will run, in order (the scope's first), by registered name. */
  readonly filters: { readonly data: readonly string[]; readonly result: readonly string[] };
}

/** The site side of a workflow (FLARE's executor): the task kinds it answers. */
export interface SiteWorkflow {
  readonly name: string;
  readonly tasks: ReadonlyMap<string, SiteTaskHandler>;
  /**
   * Which round-0 tasks bring the job's initial global model (the first model their handler passes to
   * `filterIn`): the site checks it is exactly the initial model the admin signed (E_RUNTIME_INITIAL_MODEL).
   * Task kinds, or a test of the task for workflows where only some round-0 tasks do (a cyclic hop after a site
   * that trained carries that site's model).
   */
  readonly initialModelTasks?: readonly string[] | ((task: RoundZeroTask) => boolean);
  /**
   * The workflow's own checks at deploy, after the site's policy admitted the job: throw a FlareError to refuse
   * it (its code reaches the admin), e.g. secure aggregation with a scope that encrypts updates.
   */
  admit?(job: SiteWorkflowAdmission): void;
}
