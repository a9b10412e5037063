import { join } from 'node:path';
import { FlareRuntimeError, parseStrictJson, readFileIfExists, writeFileAtomic, type AuditHook } from '@flare/core';
import { z } from 'zod';

// A site remembers, durably and within bounds, the signed jobs it has met: a hostile server that replays a job
// bundle its admin signed once (a finished job, an aborted one, one this site refused) is refused with
// E_POLICY_JOB_REPLAYED. A job the site still runs (it was interrupted when the connection dropped, or the site
// restarted) may be deployed again: that is how a server resumes a job. The signed job's age bounds what must
// be remembered: a job first seen longer after its signing than the site's window is refused anyway
// (checkJobFreshness), so entries older than the window can be forgotten.
//
// The file alone is not enough against a local attacker: deleting it, or putting an older copy back, would make
// the site forget what it ran and re-open replays. So every change is first written to the site's hash-chained
// audit log (`job_seen`), whose head the server records at every login (#14.13), and on start the site rebuilds
// what its log says (`jobLedgerFromAudit`) and compares. Entries the file lacks, or holds in an older state, are
// restored from the log, not refused: the log is the anchored record and the file only its index, so refusing
// to start would turn a deleted file into a site that cannot work while the right answer is at hand. The repair
// is loud (E_RUNTIME_JOB_LEDGER_ROLLBACK in a `job_ledger_repaired` event naming the jobs). A file that is not a
// ledger at all is still refused (E_RUNTIME_WORKSPACE): someone wrote it, and an operator must look.

/** The file in the site's workspace. */
export const JOB_LEDGER_FILE = 'job-ledger.json';

/** The audit action of every ledger change: `job` is the job id, `data` the entry (state, signed_at, manifest, code). */
export const JOB_SEEN_ACTION = 'job_seen';

/** The audit action of a ledger that lacked what the audit log recorded, restored from it at start. */
export const JOB_LEDGER_REPAIRED_ACTION = 'job_ledger_repaired';

/** What a site knows of a job id: it runs it (or ran it until the server went away), it ended here, or it refused it. */
type JobLedgerState = 'running' | 'ended' | 'refused';

/** One remembered job. */
export interface JobLedgerEntry {
  readonly state: JobLedgerState;
  /** When its admin signed it (from the verified signature). */
  readonly signed_at: string;
  /** SHA-256 of the signed manifest. */
  readonly manifest: string;
  /** When this site last changed the entry. */
  readonly at: string;
  /** Why it ended or was refused. */
  readonly code?: string | undefined;
}

const Entry = z.strictObject({
  state: z.enum(['running', 'ended', 'refused']),
  signed_at: z.iso.datetime({ precision: 3 }),
  manifest: z.string().regex(/^[0-9a-f]{64}$/),
  at: z.iso.datetime(),
  code: z.string().max(64).optional(),
});
const JOB_ID = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);
const LedgerFile = z.strictObject({ v: z.literal(1), jobs: z.record(JOB_ID, Entry) });
/** A `job_seen` event's data (the site's other fields in it are ignored). */
const SeenData = z.object({ state: Entry.shape.state, signed_at: Entry.shape.signed_at, manifest: Entry.shape.manifest, code: Entry.shape.code });

/**
 * What a site's audit log says of the jobs it met: the last `job_seen` event of each job, in the log's order
 * (what `SiteJobLedgerOptions.audited` and `ClientEngineOptions.auditedJobs` take). Events that do not parse
 * are skipped (they are not the site's own).
 */
