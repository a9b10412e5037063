import { generateKeyPairSync } from 'node:crypto';
import { closeSync, createReadStream, fdatasyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { AuditLog, readAnchors, verifyAuditLog } from '@flare/audit';
import type { Row, Suite } from '../harness.js';

// AuditLog.append of a typical event (action, user, job, msg, small data: ~420-byte lines) with fsync 'batch'
// (written to the OS per event, synced every 100 ms and at checkpoints; checkpoint every 1,000 events, ECDSA
// P-256) and with fsync 'always', each against writing the same bytes with a bare fs.writeSync (and
// writeSync + fdatasync) in the same run and folder. Then verifyAuditLog of the batch log against reading
// its lines with node:readline.
const BATCH_EVENTS = 200_000;
const ALWAYS_EVENTS = 300;

const event = (i: number) => ({ action: 'filter_applied', user: 'alice@a.org', job: 'job-7f3a', scope: 'private', msg: `applied site filter gaussian-dp (1 of 2) round ${i % 100}`, data: { filter: 'gaussian-dp', origin: 'site', position: 0, round: i % 100, epsilon: 0.25 } });

function rawWrites(path: string, line: string, count: number, sync: boolean): number {
  const fd = openSync(path, 'a');
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    writeSync(fd, line);
    if (sync) fdatasyncSync(fd);
  }
  if (!sync) fdatasyncSync(fd);
  const ms = performance.now() - t0;
  closeSync(fd);
  return count / (ms / 1000);
}

/** Wall-clock rate, and the rate per CPU-second of this process (user + system): the second does not drop when other processes share the cores. */
async function appends(path: string, fsync: 'always' | 'batch', count: number, signer: string): Promise<{ wall: number; cpu: number }> {
  const log = await AuditLog.open(path, { site: 'site-1', signer, fsync });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) log.append(event(i));
  log.flush();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  await log.close();
  return { wall: count / (ms / 1000), cpu: count / ((c.user + c.system) / 1e6) };
}

function rawCpu(path: string, line: string, count: number): number {
  const c0 = process.cpuUsage();
  rawWrites(path, line, count, false);
  const c = process.cpuUsage(c0);
  return count / ((c.user + c.system) / 1e6);
}

export const suite: Suite = {
  name: 'audit',
  description: 'audit appends/s (fsync batch and always) vs bare writeSync of the same bytes; verification vs readline; with peer anchors',
  async run(): Promise<Row[]> {
    const dir = await mkdtemp(join(tmpdir(), 'flare-bench-audit-'));
    try {
      const signer = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      // One real line of ours, to give the baseline the same bytes per write.
      const probe = join(dir, 'probe.jsonl');
      const p = await AuditLog.open(probe, { site: 'site-1', signer });
      p.append(event(1));
      await p.close();
      const line = `${readFileSync(probe, 'utf8').split('\n')[1]!}\n`;

      const batchPath = join(dir, 'batch.jsonl');
      const batch = await appends(batchPath, 'batch', BATCH_EVENTS, signer);
      const rawBatch = rawWrites(join(dir, 'raw-batch.jsonl'), line, BATCH_EVENTS, false);
      const rawBatchCpu = rawCpu(join(dir, 'raw-batch-cpu.jsonl'), line, BATCH_EVENTS);
      const always = await appends(join(dir, 'always.jsonl'), 'always', ALWAYS_EVENTS, signer);
      const rawAlways = rawWrites(join(dir, 'raw-always.jsonl'), line, ALWAYS_EVENTS, true);

      let t0 = performance.now();
      const v = await verifyAuditLog(batchPath);
      const verifyMs = performance.now() - t0;
      if (!v.ok) throw new Error('bench log does not verify');
      t0 = performance.now();
      let lines = 0;
      for await (const _ of createInterface({ input: createReadStream(batchPath), crlfDelay: Infinity })) lines++;
      const readMs = performance.now() - t0;

      // Anchors: the same log verified against 200 anchors a peer recorded (one every 1,000 events), and the cost
      // of producing and recording one anchor (a checkpoint signed and synced, then verified and appended).
      const anchored = join(dir, 'anchored.jsonl');
      const peerPath = join(dir, 'peer.jsonl');
      const site = await AuditLog.open(anchored, { site: 'site-1', signer, checkpointEvery: 100_000 });
      const peer = await AuditLog.open(peerPath, { site: 'server', signer });
      const exchange: number[] = [];
      for (let i = 0; i < BATCH_EVENTS; i++) {
        site.append(event(i));
        if (i % 1000 === 999) {
          const a0 = performance.now();
          peer.recordAnchor(site.anchor());
          exchange.push(performance.now() - a0);
        }
      }
      await site.close();
      await peer.close();
      exchange.sort((a, b) => a - b);
      const { anchors } = await readAnchors([peerPath]);
      t0 = performance.now();
      const withAnchors = await verifyAuditLog(anchored, { anchors });
      const anchoredMs = performance.now() - t0;
      t0 = performance.now();
      const without = await verifyAuditLog(anchored);
      const plainMs = performance.now() - t0;
      if (!withAnchors.ok || !without.ok || withAnchors.anchors?.matched !== BATCH_EVENTS / 1000) throw new Error('anchored bench log does not verify');
      return [
        {
          label: `append, fsync batch (${BATCH_EVENTS} events, ${line.length}-byte lines, checkpoint every 1,000)`,
          value: batch.wall,
          unit: 'events/s',
          baseline: { label: 'bare writeSync of the same line', value: rawBatch },
          higherIsBetter: true,
          aim: '> 50k events/s',
        },
        {
          label: 'append, fsync batch, per CPU-second of the writer (independent of other load)',
          value: batch.cpu,
          unit: 'events/CPU-s',
          baseline: { label: 'bare writeSync of the same line', value: rawBatchCpu },
          higherIsBetter: true,
        },
        {
          label: `append, fsync always (${ALWAYS_EVENTS} events)`,
          value: always.wall,
          unit: 'events/s',
          baseline: { label: 'bare writeSync + fdatasync of the same line', value: rawAlways },
          higherIsBetter: true,
        },
        {
          label: `verifyAuditLog (${v.lines} lines, ${v.lines - v.events} signed checkpoints)`,
          value: v.lines / (verifyMs / 1000),
          unit: 'lines/s',
          baseline: { label: 'readline over the same file', value: lines / (readMs / 1000) },
          higherIsBetter: true,
        },
        {
          label: `verifyAuditLog with ${withAnchors.anchors!.checked} peer anchors (${withAnchors.lines} lines)`,
          value: withAnchors.lines / (anchoredMs / 1000),
          unit: 'lines/s',
          baseline: { label: 'the same log without anchors', value: without.lines / (plainMs / 1000) },
          higherIsBetter: true,
        },
        {
          label: 'anchor exchange: log.anchor() (sign + fdatasync) then peer.recordAnchor() (verify + append), median',
          value: exchange[Math.floor(exchange.length / 2)]!,
          unit: 'ms',
        },
      ];
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
