import type { z } from 'zod';
import type { Identity } from './identity.js';
import type { JsonValue } from './json.js';
import type { FLModel } from './model.js';

/** An event a component reports for the site's audit log; returns the event id when the log assigns one. */
export interface AuditEventInput {
  /** What happened, as a short verb phrase in snake case (e.g. `filter_applied`, `budget_exhausted`). */
  readonly action: string;
  /** A human sentence; never secrets or model data. */
  readonly msg?: string;
  /** The peer's event id this one answers to (cross-site correlation). */
  readonly ref?: string;
  readonly user?: string;
  readonly job?: string;
  readonly scope?: string;
  /** Small structured details (counts, epsilon spent, ...). */
  readonly data?: Record<string, JsonValue>;
}

/** The hook through which filters, aggregators and learners write audit events. */
export type AuditHook = (event: AuditEventInput) => string | undefined;

/** What a filter knows about where it runs. */
export interface FilterContext {
  /** This site's name (from its kit). */
  readonly site: string;
  /** The job id. */
  readonly job: string;
  /** The task name (e.g. `train`). */
  readonly task?: string;
  /** The round number, from 0. */
  readonly round: number;
  /** The authenticated peer's name, when the filter runs on data received from one. */
  readonly peer?: string;
  /** Where to report what the filter did. */
  readonly audit?: AuditHook;
  /** Aborts long filters when the task is cancelled. */
  readonly signal?: AbortSignal;
}

/**
 * A privacy or transformation step on a model (FLARE's Filter). Filters must not mutate the caller's
 * buffers unless their documentation says so; they return the model to pass on.
 */
export interface Filter {
  readonly name: string;
  apply(model: FLModel, ctx: FilterContext): FLModel | Promise<FLModel>;
}

/** What a site gives the filters it builds: where they may keep state, how they log. */
export interface FilterEnv {
  /** This site's name. */
  readonly site: string;
  /** A folder private to this site for filter state that must survive restarts (e.g. DP budgets). */
  readonly workspace: string;
  readonly logger?: Logger;
}

/**
 * A filter registered by name, so that policy files (privacy.json) and job definitions can refer to it.
 * `args` validates the arguments when the policy or job is loaded, so a typo fails at start, not mid-job.
 *
 * @example
 * ```ts
 * const spec = registry.get('gaussian-dp'); const filter = spec.create(spec.args.parse(json.args), env);
 * ```
 */
export interface FilterFactory<A = unknown> {
  /** The registered name, kebab case (e.g. `gaussian-dp`, `exclude-vars`). */
  readonly name: string;
  readonly args: z.ZodType<A>;
  create(args: A, env: FilterEnv): Filter;
}

/** Where an update comes from and how much it counts. */
export interface AcceptContext {
  /** The authenticated site name (never a field from the message). */
  readonly from: string;
  /** Aggregation weight (default 1). */
  readonly weight?: number;
  /** The round the update belongs to; an aggregator refuses updates for another round. */
  readonly round?: number;
}

/**
 * Combines site updates into one model. Streaming: `accept` each update as it arrives, `result` at the end
 * of the round, `reset` for the next round. Implementations document their memory use.
 */
export interface Aggregator {
  accept(update: FLModel, ctx: AcceptContext): void;
  result(): FLModel;
  reset(): void;
  /**
   * Starts aggregating `round`, forgetting what was accepted since the last start. Optional; when present,
   * callers use it at the start of every attempt of a round, so a retry of round r (too few sites the first
   * time) calls `beginRound(r)` again and its contributions are accepted.
   */
  beginRound?(round: number): void;
}

/**
 * Aggregation of updates that plaintext aggregators cannot read (e.g. CKKS ciphertexts): a scheme recognises
 * the updates in its form, aggregates them, and advances the global model with their aggregate, all without
 * reading them. A server routes each round to the scheme that claims its updates (plaintext arithmetic
 * otherwise), so no workflow needs to know how an encrypted model is built; @flare/filters-he provides the
 * HE scheme.
 */
export interface AggregationScheme {
  /** A short name for logs and audit lines (e.g. `ckks`). */
  readonly name: string;
  /** True when `model` (an update, or a global model this scheme advanced) is in this scheme's form. */
  claims(model: FLModel): boolean;
  /** A new streaming aggregator for one job's updates in this form; `dispose` frees what it holds. */
  createAggregator(): Aggregator & { dispose?(): void };
  /**
   * The global model after a round: `global` advanced by `aggregate` (a `diff` is added, a `full` replaces
   * it), in this scheme's form; `global` may still be the plaintext initial model at the first round.
   */
  advance(global: FLModel, aggregate: FLModel): FLModel;
  /** What an audit line may say about an update in this form, without reading its values (counts, bytes). */
  describe(update: FLModel): Record<string, JsonValue>;
}

