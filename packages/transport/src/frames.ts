// RFC 6455 framing on a socket the HTTP upgrade handed over: the transport's own, so that a streamed chunk's
// bytes go from the socket's read buffers straight into the message they belong to (ws joins every frame
// into a buffer of its own first: one copy and one allocation more per chunk, see README "Performance").

/** RFC 6455 5.2 opcodes. */
const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** Why the peer's bytes are not a frame this endpoint accepts (the connection closes with E_TRANSPORT_PROTOCOL). */
export class FrameError extends Error {
  constructor(
    message: string,
    /** RFC 6455 7.4.1 close code to send: 1002 protocol error, 1009 too big. */
    readonly closeCode: number,
    /** The limit was the pre-login one. */
    readonly tooLarge = false,
  ) {
    super(message);
  }
}

/**
 * Where the payload of a binary frame goes. The parser first collects its first `peek` bytes (fewer if the
 * frame is shorter) and asks {@link FrameSink.start}: a destination of `length - peek` bytes receives the rest
 * as it arrives (unmasked in place, `progress` after each piece); undefined collects the whole frame into a
 * buffer of its own and hands it to {@link FrameSink.frame}.
 */
export interface FrameSink {
  readonly peek: number;
  /** The largest frame payload accepted now (checked before anything is buffered). */
  maxFrame(): number;
  start(head: Uint8Array, length: number): Uint8Array | undefined;
  /** `bytes` (a view of the destination) were just written. */
  progress(bytes: Uint8Array): void;
  /** The frame streamed into the destination is complete. */
  end(): void;
  /** A whole frame collected into its own buffer (owned by the receiver). */
  frame(payload: Uint8Array): void;
  ping(payload: Uint8Array): void;
  pong(payload: Uint8Array): void;
  close(code: number, reason: string): void;
}

type State =
  | { readonly kind: 'header' }
  | { readonly kind: 'peek'; readonly length: number; readonly mask: Uint8Array | undefined; readonly head: Uint8Array; filled: number }
  | { readonly kind: 'stream'; readonly mask: Uint8Array | undefined; readonly into: Uint8Array; filled: number; readonly maskOffset: number }
  | { readonly kind: 'collect'; readonly opcode: number; readonly mask: Uint8Array | undefined; readonly into: Uint8Array; filled: number };

const EMPTY = new Uint8Array(0);

/**
 * The receiving half: feed it the socket's bytes with {@link FrameParser.push}. It keeps at most one partial
 * frame header (14 bytes) and one peek of itself; every payload byte is copied once, to where it belongs.
 */
export class FrameParser {
  #state: State = { kind: 'header' };
  /** Bytes of an incomplete frame header. */
  #header = new Uint8Array(14);
  #headerFilled = 0;
  #stopped = false;

  /**
   * @param masked whether frames must be masked (a server reading a client) or must not be (a client).
   * @param held true while the owner wants no more frames (it paused reading from inside a callback).
   */
  constructor(
    private readonly sink: FrameSink,
    private readonly masked: boolean,
    private readonly held: () => boolean = () => false,
  ) {}

  /** Stops parsing for good (the connection is closing): later bytes are ignored. */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Parses `data` until its end, or until the owner holds the parser (then the rest is for a later push).
   * Returns how many bytes were consumed.
   *
   * @throws FrameError for bytes that break the protocol; nothing more is parsed.
   */
  push(data: Uint8Array): number {
    let at = 0;
    while (at < data.length && !this.#stopped && !this.held()) {
      const state = this.#state;
      switch (state.kind) {
        case 'header':
          at = this.#readHeader(data, at);
          break;
        case 'peek': {
          const take = Math.min(state.head.length - state.filled, data.length - at);
          copyUnmasked(state.head, state.filled, data, at, take, state.mask, state.filled);
          state.filled += take;
          at += take;
          if (state.filled === state.head.length) this.#afterPeek(state);
          break;
        }
        case 'stream': {
          const take = Math.min(state.into.length - state.filled, data.length - at);
          copyUnmasked(state.into, state.filled, data, at, take, state.mask, state.maskOffset + state.filled);
          const written = state.into.subarray(state.filled, state.filled + take);
          state.filled += take;
          at += take;
          this.sink.progress(written);
          if (state.filled === state.into.length) {
            this.#state = { kind: 'header' };
            this.sink.end();
          }
          break;
        }
        case 'collect': {
          const take = Math.min(state.into.length - state.filled, data.length - at);
          copyUnmasked(state.into, state.filled, data, at, take, state.mask, state.filled);
          state.filled += take;
          at += take;
          if (state.filled === state.into.length) this.#complete(state.opcode, state.into);
          break;
        }
      }
    }
    return this.#stopped ? data.length : at;
  }

