// RFC 6455 section 5 framing, as the transport's own parser reads it: every way bytes can be split across
// socket reads, masking, control frames between data, and each frame it refuses.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameError, FrameParser, frameHeader, xorMask, type FrameSink } from '../src/frames.js';

type Event = [string, ...unknown[]];

/** A sink that records what it is told; frames whose payload starts with `stream` go to a destination. */
function recorder(options: { peek?: number; stream?: string; maxFrame?: number } = {}): { sink: FrameSink; events: Event[]; dests: Uint8Array[] } {
  const events: Event[] = [];
  const dests: Uint8Array[] = [];
  const sink: FrameSink = {
    peek: options.peek ?? 4,
    maxFrame: () => options.maxFrame ?? 1 << 20,
    start: (head, length) => {
      events.push(['start', Buffer.from(head).toString(), length]);
      if (options.stream === undefined || Buffer.from(head).toString() !== options.stream) return undefined;
      const dest = new Uint8Array(length - head.length);
      dests.push(dest);
      return dest;
    },
    progress: (bytes) => events.push(['progress', bytes.length]),
    end: () => events.push(['end']),
    frame: (p) => events.push(['frame', Buffer.from(p).toString()]),
    ping: (p) => events.push(['ping', Buffer.from(p).toString()]),
    pong: (p) => events.push(['pong', Buffer.from(p).toString()]),
    close: (code, reason) => events.push(['close', code, reason]),
  };
  return { sink, events, dests };
}

/** One frame on the wire: header (with the key when masked) and the masked payload. */
function wireFrame(opcode: number, payload: Uint8Array, mask?: Uint8Array, fin = true): Uint8Array {
  const header = frameHeader(opcode, payload.length, mask);
  if (!fin) header[0] = header[0]! & 0x7f;
  const body = new Uint8Array(payload);
  if (mask !== undefined) xorMask(body, mask, 0);
  return Buffer.concat([header, body]);
}

const text = (s: string): Uint8Array => new Uint8Array(Buffer.from(s));
const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