/** What a learner knows about its task. */
export interface LearnerContext {
  readonly site: string;
  readonly job: string;
  readonly round: number;
  /** The workflow's task name (e.g. `train`, `validate`); external learners pass it to their program. */
  readonly task?: string;
  /** The rounds the job runs in all, when the workflow knows it (FLARE's `total_rounds`). */
  readonly totalRounds?: number;
  /** The task's meta from the workflow (small JSON), passed on to external learners as is. */
  readonly meta?: Readonly<Record<string, JsonValue>>;
  readonly signal?: AbortSignal;
  /** Progress reports (0..1) for long local training. */
  readonly progress?: (fraction: number) => void;
}

/**
 * Local training at a site. `train` receives the global model and returns an update (a `diff` or `full`
 * model) with meta NUM_STEPS_CURRENT_ROUND; `validate` returns metrics of a model on local data. The site
 * calls `close` once when the job ends or is aborted (an external learner stops its program there); no
 * other call follows it.
 */
export interface Learner {
  train(global: FLModel, ctx: LearnerContext): Promise<FLModel>;
  validate(global: FLModel, ctx: LearnerContext): Promise<Record<string, number>>;
  /** Releases what the learner holds (processes, files, tensors); optional. */
  close?(): Promise<void>;
}

/** The small logging interface libraries accept; @flare/runtime adapts winston to it. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** A logger that drops everything: the default when a caller passes none. */
export const silentLogger: Logger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});

/** A participant of a provisioned project, as kit builders see it: its {@link Identity} and its project.yml entry. */
export interface KitParticipant extends Identity {
  /** Every other key of the participant's project.yml entry (host_names, role, capacity, ...). */
  readonly props: Readonly<Record<string, JsonValue>>;
}

/** What @flare/pki hands to a {@link KitBuilder} while it provisions a project. */
export interface KitBuildContext {
  readonly project: { readonly name: string; readonly participants: readonly KitParticipant[] };
  /** The `args` of this builder's entry in project.yml's `builders`, when the project file names it. */
  readonly args: Readonly<Record<string, JsonValue>> | undefined;
  /**
   * The project's CA state folder, for material that must survive re-provisioning (e.g. HE keys): read
   * returns undefined when the file does not exist yet; write is atomic.
   */
  readonly state: {
    read(file: string): Promise<Uint8Array | undefined>;
    write(file: string, bytes: Uint8Array, options?: { readonly mode?: number }): Promise<void>;
  };
  /** Adds a file to a participant's kit before the kit is signed (`relPath` like `startup/he_context.bin`). */
  addFile(participant: string, relPath: string, bytes: Uint8Array, options?: { readonly mode?: number }): void;
}

/**
 * A provisioning step contributed by another package (filters-he's HE keys, cc-attest's attestation policy).
 * @flare/pki runs registered builders after it has issued certificates and before it signs the kits; the CLI
 * decides which builders are registered. `matches` lists the project.yml builder `path` values (FLARE's Python
 * class paths, e.g. `nvflare.lighter.impl.he.HEBuilder`) whose `args` this builder reads.
 */
export interface KitBuilder {
  readonly name: string;
  readonly matches: readonly string[];
  /**
   * The project.yml participant keys this builder reads from `props` (e.g. `attestation_policy`). @flare/pki
   * refuses participant keys nobody reads (a typo is an error, not a silently ignored setting), so a builder
   * names its own here and the CLI passes them to `loadProject`.
   */
  readonly participantKeys?: readonly string[];
  build(ctx: KitBuildContext): void | Promise<void>;
}

/**
 * A site's own version of a signed kit file, allowed only when it is at least as strict as the signed
 * default: the site keeps `local/<file>` beside the signed `local/<file>.default`, and the package that owns
 * the file decides (cc-attest for attestation_policy.json). @flare/pki's `loadKit` and `verifyKit` run the
 * rules they are given and refuse such a file for which no rule is given.
 */
export interface KitLocalOverride {
  /** The override's file name in local/, e.g. `attestation_policy.json`. */
  readonly file: string;
  /**
   * Throws a FlareError naming the field when `local` is invalid or accepts more than `signedDefault` (the
   * verified bytes of `local/<file>.default`; undefined when the kit has none).
   */
  check(local: Uint8Array, signedDefault: Uint8Array | undefined): void;
}
