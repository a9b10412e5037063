import type { Filter, FilterEnv, JsonValue, Learner, Logger } from '@flare/core';
import type { z } from 'zod';
import type { ComponentSpec, JobDefinition } from './job-definition.js';
import type { Principal } from './server-engine.js';

/** A privacy scope as a site defines it (privacy.json): its own filters, which run before the job's. */
export interface PrivacyScope {
  readonly name: string;
  readonly taskDataFilters: readonly ComponentSpec[];
  readonly taskResultFilters: readonly ComponentSpec[];
}

/**
 * Everything a site decides for itself before a job runs there, as the client engine asks it. @flare/policy
 * provides the file formats (authorization.json, privacy.json, resources.json, allow-list); the CLI adapts
 * them to this interface, and an integrator can supply any implementation.
 */
export interface SitePolicy {
  /** May `user` exercise `right` at this site (FLARE semantics: submit_job, byoc, abort_job, ...)? */
  authorize(request: { readonly user: Principal; readonly right: string; readonly submitter?: Principal }): boolean | Promise<boolean>;
  /** The scope named (or the default scope when `name` is undefined); undefined when the site lacks it. */
  scope(name: string | undefined): PrivacyScope | undefined;
  /** Does the site's component allow-list admit this component name? */
  admitsComponent(name: string): boolean;
  /** Has the site consented to jobs that bring their own code? */
  readonly byocConsent: boolean;
  /** Why the job cannot run now given what already runs (undefined: it can). */
  checkResources(needs: JobDefinition['resources'], runningJobs: number): string | undefined;
  /** What the site reports to the server at registration (resources.json numbers). */
  readonly report: Readonly<Record<string, number>>;
}

/** What a site gives the learners it builds. */
export interface LearnerEnv extends FilterEnv {
  readonly job: string;
  readonly logger?: Logger;
}

/** A learner registered by name at a site (e.g. `tfjs-learner`); `args` validates the job's arguments. */
export interface LearnerFactory<A = Record<string, JsonValue>> {
  readonly name: string;
  readonly args: z.ZodType<A>;
  create(args: A, env: LearnerEnv): Learner | Promise<Learner>;
}

/** A filter built for one job, with the name it was registered under. */
export interface BuiltFilter {
  readonly name: string;
  readonly filter: Filter;
}