export async function jobLedgerFromAudit(events: AsyncIterable<{ readonly action: string; readonly ts?: string | undefined; readonly job?: string | undefined; readonly data?: unknown }> | Iterable<{ readonly action: string; readonly ts?: string | undefined; readonly job?: string | undefined; readonly data?: unknown }>): Promise<Map<string, JobLedgerEntry>> {
  const jobs = new Map<string, JobLedgerEntry>();
  for await (const e of events) {
    if (e.action !== JOB_SEEN_ACTION || !JOB_ID.safeParse(e.job).success) continue;
    const d = SeenData.safeParse(e.data);
    if (!d.success) continue;
    const at = e.ts !== undefined && z.iso.datetime().safeParse(e.ts).success ? e.ts : d.data.signed_at;
    jobs.delete(e.job!);
    jobs.set(e.job!, { state: d.data.state, signed_at: d.data.signed_at, manifest: d.data.manifest, at, ...(d.data.code === undefined ? {} : { code: d.data.code }) });
  }
  return jobs;
}

/** Options of {@link SiteJobLedger.open}. */
export interface SiteJobLedgerOptions {
  /** The window of `checkJobFreshness`: entries of jobs signed longer ago than this may be forgotten. */
  readonly maxAgeMs: number;
  /** Most entries kept (default 4096): beyond it the oldest ended or refused jobs are forgotten first. */
  readonly maxEntries?: number;
  /** The clock (tests). */
  readonly now?: () => Date;
  /** The site's audit log: every change is recorded there first (`job_seen`), and a repair (`job_ledger_repaired`). */
  readonly audit?: AuditHook;
  /**
   * What the site's audit log recorded ({@link jobLedgerFromAudit}): at open, a job the file lacks or holds in an
   * older state (running where the log says ended or refused) is restored from it, audited.
   */
  readonly audited?: ReadonlyMap<string, JobLedgerEntry>;
}

/**
 * The site's memory of the signed jobs it met, in `<workspace>/job-ledger.json` (atomic writes, 0600). Bounded:
 * entries of jobs signed before the age window are dropped (the window refuses those jobs by itself), then the
 * oldest ended or refused ones beyond `maxEntries`.
 */
export class SiteJobLedger {
  readonly #path: string;
  readonly #o: SiteJobLedgerOptions;
  readonly #jobs: Map<string, JobLedgerEntry>;
  #writing: Promise<void> = Promise.resolve();
  #repaired: readonly string[] = [];

  private constructor(path: string, o: SiteJobLedgerOptions, jobs: Map<string, JobLedgerEntry>) {
    this.#path = path;
    this.#o = o;
    this.#jobs = jobs;
  }

