import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditLog, readEvents, verifyAuditLog } from '@flare/audit';
import type { FilterFactory } from '@flare/core';
import { createDpFilterFactories, LEDGER_HEAD_ACTION, ledgerHeadsFromAudit } from '@flare/filters-dp';
import { CHECKPOINT_SAVED_ACTION, checkpointHeadsFromAudit, JOB_SEEN_ACTION, jobLedgerFromAudit } from '@flare/runtime';
import type { Stack } from './participants.js';

interface ReadBackEvent {
  readonly action: string;
  readonly ts?: string | undefined;
  readonly job?: string | undefined;
  readonly data?: unknown;
}

/** The actions the participant reads back from its own log at start (privacy ledgers, checkpoints, jobs seen). */
const READ_BACK = new Set([LEDGER_HEAD_ACTION, CHECKPOINT_SAVED_ACTION, JOB_SEEN_ACTION]);

/** One pass over the log (only events whose hash checks), keeping the records a participant reads back at start. */
async function readBack(path: string): Promise<ReadBackEvent[]> {
  const kept: ReadBackEvent[] = [];
  if (!existsSync(path)) return kept;
  for await (const { record } of readEvents(path)) if (READ_BACK.has(record.action)) kept.push(record);
  return kept;
}

/** The audit log file of a participant's workspace. */
const AUDIT_FILE = 'audit.jsonl';

/**
 * The stack the `flare` commands run with: @flare/audit's hash-chained log signed with the kit key,
 * the runtime's default aggregator (@flare/aggregator's streaming FedAvg), @flare/filters-dp's filters (gaussian-dp,
 * dp-sgd, percentile, svt, exclude-vars) for privacy.json and jobs to name.
 */
export function defaultStack(): Stack {
  return {
    async openAudit(dir, kit) {
      const file = join(dir, AUDIT_FILE);
      const records = await readBack(file);
      // The privacy ledgers' heads this log recorded in earlier runs: a ledger deleted or restored from an older
      // copy while the participant was down is then refused (E_DP_LEDGER_ROLLBACK), not silently re-opened.
      const ledgerHeads = await ledgerHeadsFromAudit(records);
      // The newest checkpoint of each job a server's log recorded: an older copy put back on disk is refused on resume.
      const checkpointHeads = await checkpointHeadsFromAudit(records);
      // The signed jobs a site met: a job-ledger.json deleted or rolled back while it was down is restored from these.
      const auditedJobs = await jobLedgerFromAudit(records);
      const log = await AuditLog.open(file, { site: kit.participant.name, signer: kit.privateKey });
      return {
        hook: log.append,
        tail: async (n) => {
          log.flush();
          const text = await readFile(file, 'utf8');
          return text.trimEnd().split('\n').slice(-n);
        },
        close: () => log.close(),
        // The anchor exchange with peers (`flare audit verify --anchors` checks a log against what they recorded).
        anchors: log,
        ledgerHeads,
        checkpointHeads,
        auditedJobs,
      };
    },
    filters: (ledger) => new Map<string, FilterFactory<unknown>>(createDpFilterFactories(ledger === undefined ? {} : { ledger }).map((f) => [f.name, f as FilterFactory<unknown>])),
  };
}

/**
 * Verifies each participant's audit log against its kit certificate: an unbroken hash chain, every checkpoint
 * signed by that participant's key, and closed cleanly. Returns one problem line per failure.
 */
export async function verifyAuditLogs(parts: ReadonlyArray<{ readonly name: string; readonly dir: string; readonly certificate: string }>): Promise<{ verified: boolean; problems: string[] }> {
  const problems: string[] = [];
  for (const p of parts) {
    const certificate = await readFile(p.certificate, 'utf8').catch(() => undefined);
    const v = await verifyAuditLog(join(p.dir, AUDIT_FILE), certificate === undefined ? {} : { certificate });
    if (!v.ok) problems.push(`${p.name}: ${v.problems[0] === undefined ? 'not whole' : `line ${v.problems[0].line}: ${v.problems[0].kind}: ${v.problems[0].detail}`}`);
    else if (v.signer?.trusted !== true) problems.push(`${p.name}: checkpoints are not signed by the participant's certificate`);
  }
  return { verified: problems.length === 0, problems };
}
