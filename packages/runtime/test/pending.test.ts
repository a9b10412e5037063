import { FlareRuntimeError, isFlareError } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { PendingRequests } from '../src/protocol/pending.js';

describe('PendingRequests', () => {
  it('settles a request only with an answer from the owner it was sent to', async () => {
    const p = new PendingRequests<string, string>();
    const answer = p.open('r1', 'site-1');
    expect(p.settle('r1', 'site-2', 'forged')).toBe(false);
    expect(p.settle('r1', 'site-1', 'ok')).toBe(true);
    await expect(answer).resolves.toBe('ok');
    expect(p.settle('r1', 'site-1', 'again')).toBe(false);
    expect(p.size).toBe(0);
  });

  it('rejectOwnedBy fails every request of a peer that went away, and only those', async () => {
    const p = new PendingRequests<string, string>();
    const a = p.open('a', 'site-1');
    const b = p.open('b', 'site-1');
    const c = p.open('c', 'site-2');
    expect(p.rejectOwnedBy('site-1', new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'gone'))).toBe(2);
    await expect(a).rejects.toThrow('gone');
    await expect(b).rejects.toThrow('gone');
    expect(p.ownerOf('c')).toBe('site-2');
    p.settle('c', 'site-2', 'fine');
    await expect(c).resolves.toBe('fine');
  });

  it('times out with the error it was given, and follows an abort signal', async () => {
    const p = new PendingRequests<string>();
    const t = p.open('t', 'x', { timeoutMs: 10, onTimeout: () => new FlareRuntimeError('E_RUNTIME_TIMEOUT', 'late') });
    expect(isFlareError(await t.catch((e: unknown) => e), 'E_RUNTIME_TIMEOUT')).toBe(true);
    const ac = new AbortController();
    const s = p.open('s', 'x', { signal: ac.signal });
    ac.abort(new Error('job ended'));
    await expect(s).rejects.toThrow('job ended');
    const pre = new AbortController();
    pre.abort(new Error('already'));
    await expect(p.open('u', 'x', { signal: pre.signal })).rejects.toThrow('already');
    expect(p.size).toBe(0);
  });

  it('refuses a second request with the same id', () => {
    const p = new PendingRequests<string>();
    void p.open('dup', 'x').catch(() => undefined);
    expect(() => p.open('dup', 'x')).toThrow(RangeError);
    p.rejectAll(new Error('done'));
  });
});