describe('FrameParser', () => {
  it('RFC 6455 5.7: a masked "Hello" from a client, and unmasked from a server', () => {
    // The RFC's own examples: 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58 is a masked text "Hello";
    // the same frame as binary (opcode 2) is what a FLARE-TS peer accepts.
    const client = recorder({ peek: 2 });
    new FrameParser(client.sink, true).push(new Uint8Array([0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]));
    expect(client.events).toEqual([['start', 'He', 5], ['frame', 'Hello']]);
    const server = recorder({ peek: 2 });
    new FrameParser(server.sink, false).push(new Uint8Array([0x82, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]));
    expect(server.events.at(-1)).toEqual(['frame', 'Hello']);
  });

  it('gives the same frames however the bytes are split across reads (property, masked and not)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { minLength: 1, maxLength: 5 }), fc.boolean(), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1 }), (payloads, masked, cuts) => {
        const bytes = Buffer.concat(payloads.map((p) => wireFrame(0x2, p, masked ? randomBytes(4) : undefined)));
        const whole = recorder();
        new FrameParser(whole.sink, masked).push(bytes);
        const pieces = recorder();
        const parser = new FrameParser(pieces.sink, masked);
        let at = 0;
        for (let i = 0; at < bytes.length; i++) {
          const n = cuts[i % cuts.length]!;
          parser.push(bytes.subarray(at, at + n));
          at += n;
        }
        const frames = (events: Event[]): Event[] => events.filter((e) => e[0] === 'frame');
        expect(frames(pieces.events)).toEqual(frames(whole.events));
        expect(frames(whole.events)).toEqual(payloads.map((p) => ['frame', Buffer.from(p).toString()]));
      }),
      { seed: 2026120528 },
    );
  });

  it('streams a frame into the destination the sink gives, unmasking in place, with control frames before and after', () => {
    const { sink, events, dests } = recorder({ stream: 'CHNK' });
    const payload = Buffer.concat([text('CHNK'), randomBytes(70_000)]);
    const bytes = Buffer.concat([wireFrame(0x9, text('p1'), MASK), wireFrame(0x2, payload, MASK), wireFrame(0xa, text('p2'), MASK)]);
    const parser = new FrameParser(sink, true);
    for (let at = 0; at < bytes.length; at += 16_384) parser.push(bytes.subarray(at, at + 16_384));
    expect(Buffer.from(dests[0]!).equals(payload.subarray(4))).toBe(true);
    expect(events[0]).toEqual(['ping', 'p1']);
    expect(events[1]).toEqual(['start', 'CHNK', payload.length]);
    expect(events.filter((e) => e[0] === 'progress').reduce((n, e) => n + (e[1] as number), 0)).toBe(70_000);
    expect(events.slice(-2)).toEqual([['end'], ['pong', 'p2']]);
  });

  it('reads 16-bit and 64-bit lengths (RFC 6455 5.2) at their edges', () => {
    for (const n of [125, 126, 65_535, 65_536, 200_000]) {
      const { sink, events } = recorder({ peek: 0 });
      const p = randomBytes(n);
      new FrameParser(sink, true).push(wireFrame(0x2, p, MASK));
      expect(events.at(-1)).toEqual(['frame', p.toString()]);
    }
  });

  it('a close frame: code and reason; none (1005); the parser stops after it', () => {
    const { sink, events } = recorder();
    const parser = new FrameParser(sink, false);
    parser.push(Buffer.concat([wireFrame(0x8, new Uint8Array([0x0f, 0xa0, ...Buffer.from('E_AUTH_MAC')])), wireFrame(0x8, new Uint8Array(0))]));
    expect(events).toEqual([['close', 4000, 'E_AUTH_MAC'], ['close', 1005, '']]);
  });

  it('holds: stops between frames while the owner holds it and reports what it consumed', () => {
    let held = false;
    const { sink, events } = recorder({ peek: 0 });
    const wrapped: FrameSink = { ...sink, frame: (p) => ((held = true), sink.frame(p)) };
    const parser = new FrameParser(wrapped, false, () => held);
    const bytes = Buffer.concat([wireFrame(0x2, text('one')), wireFrame(0x2, text('two'))]);
    const frames = (): Event[] => events.filter((e) => e[0] === 'frame');
    const used = parser.push(bytes);
    expect(frames()).toEqual([['frame', 'one']]);
    expect(used).toBe(wireFrame(0x2, text('one')).length);
    held = false;
    parser.push(bytes.subarray(used));
    expect(frames()).toEqual([['frame', 'one'], ['frame', 'two']]);
  });

  const refusals: ReadonlyArray<readonly [string, Uint8Array, boolean, number]> = [
    ['an unmasked client frame (RFC 6455 5.1)', wireFrame(0x2, text('x')), true, 1002],
    ['a masked server frame (RFC 6455 5.1)', wireFrame(0x2, text('x'), MASK), false, 1002],
    ['a text frame', wireFrame(0x1, text('x'), MASK), true, 1003],
    ['a fragmented message (FIN clear)', wireFrame(0x2, text('x'), MASK, false), true, 1002],
    ['a continuation frame', wireFrame(0x0, text('x'), MASK), true, 1002],
    ['reserved bits set (no extension negotiated)', (() => { const f = wireFrame(0x2, text('x'), MASK); f[0] = f[0]! | 0x40; return f; })(), true, 1002],
    ['an unknown opcode', wireFrame(0x3, text('x'), MASK), true, 1002],
    ['a control frame longer than 125 bytes', Buffer.concat([Buffer.from([0x89, 0xfe, 0x00, 0x7e]), MASK, randomBytes(126)]), true, 1002],
    ['a close frame of one byte', wireFrame(0x8, new Uint8Array([3]), MASK), true, 1002],
    ['a 64-bit length with its top bit set', Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, ...MASK]), true, 1002],
    ['a frame above the limit, before any payload is read', Buffer.from([0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, ...MASK]), true, 1009],
  ];
  for (const [what, bytes, masked, closeCode] of refusals) {
    it(`refuses ${what} (FrameError, close ${closeCode})`, () => {
      const { sink, events } = recorder({ maxFrame: 1 << 20 });
      let error: unknown;
      try {
        new FrameParser(sink, masked).push(bytes);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(FrameError);
      expect((error as FrameError).closeCode).toBe(closeCode);
      expect(events.filter((e) => e[0] === 'frame')).toEqual([]);
    });
  }
});

describe('xorMask and frameHeader', () => {
  it('xorMask equals the byte-by-byte definition at any offset, alignment and mask position (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 3 }), fc.uint8Array({ minLength: 4, maxLength: 4 }), (data, offset, maskAt, mask) => {
        const backing = new Uint8Array(data.length + offset);
        backing.set(data, offset);
        const view = backing.subarray(offset);
        xorMask(view, mask, maskAt);
        expect([...view]).toEqual([...data].map((b, i) => b ^ mask[(maskAt + i) % 4]!));
      }),
      { seed: 2026120529 },
    );
  });

  it('encodes 7-bit, 16-bit and 64-bit lengths and the MASK bit with its key', () => {
    expect([...frameHeader(0x2, 5, undefined)]).toEqual([0x82, 5]);
    expect([...frameHeader(0x2, 126, undefined)]).toEqual([0x82, 126, 0, 126]);
    expect([...frameHeader(0x2, 2 ** 32 + 5, undefined)]).toEqual([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 5]);
    expect([...frameHeader(0x8, 2, MASK)]).toEqual([0x88, 0x82, ...MASK]);
  });
});
