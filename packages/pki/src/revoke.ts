import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PkiError } from '@flare/core';
import { hasCaState, openCa, refreshCrl, saveCa } from './ca-state.js';

/** Options of {@link revoke}. */
export interface RevokeOptions {
  /** The project folder holding the CA state (`<workspace>/<project>`); see {@link resolveProjectDir}. */
  readonly projectDir: string;
  /** The participant whose certificates are revoked (every still-unrevoked one). */
  readonly name: string;
  readonly passphrase?: string;
  readonly now?: Date;
  /** RFC 5280 5.3.1 reason code (e.g. 1 keyCompromise); omitted by default. */
  readonly reason?: number;
}

/** What {@link revoke} did. */
export interface RevokeResult {
  /** Serials revoked by this call (lowercase hex). */
  readonly serials: readonly string[];
  /** The new CRL, signed by the root; also written to `<projectDir>/state/crl.pem`. */
  readonly crlPem: string;
  readonly crlPath: string;
}

/**
 * Revokes a participant's certificates and writes a new CRL signed by the root (FLARE has no revocation). The
 * CRL reaches participants in their kits on the next provisioning run, and through the runtime (the server
 * hands its newest CRL to every participant at login; each keeps the highest CRL number it saw, see
 * `CrlStore`). A participant added with `--add` is also dropped from later runs; provisioning refuses to
 * re-issue one still named in project.yml (E_PROVISION_REVOKED) unless told to with `reissueRevoked`.
 *
 * @throws PkiError E_REVOKE_UNKNOWN, E_CA_STATE_MISSING, E_CA_STATE_UNREADABLE, E_CA_PASSPHRASE.
 * @example
 * ```ts
 * const { crlPath } = await revoke({ projectDir: 'workspace/example_project', name: 'site-2' });
 * ```
 */
export async function revoke(options: RevokeOptions): Promise<RevokeResult> {
  if (options.reason !== undefined && (!Number.isInteger(options.reason) || options.reason < 0 || options.reason > 10 || options.reason === 7)) {
    throw new RangeError(`"reason" expected an RFC 5280 reason code 0-10 except 7, got ${options.reason}`);
  }
  const now = options.now ?? new Date();
  const ca = await openCa(resolve(options.projectDir), options.passphrase);
  const records = ca.data.issued.filter((r) => r.name === options.name);
  if (records.length === 0) throw new PkiError('E_REVOKE_UNKNOWN', `no certificate was issued to '${options.name}' in project '${ca.data.project}'`);
  const serials: string[] = [];
  for (const r of records) {
    if (r.revoked !== undefined) continue;
    r.revoked = { date: now.toISOString(), ...(options.reason === undefined ? {} : { reason: options.reason }) };
    serials.push(r.serial);
  }
  // A participant added with --add is remembered by the state; revoking it expels it from later provisioning
  // runs too (one named in project.yml makes them refuse until it is removed from the file or re-admitted).
  ca.data.participants = ca.data.participants.filter((p) => p.name !== options.name);
  const crlPem = await refreshCrl(ca, now);
  await saveCa(ca);
  return { serials, crlPem, crlPath: join(ca.dir, 'crl.pem') };
}

/**
 * Finds the project folder in a workspace: the workspace itself when it holds `state/`, else the one project
 * with a CA state inside it, or the named `project`.
 *
 * @throws PkiError E_CA_STATE_MISSING when none (or several and no project named) is found.
 */
export async function resolveProjectDir(workspace: string, project?: string): Promise<string> {
  const ws = resolve(workspace);
  if (project !== undefined) return join(ws, project);
  if (await hasCaState(ws)) return ws;
  const entries = await readdir(ws, { withFileTypes: true }).catch(() => []);
  const found: string[] = [];
  for (const e of entries) if (e.isDirectory() && (await hasCaState(join(ws, e.name)))) found.push(e.name);
  if (found.length === 1) return join(ws, found[0]!);
  if (found.length === 0) throw new PkiError('E_CA_STATE_MISSING', `no project with a CA state in ${ws}`);
  throw new PkiError('E_CA_STATE_MISSING', `${ws} holds several projects (${found.join(', ')}): name one with --project`);
}
