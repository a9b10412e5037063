import { describe, expect, it } from 'vitest';
import { EventBus } from '../src/event-bus.js';

describe('EventBus', () => {
  it('runs handlers in registration order and awaits each', async () => {
    const bus = new EventBus();
    const seen: string[] = [];
    bus.on('after-round', async ({ round }) => {
      await Promise.resolve();
      seen.push(`a${round}`);
    });
    bus.on('after-round', ({ round }) => void seen.push(`b${round}`));
    await bus.emit('after-round', { job: 'j', round: 3, contributors: [] });
    expect(seen).toEqual(['a3', 'b3']);
  });

  it('a throwing handler vetoes: emit rejects with its error and later handlers do not run', async () => {
    const bus = new EventBus();
    let later = false;
    bus.on('before-register', () => {
      throw new Error('not today');
    });
    bus.on('before-register', () => {
      later = true;
    });
    await expect(bus.emit('before-register', { peer: { name: 'x', org: 'o', type: 'client' }, resources: {} })).rejects.toThrow('not today');
    expect(later).toBe(false);
  });

  it('on() returns an unsubscribe function', async () => {
    const bus = new EventBus();
    let n = 0;
    const off = bus.on('after-job', () => void (n += 1));
    await bus.emit('after-job', { job: 'j', status: 'FINISHED' });
    off();
    await bus.emit('after-job', { job: 'j', status: 'FINISHED' });
    expect(n).toBe(1);
  });
});
