import { describe, expect, it } from 'vitest';
import { checkRanLate, heartbeat } from '../src/liveness.js';

describe('heartbeat: ping only a peer not heard from since the last beat', () => {
  const idle = { idleTimeoutMs: 60_000, heartbeatMs: 10_000 };

  it('pings a peer not heard from since the previous heartbeat', () => {
    expect(heartbeat({ now: 20_000, lastSeen: 5_000, lastBeat: 10_000 }, idle)).toBe('ping');
    // Heard from exactly at the previous beat: that was before it, so still a ping.
    expect(heartbeat({ now: 20_000, lastSeen: 10_000, lastBeat: 10_000 }, idle)).toBe('ping');
  });

  it('sends nothing to a peer heard from since the previous heartbeat (its message or ping proves it alive)', () => {
    expect(heartbeat({ now: 20_000, lastSeen: 10_001, lastBeat: 10_000 }, idle)).toBe('quiet');
  });

  it('drops a peer silent longer than the idle timeout (the connection then closes with E_TRANSPORT_IDLE)', () => {
    expect(heartbeat({ now: 70_001, lastSeen: 10_000, lastBeat: 60_000 }, idle)).toBe('drop');
    expect(heartbeat({ now: 70_000, lastSeen: 10_000, lastBeat: 60_000 }, idle)).toBe('ping');
  });

  it('two ends that both follow it exchange one ping and one pong per interval or less, and neither goes idle', () => {
    // Two ends, heartbeats every 10 s, offset by 3 s; a ping is answered by a pong at once.
    const ends = [
      { offset: 0, lastSeen: 0, lastBeat: 0, pings: 0 },
      { offset: 3_000, lastSeen: 0, lastBeat: 0, pings: 0 },
    ];
    let frames = 0;
    for (let t = 1; t <= 600_000; t++) {
      for (const [i, end] of ends.entries()) {
        if ((t - end.offset) % 10_000 !== 0) continue;
        const beat = heartbeat({ now: t, lastSeen: end.lastSeen, lastBeat: end.lastBeat }, idle);
        end.lastBeat = t;
        expect(beat).not.toBe('drop');
        if (beat === 'ping') {
          end.pings += 1;
          ends[1 - i]!.lastSeen = t; // the peer receives the ping...
          end.lastSeen = t; // ...and its pong comes back
          frames += 2;
        }
      }
    }
    // Sixty intervals: at most one ping and one pong each (before: two of each).
    expect(frames).toBeLessThanOrEqual(2 * 60);
    expect(ends[0]!.pings + ends[1]!.pings).toBeGreaterThan(0);
  });

  it('does not drop a peer at a heartbeat that ran late (this side was blocked; what the peer sent is still unread): it pings, and the next heartbeat decides', () => {
    // The previous beat at 10 s, then this process blocked until 130 s: the peer's last frame read at 5 s.
    expect(heartbeat({ now: 130_000, lastSeen: 5_000, lastBeat: 10_000 }, idle)).toBe('ping');
    // The sockets are read right after: the peer's heartbeats sent during the block arrive, it stays.
    expect(heartbeat({ now: 140_000, lastSeen: 130_001, lastBeat: 130_000 }, idle)).toBe('quiet');
    // A peer that really is gone sends nothing: the next, on-time heartbeat drops it.
    expect(heartbeat({ now: 140_000, lastSeen: 5_000, lastBeat: 130_000 }, idle)).toBe('drop');
    // A beat up to two intervals late is still on time (timers are not exact): it judges as usual.
    expect(heartbeat({ now: 90_000, lastSeen: 5_000, lastBeat: 70_000 }, idle)).toBe('drop');
  });

  it('checkRanLate: a check more than two intervals after the previous one ran late', () => {
    expect(checkRanLate(30_000, 10_000, 10_000)).toBe(false);
    expect(checkRanLate(30_001, 10_000, 10_000)).toBe(true);
  });
});
