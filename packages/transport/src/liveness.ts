/** What a connection does at a heartbeat: drop a silent peer, ping it, or nothing (it was heard from). */
export type Beat = 'drop' | 'ping' | 'quiet';

/**
 * The decision at each heartbeat: a peer silent longer than the idle timeout is dropped; one heard from since
 * the previous heartbeat (a message, a chunk, a ping or a pong) needs no ping, since what it sent proves it
 * alive; otherwise it is pinged. Both ends run this, so a connection without traffic carries one ping and pong
 * per heartbeat interval or less, instead of one from each side; a busy one carries none. At a thousand
 * connections the pings and pongs of a server were a tenth of its CPU time.
 *
 * @param t times in ms: now, when the peer was last heard from, and when the previous heartbeat ran
 */
export function heartbeat(t: { readonly now: number; readonly lastSeen: number; readonly lastBeat: number }, idleTimeoutMs: number): Beat {
  if (t.now - t.lastSeen > idleTimeoutMs) return 'drop';
  return t.lastSeen > t.lastBeat ? 'quiet' : 'ping';
}
