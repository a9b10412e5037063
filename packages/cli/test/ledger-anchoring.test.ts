import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { model, tensor } from '@flare/core';
import { AuditLog, readEvents } from '@flare/audit';
import { BUDGET_FOLDER, createDpFilterFactories, ledgerHeadsFromAudit, openPrivacyLedger } from '@flare/filters-dp';
import type { Kit } from '@flare/pki';
import { defaultStack } from '../src/poc/stack.js';

// The wiring a site runtime does between @flare/audit and @flare/filters-dp, both real: the ledger reports each
// head to the site's audit log; at start the site reads the heads back and opens the ledger with them, so a
// ledger deleted or restored from an older copy while the site was down is refused.

const root = mkdtempSync(join(tmpdir(), 'flare-ledger-anchor-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const signer = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const auditPath = join(root, 'site-1-audit.jsonl');
const update = () => model({ w: tensor(new Float32Array([0.2, -0.1])) }, 'diff');
const args = { clipNorm: 1, noiseMultiplier: 3, budget: { maxEpsilon: 30, delta: 1e-5 } };

async function* recordsOf(path: string) {
  for await (const { record } of readEvents(path)) yield record;
}

/** One run of the site process over `workspace`: heads from its audit log, its ledger, `rounds` releases. */
async function runSite(workspace: string, rounds: number): Promise<void> {
  const trustedHeads = existsSync(auditPath) ? await ledgerHeadsFromAudit(recordsOf(auditPath)) : [];
  const log = await AuditLog.open(auditPath, { site: 'site-1', signer });
  try {
    const ledger = openPrivacyLedger(join(workspace, BUDGET_FOLDER), { site: 'site-1', trustedHeads, audit: log.append });
    const factory = createDpFilterFactories({ ledger }).find((f) => f.name === 'gaussian-dp')!;
    const filter = factory.create(factory.args.parse(args), { site: 'site-1', workspace });
    for (let round = 0; round < rounds; round++) await filter.apply(update(), { site: 'site-1', job: 'job-1', round });
  } finally {
    await log.close();
  }
}

/** A new process (a new workspace path: one ledger object per folder per process) holding `ledger` (or none). */
function workspaceWith(name: string, ledger: string | undefined, file: string): string {
  const ws = join(root, name);
  mkdirSync(join(ws, BUDGET_FOLDER), { recursive: true });
  if (ledger !== undefined) copyFileSync(ledger, join(ws, BUDGET_FOLDER, file));
  return ws;
}

describe('privacy ledger heads anchored in a real audit log', () => {
  it('a restart with the ledger intact continues; a deleted or older ledger is refused (E_DP_LEDGER_ROLLBACK)', async () => {
    const first = join(root, 'ws-0');
    await runSite(first, 2);
    const file = readdirSync(join(first, BUDGET_FOLDER))[0]!;
    const older = join(root, 'older.jsonl');
    copyFileSync(join(first, BUDGET_FOLDER, file), older);
    await runSite(first, 1); // 3 releases; the audit log holds heads up to seq 2

    const intact = workspaceWith('ws-1', join(first, BUDGET_FOLDER, file), file);
    await expect(runSite(intact, 1)).resolves.toBeUndefined();
    const current = join(intact, BUDGET_FOLDER, file);
    await expect(runSite(workspaceWith('ws-2', older, file), 1)).rejects.toMatchObject({ code: 'E_DP_LEDGER_ROLLBACK' });
    await expect(runSite(workspaceWith('ws-3', undefined, file), 1)).rejects.toMatchObject({ code: 'E_DP_LEDGER_ROLLBACK' });
    // Each refusal is in the site's audit log; the next intact start still verifies against the newest head.
    const actions: string[] = [];
    for await (const r of recordsOf(auditPath)) actions.push(r.action);
    expect(actions.filter((a) => a === 'dp_ledger_rollback')).toHaveLength(2);
    await expect(runSite(workspaceWith('ws-4', current, file), 1)).resolves.toBeUndefined();
  });
});

describe("the flare site stack wires the site's ledger to its audit log (flare client)", () => {
  it('openAudit hands back the heads its log recorded in earlier runs; filters(ledger) charge that ledger; an older ledger is refused (E_DP_LEDGER_ROLLBACK)', async () => {
    const stack = defaultStack();
    const auditDir = join(root, 'stack-audit');
    mkdirSync(auditDir, { recursive: true });
    const kit = { participant: { name: 'site-1' }, privateKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey } as unknown as Kit;
    /** One `flare client` run: the audit log, the site ledger opened with its heads, `rounds` releases of two jobs. */
    const run = async (workspace: string, rounds: number): Promise<number> => {
      const audit = await stack.openAudit(auditDir, kit);
      try {
        const ledger = openPrivacyLedger(join(workspace, BUDGET_FOLDER), { site: 'site-1', audit: audit.hook, trustedHeads: audit.ledgerHeads ?? [] });
        const factory = stack.filters(ledger).get('gaussian-dp')!;
        for (const job of ['job-a', 'job-b']) {
          const filter = factory.create(factory.args.parse(args), { site: 'site-1', workspace });
          for (let round = 0; round < rounds; round++) await filter.apply(update(), { site: 'site-1', job, round });
        }
        return (audit.ledgerHeads ?? []).length;
      } finally {
        await audit.close();
      }
    };
    const first = join(root, 'stack-ws-0');
    expect(await run(first, 1)).toBe(0);
    const file = readdirSync(join(first, BUDGET_FOLDER))[0]!;
    const older = join(root, 'stack-older.jsonl');
    copyFileSync(join(first, BUDGET_FOLDER, file), older);
    // Both jobs charged the one ledger of the site's dataset: the next run starts from its head.
    expect(await run(workspaceWith('stack-ws-1', join(first, BUDGET_FOLDER, file), file), 1)).toBe(1);
    await expect(run(workspaceWith('stack-ws-2', older, file), 1)).rejects.toMatchObject({ code: 'E_DP_LEDGER_ROLLBACK' });
  });
});