  /**
   * Opens the ledger of `workspace` (an absent file is an empty ledger), restoring from `audited` what the file
   * lacks (rewritten at once, audited `job_ledger_repaired` with E_RUNTIME_JOB_LEDGER_ROLLBACK; see {@link repaired}).
   * @throws FlareRuntimeError E_RUNTIME_WORKSPACE when the file exists but is not a ledger (naming the file).
   */
  static async open(workspace: string, o: SiteJobLedgerOptions): Promise<SiteJobLedger> {
    const path = join(workspace, JOB_LEDGER_FILE);
    const bytes = await readFileIfExists(path, { maxBytes: 16 * 1024 * 1024 });
    const jobs = new Map<string, JobLedgerEntry>();
    if (bytes !== undefined) {
      let parsed: z.output<typeof LedgerFile>;
      try {
        parsed = LedgerFile.parse(parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(bytes)));
      } catch (cause) {
        throw new FlareRuntimeError('E_RUNTIME_WORKSPACE', `${path} is not a job ledger this site wrote: move it away only if you know why it changed (the site would forget which jobs it ran)`, { cause });
      }
      for (const [id, e] of Object.entries(parsed.jobs)) jobs.set(id, e);
    }
    const ledger = new SiteJobLedger(path, o, jobs);
    await ledger.#restore(o.audited ?? new Map());
    return ledger;
  }

  /** Jobs restored from the audit log at open (empty when the file had everything the log recorded). */
  get repaired(): readonly string[] {
    return this.#repaired;
  }

  async #restore(audited: ReadonlyMap<string, JobLedgerEntry>): Promise<void> {
    const restored: string[] = [];
    // What the file would hold had nobody touched it: the log's entries under the same bounds.
    const expected = new Map(audited);
    prune(expected, this.#o);
    for (const [id, e] of expected) {
      const have = this.#jobs.get(id);
      // A job only moves from running to ended or refused: a file behind the log was rolled back.
      if (have === undefined || (have.state === 'running' && e.state !== 'running')) {
        this.#jobs.delete(id);
        this.#jobs.set(id, e);
        restored.push(id);
      }
    }
    if (restored.length === 0) return;
    prune(this.#jobs, this.#o);
    this.#repaired = restored.filter((id) => this.#jobs.has(id));
    const n = this.#repaired.length;
    if (n === 0) return;
    const named = this.#repaired.slice(0, 5).join(', ') + (n > 5 ? ', ...' : '');
    this.#o.audit?.({ action: JOB_LEDGER_REPAIRED_ACTION, msg: `${this.#path} lacked ${n} job(s) this site's audit log recorded (${named}): deleted or rolled back; restored from the audit log`, data: { code: 'E_RUNTIME_JOB_LEDGER_ROLLBACK', file: JOB_LEDGER_FILE, repaired: n, jobs: this.#repaired.slice(0, 32) } });
    await this.#flush();
  }

  /** What the site knows of job `id`, if anything. */
  get(id: string): JobLedgerEntry | undefined {
    return this.#jobs.get(id);
  }

  /** Number of remembered jobs. */
  get size(): number {
    return this.#jobs.size;
  }

  /** Records job `id` (durably, before it resolves). */
  async record(id: string, entry: Omit<JobLedgerEntry, 'at'>): Promise<void> {
    // The audit log first: a crash before the file is written leaves the log ahead, and the next start repairs the file.
    this.#o.audit?.({ action: JOB_SEEN_ACTION, job: id, msg: `job ${id} ${entry.state}${entry.code === undefined ? '' : ` (${entry.code})`}`, data: { state: entry.state, signed_at: entry.signed_at, manifest: entry.manifest, ...(entry.code === undefined ? {} : { code: entry.code }) } });
    this.#jobs.delete(id);
    this.#jobs.set(id, { ...entry, at: (this.#o.now?.() ?? new Date()).toISOString() });
    prune(this.#jobs, this.#o);
    await this.#flush();
  }

  /** Marks a job this site ran as ended (no-op for an id it does not know, or one already ended or refused). */
  async end(id: string, code: string): Promise<void> {
    const e = this.#jobs.get(id);
    if (e?.state !== 'running') return;
    await this.record(id, { state: 'ended', signed_at: e.signed_at, manifest: e.manifest, code: code.slice(0, 64) });
  }

  #flush(): Promise<void> {
    const snapshot = JSON.stringify({ v: 1, jobs: Object.fromEntries(this.#jobs) });
    // One write at a time, in order: the last one leaves the newest state on disk.
    this.#writing = this.#writing.catch(() => undefined).then(() => writeFileAtomic(this.#path, snapshot, { mode: 0o600 }));
    return this.#writing;
  }
}

/** Drops, in place, what a ledger need not remember (see SiteJobLedger): the same rule for the file and the log. */
function prune(jobs: Map<string, JobLedgerEntry>, o: SiteJobLedgerOptions): void {
  const now = (o.now?.() ?? new Date()).getTime();
  for (const [id, e] of jobs) {
    // Refused by the age window if it came again: nothing to remember. A running job stays (it may resume).
    if (e.state !== 'running' && now - Date.parse(e.signed_at) > o.maxAgeMs) jobs.delete(id);
  }
  const max = o.maxEntries ?? 4096;
  // Insertion order is the order of the last change: the oldest finished entries go first.
  for (const [id, e] of jobs) {
    if (jobs.size <= max) break;
    if (e.state !== 'running') jobs.delete(id);
  }
  for (const id of jobs.keys()) {
    if (jobs.size <= max) break;
    jobs.delete(id);
  }
}
