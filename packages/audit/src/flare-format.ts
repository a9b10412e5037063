import type { AuditRecord } from './record.js';
import { readEvents } from './read-events.js';

// eslint-disable-next-line no-control-regex -- control characters would break FLARE's one-event-per-line format: match them to escape them
const CONTROL = /[\u0000-\u001f\u007f]/g;
const escape = (s: string) => s.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
// Inside a [X:...] field a bracket would let a value forge another field (a user named "x][A:shutdown").
const field = (s: string) => escape(s).replace(/[[\]]/g, (b) => `\\${b}`);

/** FLARE's time text (Python's str(datetime)): `YYYY-MM-DD HH:MM:SS.ffffff`; ours is UTC. */
function flareTime(ts: string): string {
  return `${ts.slice(0, 10)} ${ts.slice(11, 23)}000`;
}

/**
 * One event in FLARE's audit format (nvflare/fuel/sec/audit.py):
 * `[E:<id>][R:<ref>][T:<time>][U:<user>][A:<action>]message`, and for job events
 * `[E:<id>][R:<ref>][T:<time>][S:<scope>][J:<job>][A:<action>]message`. Fields that are absent are left out
 * like FLARE does (R without ref, S without scope); an event with both a user and a job gets both U and S/J.
 * Times are UTC. Control characters are escaped (`\u000a`) and brackets inside fields are escaped (`\]`), so
 * each event stays one line and no value can forge a field.
 */
export function toFlareLine(r: AuditRecord): string {
  return [
    `[E:${field(r.id)}]`,
    r.ref ? `[R:${field(r.ref)}]` : '',
    `[T:${flareTime(r.ts)}]`,
    r.user !== undefined || r.job === undefined ? `[U:${field(r.user ?? '')}]` : '',
    r.scope ? `[S:${field(r.scope)}]` : '',
    r.job !== undefined ? `[J:${field(r.job)}]` : '',
    `[A:${field(r.action)}]`,
    r.msg ? escape(r.msg) : '',
  ].join('');
}

/** The intact events of a log in FLARE's format, one line each (checkpoints have no FLARE equivalent and are left out). */
export async function* exportFlareFormat(path: string): AsyncGenerator<string> {
  for await (const e of readEvents(path)) yield toFlareLine(e.record);
}
