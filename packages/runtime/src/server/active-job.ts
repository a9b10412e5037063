import type { Identity, JsonValue } from '@flare/core';
import type { Reason } from '../errors.js';
import type { JobDefinition } from '../protocol/job-definition.js';

/** A job the server is running now: what its parts share. */
export interface ActiveJob {
  readonly id: string;
  readonly definition: JobDefinition;
  /** meta.json as submitted (JSON). */
  readonly raw: JsonValue;
  /** What a site receives at deploy: the job as its admin signed it (an encoded job bundle), read once. */
  readonly bundle: () => Promise<Uint8Array>;
  /** The admin who submitted the job (type `admin`). */
  readonly submitter: Identity;
  /** Sites running the job now (deployed and not gone since). */
  readonly deployed: Set<string>;
  readonly deploying: Set<string>;
  /** Sites that refused the job or left it, with their own reason: not offered it again. */
  readonly refused: Map<string, Reason>;
  /** Sites that refused for now (busy): not offered the job again before this time (ms since the epoch). */
  readonly later: Map<string, number>;
  readonly abort: AbortController;
  /** Set when an admin aborted the job (it ends ABORTED, not FAILED). */
  aborted: boolean;
  /** The admin's signed abort (JSON bytes): it travels with the job_end ABORTED too, which sites obey only signed. */
  abortSignature?: Uint8Array;
}

/** The sites a definition names (all connected ones for `@ALL`). */
export function namedSites(def: JobDefinition, connected: () => readonly string[]): string[] {
  return def.deploy.includes('@ALL') ? [...connected()] : def.deploy.filter((s) => s !== '@ALL');
}
