import { FRAME_LIMITS } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/admin/client.js';
import type { PeerChannel } from '../src/protocol/channel.js';
import { ADMIN, adminKit, bundle, closeAll, federation, jobDefinition } from './helpers.js';

afterEach(closeAll);

/** The admin's channel, recording the size of every header it receives (the wire refuses headers above 64 KiB). */
function recording(ch: PeerChannel): { channel: PeerChannel; headerBytes: number[] } {
  const headerBytes: number[] = [];
  const channel: PeerChannel = {
    peer: ch.peer,
    send: (h, p) => ch.send(h, p),
    onMessage: (handler) =>
      ch.onMessage((header, payload) => {
        headerBytes.push(new TextEncoder().encode(JSON.stringify(header)).byteLength);
        handler(header, payload);
      }),
    onClose: (h) => ch.onClose(h),
    close: () => ch.close(),
  };
  return { channel, headerBytes };
}

describe('admin API: large answers', () => {
  it("answers `status` of a job with 3,000 sites' refusals in the payload, within the header limit, and the client reads it whole", async () => {
    const fed = await federation([{}, {}]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, deploy: ['site-1', 'site-2'] })));
    await fed.server.waitForJob(id, 20_000);
    // A thousand-site job's record: far above the 64 KiB a header may carry.
    const many = Array.from({ length: 3000 }, (_, i) => `site-x${i}`);
    await fed.server.store.update(id, (r) => {
      for (const s of many) r.refused[s] = `E_POLICY_DENIED: ${s} does not run jobs of this submitter`;
    });
    const { channel, headerBytes } = recording(await fed.hub.connect(ADMIN));
    const admin = new AdminClient(channel, { timeoutMs: 20_000, signer: await adminKit(ADMIN) });
    const { record, sites } = await admin.jobStatus(id);
    expect(Object.keys(record.refused)).toHaveLength(3000);
    expect(record.refused['site-x2999']).toBe('E_POLICY_DENIED: site-x2999 does not run jobs of this submitter');
    expect(sites.map((s) => [s.name, s.deployed, s.contributions])).toEqual([
      ['site-1', true, [0]],
      ['site-2', true, [0]],
    ]);
    expect(headerBytes.length).toBeGreaterThan(0);
    expect(Math.max(...headerBytes)).toBeLessThan(FRAME_LIMITS.maxHeaderBytes);
    // Small answers stay in the header, as before.
    expect((await admin.list()).map((j) => j.id)).toEqual([id]);
    expect((await admin.list({ last: 1 })).map((j) => j.id)).toEqual([id]);
    admin.close();
  });

  it('refuses an answer whose payload is not JSON (E_RUNTIME_PROTOCOL)', async () => {
    let deliver: ((header: unknown, payload: Uint8Array) => void) | undefined;
    const channel: PeerChannel = {
      peer: { name: 'server', org: 'nvidia', type: 'server' },
      send: (h) => {
        const id = (h as { id: string }).id;
        queueMicrotask(() => deliver?.({ t: 'reply', id, ok: true, body: 'json' }, new TextEncoder().encode('{"record": [1, 2')));
        return Promise.resolve();
      },
      onMessage: (h) => void (deliver = h),
      onClose: () => undefined,
      close: () => undefined,
    };
    const admin = new AdminClient(channel, { timeoutMs: 5_000 });
    await expect(admin.list()).rejects.toMatchObject({ code: 'E_RUNTIME_PROTOCOL' });
  });
});
