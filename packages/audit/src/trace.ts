import { AuditError } from '@flare/core';
import { readEvents, type LocatedEvent } from './read-events.js';
import { verifyAuditLog } from './verify.js';

/** One event in a trace, with the file and line it came from. */
export type TraceEvent = LocatedEvent;

/** An event and the events (on any site) that refer to it. */
export interface TraceNode {
  readonly event: TraceEvent;
  readonly children: readonly TraceNode[];
}

/** The outcome of {@link traceAuditEvent}. */
export interface AuditTrace {
  /** The event asked for. */
  readonly target: TraceEvent;
  /** The first event of the chain (following `ref` upwards), with everything that follows from it. */
  readonly root: TraceNode;
  /** Set when the root's own `ref` points to an event in none of the given logs. */
  readonly missingRef: string | undefined;
  /** Whether each log verified whole: a trace through a damaged log deserves less trust. */
  readonly files: ReadonlyArray<{ readonly path: string; readonly ok: boolean; readonly firstProblem?: string }>;
}

const MAX_DEPTH = 256;
const MAX_NODES = 10_000;

/**
 * Follows an event across several sites' logs: up through `ref` to the event that started the chain (e.g. the
 * server's task dispatch), then down to every event that refers to one in the chain (each client's receipt,
 * filters applied, the result, the server's acceptance). Only intact lines take part.
 *
 * @throws AuditError E_AUDIT_TRACE when no log holds the event, E_AUDIT_FILE when a log cannot be read.
 */
export async function traceAuditEvent(eventId: string, paths: readonly string[]): Promise<AuditTrace> {
  const byId = new Map<string, TraceEvent>();
  const byRef = new Map<string, TraceEvent[]>();
  const files: Array<{ path: string; ok: boolean; firstProblem?: string }> = [];
  for (const path of paths) {
    const v = await verifyAuditLog(path);
    const first = v.problems[0];
    files.push({ path, ok: v.ok, ...(first ? { firstProblem: `line ${first.line}: ${first.kind}` } : {}) });
    for await (const e of readEvents(path)) {
      if (!byId.has(e.record.id)) byId.set(e.record.id, e);
      if (e.record.ref !== undefined) byRef.set(e.record.ref, [...(byRef.get(e.record.ref) ?? []), e]);
    }
  }
  const target = byId.get(eventId);
  if (target === undefined) throw new AuditError('E_AUDIT_TRACE', `event ${JSON.stringify(eventId.slice(0, 80))} is in none of ${paths.length} log${paths.length === 1 ? '' : 's'}`);
  let top = target;
  const seen = new Set([top.record.id]);
  while (top.record.ref !== undefined && seen.size < MAX_DEPTH) {
    const up = byId.get(top.record.ref);
    if (up === undefined || seen.has(up.record.id)) break;
    seen.add(up.record.id);
    top = up;
  }
  let nodes = 0;
  const visited = new Set<string>();
  const build = (event: TraceEvent, depth: number): TraceNode => {
    visited.add(event.record.id);
    nodes++;
    const children =
      depth >= MAX_DEPTH
        ? []
        : (byRef.get(event.record.id) ?? [])
            .filter((c) => !visited.has(c.record.id))
            .sort((a, b) => a.record.ts.localeCompare(b.record.ts) || a.record.site.localeCompare(b.record.site) || a.record.seq - b.record.seq)
            .flatMap((c) => (nodes < MAX_NODES && !visited.has(c.record.id) ? [build(c, depth + 1)] : []));
    return { event, children };
  };
  const root = build(top, 0);
  const ref = top.record.ref;
  return { target, root, missingRef: ref !== undefined && !byId.has(ref) ? ref : undefined, files };
}

/** The trace as indented text lines, the asked-for event marked with `*`. */
export function formatTrace(trace: AuditTrace): string[] {
  const out: string[] = [];
  const walk = (node: TraceNode, depth: number) => {
    const r = node.event.record;
    const mark = r.id === trace.target.record.id ? '*' : ' ';
    const who = [r.user ? `user=${r.user}` : '', r.job ? `job=${r.job}` : '', r.scope ? `scope=${r.scope}` : ''].filter(Boolean).join(' ');
    out.push(`${mark} ${'  '.repeat(depth)}${r.ts} ${r.site} ${r.action}${who ? ` ${who}` : ''}${r.msg ? `: ${r.msg}` : ''} [${r.id}]`);
    for (const c of node.children) walk(c, depth + 1);
  };
  if (trace.missingRef !== undefined) out.push(`  (the chain starts from event ${trace.missingRef}, which is in none of the given logs)`);
  walk(trace.root, 0);
  return out;
}
