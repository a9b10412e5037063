/** What a connection does at a heartbeat: drop a silent peer, ping it, or nothing (it was heard from). */
export type Beat = 'drop' | 'ping' | 'quiet';

/**
 * Whether a periodic check ran so long after the previous one (more than twice its interval) that this process's
 * event loop was blocked in between. After such a block Node runs the due timers before it reads the sockets, so
 * whatever peers sent meanwhile is still unread: a liveness check that runs then would judge every peer silent
 * for the length of the block. At 5,000 sites a server blocked for two minutes dropped every site in the same
 * second for that reason, although each had kept sending.
 *
 * @param now the time of this check, ms
 * @param previous the time of the previous check, ms
 * @param intervalMs how often the check is meant to run, ms
 */
export function checkRanLate(now: number, previous: number, intervalMs: number): boolean {
  return now - previous > 2 * intervalMs;
}

/**
 * The decision at each heartbeat: a peer silent longer than the idle timeout is dropped; one heard from since
 * the previous heartbeat (a message, a chunk, a ping or a pong) needs no ping, since what it sent proves it
 * alive; otherwise it is pinged. Both ends run this, so a connection without traffic carries one ping and pong
 * per heartbeat interval or less, instead of one from each side; a busy one carries none. At a thousand
 * connections the pings and pongs of a server were a tenth of its CPU time.
 *
 * Silence is judged by time since the peer was last heard from, never by counting timer ticks, and never at a
 * heartbeat that ran late ({@link checkRanLate}): this side's loop was blocked, the peer's frames may be waiting
 * unread, so it is pinged instead and judged at the next heartbeat, after the sockets were read.
 *
 * @param t times in ms: now, when the peer was last heard from, and when the previous heartbeat ran
 * @param limits the idle timeout and the heartbeat interval, ms
 */
export function heartbeat(t: { readonly now: number; readonly lastSeen: number; readonly lastBeat: number }, limits: { readonly idleTimeoutMs: number; readonly heartbeatMs: number }): Beat {
  if (t.now - t.lastSeen > limits.idleTimeoutMs && !checkRanLate(t.now, t.lastBeat, limits.heartbeatMs)) return 'drop';
  return t.lastSeen > t.lastBeat ? 'quiet' : 'ping';
}
