import { AuthError } from '@flare/core';
import type { Session } from './session.js';

/**
 * The server's registry of live sessions: find them, and revoke one session or every session of a participant.
 * Revoking a participant also refuses its next logins until {@link SessionStore.reinstate}.
 */
export class SessionStore {
  readonly #sessions = new Map<string, Session>();
  /** The same sessions by participant, in the order they were added: a login looks up its name without a pass over all. */
  readonly #byName = new Map<string, Set<Session>>();
  readonly #revokedNames = new Set<string>();

  /** @internal Registers a session until its connection closes. */
  add(session: Session, closed: Promise<unknown>): void {
    this.#sessions.set(session.id, session);
    let named = this.#byName.get(session.peer.name);
    if (named === undefined) this.#byName.set(session.peer.name, (named = new Set()));
    named.add(session);
    void closed.then(() => {
      if (this.#sessions.get(session.id) === session) this.delete(session.id);
    });
  }

  get(id: string): Session | undefined {
    return this.#sessions.get(id);
  }

  /** Live sessions of a participant, oldest first (an admin's tools may hold several at once). */
  sessionsOf(name: string): Session[] {
    return [...(this.#byName.get(name) ?? [])];
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** @internal Forgets a session (it was replaced). */
  delete(id: string): void {
    const s = this.#sessions.get(id);
    if (s === undefined) return;
    this.#sessions.delete(id);
    const named = this.#byName.get(s.peer.name);
    named?.delete(s);
    if (named?.size === 0) this.#byName.delete(s.peer.name);
  }

  /** Revokes one session (its connection closes with E_AUTH_SESSION_REVOKED); false when it is unknown. */
  revokeSession(id: string): boolean {
    const s = this.#sessions.get(id);
    if (s === undefined) return false;
    s.revoke();
    this.delete(id);
    return true;
  }

  /** Revokes every session of `name` and refuses its logins until reinstated; returns how many were live. */
  revokeParticipant(name: string): number {
    this.#revokedNames.add(name);
    const live = this.sessionsOf(name);
    for (const s of live) this.revokeSession(s.id);
    return live.length;
  }

  /** Allows a revoked participant to log in again. */
  reinstate(name: string): void {
    this.#revokedNames.delete(name);
  }

  isRevoked(name: string): boolean {
    return this.#revokedNames.has(name);
  }

  /** @internal Refuses the login of a revoked participant. */
  assertAllowed(name: string): void {
    if (this.#revokedNames.has(name)) throw new AuthError('E_AUTH_SESSION_REVOKED', `participant '${name}' was revoked on this server`);
  }
}
