import { z } from 'zod';

/** The kinds of participant a FLARE project provisions (FLARE's `type` in project.yml). */
export const PARTICIPANT_TYPES = ['server', 'client', 'admin', 'relay'] as const;

/** One of {@link PARTICIPANT_TYPES}. */
export type ParticipantType = (typeof PARTICIPANT_TYPES)[number];

/** RFC 5280 ub-common-name and ub-organization-name: a name or org never exceeds 64 characters. */
const MAX_NAME = 64;
// Names come from certificates and are written into logs, audit events and file names: no control characters
// (a newline in a name would forge a log line).
// eslint-disable-next-line no-control-regex -- matching control characters in order to refuse them
const PRINTABLE = /^[^\u0000-\u001f\u007f]+$/;
// FLARE's format_check.py rules for org and role (nvflare/apis/utils/format_check.py).
const WORD = /^[A-Za-z0-9_]+$/;

/**
 * Who a participant is, as its certificate says and its session authenticated: `name` (CN: a site name, the
 * server's host name, an admin's e-mail), `org` (O), `type` (OU), and for admins `role` (FLARE's
 * `project_admin`, `org_admin`, `lead`, `member`, or a custom role). Never taken from a message field.
 *
 * One shape for every package: auth's session peer, pki's certificate subject, the participants kit
 * builders see, policy's authorization subject, the runtime's principals.
 */
export interface Identity {
  readonly name: string;
  readonly org: string;
  readonly type: ParticipantType;
  /** The admin role (admins only). */
  readonly role?: string | undefined;
}

/**
 * Validates an {@link Identity} that crossed a boundary (a child process, a file, a peer's message): name of 1
 * to 64 printable characters, org and role of 1 to 64 letters, digits and `_` (FLARE's rules), a known type,
 * and no other fields.
 */
export const IdentitySchema: z.ZodType<Identity> = z.strictObject({
  name: z.string().min(1).max(MAX_NAME).regex(PRINTABLE, 'must not contain control characters'),
  org: z.string().min(1).max(MAX_NAME).regex(WORD, 'letters, digits and "_" only'),
  type: z.enum(PARTICIPANT_TYPES),
  role: z.string().min(1).max(MAX_NAME).regex(WORD, 'letters, digits and "_" only').optional(),
});

/** True when both identities name the same participant (name, org, type and role all equal). */
export function sameIdentity(a: Identity, b: Identity): boolean {
  return a.name === b.name && a.org === b.org && a.type === b.type && a.role === b.role;
}

/** `name (type, org)` or `name (admin lead, org)`: how messages and logs name a participant. */
export function identityText(id: Identity): string {
  return `${id.name} (${id.type}${id.role === undefined ? '' : ` ${id.role}`}, ${id.org})`;
}
