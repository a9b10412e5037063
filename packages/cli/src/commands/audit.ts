// flare audit verify | trace | export: prove a site's audit log whole, follow an event across sites, export
// it in FLARE's format.
import { readFile, writeFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { AuditError } from '@flare/core';
import { canonicalJson, type JsonValue } from '@flare/core';
import { exportFlareFormat, formatTrace, readAnchors, traceAuditEvent, verifyAuditLog, type AuditProblem } from '@flare/audit';
import { EXIT, runCommand, stdio, type Io } from '../run.js';

const KIND_TEXT: Record<AuditProblem['kind'], string> = {
  modified: 'modified',
  deleted: 'deleted',
  reordered: 'reordered',
  inserted: 'inserted',
  bad_signature: 'bad signature',
  unsigned_tail: 'unsigned tail after the last checkpoint',
  truncated: 'truncated',
  rolled_back: 'rolled back (ends before a checkpoint its peers recorded)',
  forked: 'rolled back and rewritten (differs from a checkpoint its peers recorded)',
};
const MAX_LISTED = 20;

async function readCert(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    throw new AuditError('E_AUDIT_FILE', `cannot read ${path}`, { cause });
  }
}

/** Registers `flare audit ...` on `program`; `io` is where it prints (tests pass their own). */
export function register(program: Command, io: Io = stdio): void {
  const run = async (body: () => Promise<number | void>): Promise<void> => {
    await runCommand(body, io);
  };
  const audit = program.command('audit').description('tamper-evident audit log tools');

  audit
    .command('verify')
    .description('prove an audit log whole: exit 0 when it is, 1 naming the first bad line and what is wrong')
    .argument('<file>', 'the audit log (JSON Lines)')
    .option('--cert <file>', "the site's certificate (startup/server.crt or client.crt): checkpoints must be signed by its key")
    .option('--anchors <files...>', "peers' audit logs (or exported anchors) that recorded this log's checkpoints: detects an older copy, a truncation or a rollback")
    .option('--json', 'print the full verification result as JSON')
    .action((file: string, opts: { cert?: string; anchors?: string[]; json?: boolean }) =>
      run(async () => {
        const found = opts.anchors === undefined ? undefined : await readAnchors(opts.anchors);
        for (const bad of found?.invalid ?? []) io.err(`warning: ${bad.file} line ${bad.line}: not used as an anchor (${bad.reason})`);
        const r = await verifyAuditLog(file, {
          ...(opts.cert === undefined ? {} : { certificate: await readCert(opts.cert) }),
          ...(found === undefined ? {} : { anchors: found.anchors }),
        });
        if (opts.json) {
          io.out(JSON.stringify(r, null, 2));
          return r.ok ? EXIT.ok : EXIT.refused;
        }
        if (r.ok) {
          const signer = r.signer === null ? 'no checkpoint yet' : `checkpoints signed by ${r.signer.alg} key ${r.signer.fingerprint.slice(0, 16)}…${r.signer.trusted ? " (the certificate's)" : ''}`;
          io.out(`OK ${file}: ${r.events} events in ${r.lines} lines, ${r.closed ? 'closed' : 'not closed'}, ${signer}`);
          if (r.signer !== null && !r.signer.trusted) io.err('note: signatures were not checked against a certificate (pass --cert site.crt)');
          if (!r.closed && r.lines > 0) io.err('note: the log does not end with a final checkpoint: it is still open, or its writer stopped');
          if (r.anchors !== undefined) {
            const { checked, matched, latest } = r.anchors;
            io.out(`anchors: ${matched} of ${checked} recorded checkpoints of ${r.site ?? 'this log'} found as recorded${latest === null ? '' : ` (latest: seq ${latest.seq}, ${latest.ts})`}`);
            if (checked === 0) io.err('note: the anchor files hold no checkpoint of this log: rollback and truncation were not checked');
          } else io.err('note: without --anchors, an older copy of the log or one cut after a valid checkpoint cannot be told apart');
          return EXIT.ok;
        }
        for (const p of r.problems.slice(0, MAX_LISTED)) io.out(`line ${p.line}: ${KIND_TEXT[p.kind]}: ${p.detail}`);
        if (r.problems.length > MAX_LISTED) io.out(`... and ${r.problems.length - MAX_LISTED} more problems`);
        const first = r.problems[0]!;
        throw new AuditError('E_AUDIT_TAMPERED', `${file} line ${first.line}: ${KIND_TEXT[first.kind]} (${first.detail}).`);
      }),
    );

  audit
    .command('anchor')
    .description("print a log's latest signed checkpoint as an anchor line, for a peer or an off-site record (the log must verify)")
    .argument('<file>', 'the audit log (JSON Lines)')
    .option('--cert <file>', "the site's certificate: the checkpoint must be signed by its key")
    .action((file: string, opts: { cert?: string }) =>
      run(async () => {
        const r = await verifyAuditLog(file, opts.cert === undefined ? {} : { certificate: await readCert(opts.cert) });
        if (!r.ok) throw new AuditError('E_AUDIT_TAMPERED', `${file} line ${r.problems[0]!.line}: ${KIND_TEXT[r.problems[0]!.kind]}: no anchor is exported from a log that does not verify.`);
        const { anchors } = await readAnchors([file]);
        const own = anchors.filter((a) => a.site === r.site).at(-1);
        if (own === undefined) throw new AuditError('E_AUDIT_ANCHOR', `${file} has no signed checkpoint yet: close the log or let it reach a checkpoint first.`);
        io.out(canonicalJson(own as unknown as JsonValue));
      }),
    );

  audit
    .command('trace')
    .description("follow an event's ref links across several sites' logs and print the chain")
    .argument('<event-id>', 'the event id to follow')
    .argument('<files...>', "the logs to search (every site's log that may hold the chain)")
    .action((eventId: string, files: string[]) =>
      run(async () => {
        const t = await traceAuditEvent(eventId, files);
        for (const f of t.files) if (!f.ok) io.err(`warning: ${f.path} does not verify (${f.firstProblem ?? 'problems'}): its damaged lines are left out`);
        for (const line of formatTrace(t)) io.out(line);
      }),
    );

  audit
    .command('export')
    .description("write an audit log's events in FLARE's bracket format ([E:id][R:ref][T:time][U:user][A:action]message)")
    .addOption(new Option('--format <format>', 'output format').choices(['flare']).makeOptionMandatory())
    .option('--out <file>', 'write here instead of stdout')
    .argument('<file>', 'the audit log (JSON Lines)')
    .action((file: string, opts: { format: 'flare'; out?: string }) =>
      run(async () => {
        const v = await verifyAuditLog(file);
        if (!v.ok) io.err(`warning: ${file} does not verify (line ${v.problems[0]!.line}: ${KIND_TEXT[v.problems[0]!.kind]}); only intact events are exported`);
        const lines: string[] = [];
        for await (const line of exportFlareFormat(file)) {
          if (opts.out === undefined) io.out(line);
          else lines.push(line);
        }
        if (opts.out !== undefined) {
          try {
            await writeFile(opts.out, lines.map((l) => `${l}\n`).join(''), { flag: 'wx' });
          } catch (cause) {
            throw new AuditError('E_AUDIT_FILE', `cannot write ${opts.out} (it must not exist yet)`, { cause });
          }
        }
      }),
    );
}