  /** Reads (part of) a frame header from `data` at `at`; returns where the header ended or the data did. */
  #readHeader(data: Uint8Array, at: number): number {
    // The header's size is known from its first two bytes; gather up to that many.
    const need = (): number => {
      if (this.#headerFilled < 2) return 2;
      const len7 = this.#header[1]! & 0x7f;
      return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((this.#header[1]! & 0x80) !== 0 ? 4 : 0);
    };
    while (this.#headerFilled < need() && at < data.length) this.#header[this.#headerFilled++] = data[at++]!;
    if (this.#headerFilled < need()) return at;
    const h = this.#header;
    const fin = (h[0]! & 0x80) !== 0;
    const opcode = h[0]! & 0x0f;
    if ((h[0]! & 0x70) !== 0) throw new FrameError('a frame sets reserved bits (no extension was negotiated)', 1002);
    const isMasked = (h[1]! & 0x80) !== 0;
    if (isMasked !== this.masked) throw new FrameError(this.masked ? 'a client frame is not masked (RFC 6455 5.1)' : 'a server frame is masked (RFC 6455 5.1)', 1002);
    const len7 = h[1]! & 0x7f;
    let length: number;
    let p = 2;
    if (len7 === 126) {
      length = (h[2]! << 8) | h[3]!;
      p = 4;
    } else if (len7 === 127) {
      // 63-bit length; anything above 2^53 is far beyond every limit below.
      const hi = ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
      const lo = ((h[6]! << 24) >>> 0) + (h[7]! << 16) + (h[8]! << 8) + h[9]!;
      if (h[2]! & 0x80) throw new FrameError('a frame length has its top bit set', 1002);
      length = hi * 2 ** 32 + lo;
      p = 10;
    } else length = len7;
    const mask = isMasked ? h.slice(p, p + 4) : undefined;
    this.#headerFilled = 0;
    if (opcode >= 0x8) {
      // RFC 6455 5.5: control frames are not fragmented and carry at most 125 bytes.
      if (!fin || length > 125) throw new FrameError('a control frame is fragmented or longer than 125 bytes', 1002);
      if (opcode !== OP_CLOSE && opcode !== OP_PING && opcode !== OP_PONG) throw new FrameError(`unknown control opcode ${opcode}`, 1002);
      return this.#beginCollect(opcode, length, mask, at);
    }
    if (opcode === OP_TEXT) throw new FrameError('the peer sent a text frame', 1003);
    if (opcode === OP_CONTINUATION || !fin) throw new FrameError('the peer fragmented a message (FLARE-TS peers send one frame per message)', 1002);
    if (opcode !== OP_BINARY) throw new FrameError(`unknown data opcode ${opcode}`, 1002);
    const max = this.sink.maxFrame();
    if (length > max) throw new FrameError(`a frame of ${length} bytes exceeds the ${max}-byte limit`, 1009, true);
    if (length === 0) {
      this.#complete(OP_BINARY, EMPTY);
      return at;
    }
    const state: State = { kind: 'peek', length, mask, head: new Uint8Array(Math.min(this.sink.peek, length)), filled: 0 };
    this.#state = state;
    if (state.head.length === 0) this.#afterPeek(state);
    return at;
  }

  #beginCollect(opcode: number, length: number, mask: Uint8Array | undefined, at: number): number {
    if (length === 0) this.#complete(opcode, EMPTY);
    else this.#state = { kind: 'collect', opcode, mask, into: new Uint8Array(length), filled: 0 };
    return at;
  }

  #afterPeek(state: Extract<State, { kind: 'peek' }>): void {
    const rest = state.length - state.head.length;
    const into = this.sink.start(state.head, state.length);
    if (this.#stopped) return;
    if (into !== undefined) {
      if (into.length !== rest) throw new RangeError(`the sink gave ${into.length} bytes for a ${rest}-byte remainder`);
      if (rest === 0) {
        this.#state = { kind: 'header' };
        this.sink.end();
      } else this.#state = { kind: 'stream', mask: state.mask, into, filled: 0, maskOffset: state.head.length };
      return;
    }
    const whole = new Uint8Array(state.length);
    whole.set(state.head);
    if (rest === 0) this.#complete(OP_BINARY, whole);
    else this.#state = { kind: 'collect', opcode: OP_BINARY, mask: state.mask, into: whole, filled: state.head.length };
  }

  #complete(opcode: number, payload: Uint8Array): void {
    this.#state = { kind: 'header' };
    switch (opcode) {
      case OP_BINARY:
        return this.sink.frame(payload);
      case OP_PING:
        return this.sink.ping(payload);
      case OP_PONG:
        return this.sink.pong(payload);
      default: {
        // RFC 6455 5.5.1: an optional 2-byte code, then a UTF-8 reason.
        if (payload.length === 1) throw new FrameError('a close frame carries one byte', 1002);
        if (payload.length === 0) return this.sink.close(1005, '');
        const code = (payload[0]! << 8) | payload[1]!;
        return this.sink.close(code, Buffer.from(payload.buffer, payload.byteOffset + 2, payload.length - 2).toString('utf8'));
      }
    }
  }
}

/**
 * Copies `length` bytes of `src` at `from` to `dst` at `to`, removing the mask (RFC 6455 5.3: byte i of the
 * payload is XORed with mask[i % 4]; `maskAt` is the payload offset of `src[from]`).
 */
function copyUnmasked(dst: Uint8Array, to: number, src: Uint8Array, from: number, length: number, mask: Uint8Array | undefined, maskAt: number): void {
  if (length === 0) return;
  dst.set(src.subarray(from, from + length), to);
  if (mask === undefined || (mask[0]! | mask[1]! | mask[2]! | mask[3]!) === 0) return;
  xorMask(dst.subarray(to, to + length), mask, maskAt);
}

/** XORs `bytes` in place with `mask` starting at mask position `maskAt % 4`. */
export function xorMask(bytes: Uint8Array, mask: Uint8Array, maskAt: number): void {
  let i = 0;
  // Bytes up to a 4-byte boundary of the array one by one, then whole words with the rotated mask.
  const m = (k: number): number => mask[(maskAt + k) & 3]!;
  while (i < bytes.length && (bytes.byteOffset + i) % 4 !== 0) {
    bytes[i] = bytes[i]! ^ m(i);
    i++;
  }
  const words = Math.floor((bytes.length - i) / 4);
  if (words > 0) {
    const view = new Uint32Array(bytes.buffer, bytes.byteOffset + i, words);
    // Little-endian word of mask bytes (maskAt+i .. maskAt+i+3).
    const word = (m(i) | (m(i + 1) << 8) | (m(i + 2) << 16) | (m(i + 3) << 24)) >>> 0;
    for (let w = 0; w < words; w++) view[w] = view[w]! ^ word;
    i += words * 4;
  }
  while (i < bytes.length) {
    bytes[i] = bytes[i]! ^ m(i);
    i++;
  }
}

/**
 * The header of one final frame of `opcode` with `length` payload bytes (RFC 6455 5.2), with the masking key
 * when `mask` is given (clients).
 */
export function frameHeader(opcode: number, length: number, mask: Uint8Array | undefined): Uint8Array {
  const ext = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const out = new Uint8Array(2 + ext + (mask === undefined ? 0 : 4));
  out[0] = 0x80 | opcode;
  out[1] = (mask === undefined ? 0 : 0x80) | (ext === 0 ? length : ext === 2 ? 126 : 127);
  const view = new DataView(out.buffer);
  if (ext === 2) view.setUint16(2, length);
  else if (ext === 8) {
    view.setUint32(2, Math.floor(length / 2 ** 32));
    view.setUint32(6, length >>> 0);
  }
  if (mask !== undefined) out.set(mask, 2 + ext);
  return out;
}
