import { FRAME_LIMITS, FRAME_MAGIC, FRAME_PREFIX_BYTES, FRAME_VERSION, LearnerError, decodeFrame, type JsonValue } from '@flare/core';
import { z } from 'zod';

// The external learner protocol, version 1 (docs/learners.md). The carrier is a pair of pipes on file
// descriptors 3 (site -> program) and 4 (program -> site): stdout and stderr stay free for the program's own
// prints, which the site logs, so a print() can never corrupt a frame. Each message is a record:
//   u64 little-endian length L | L bytes = one @flare/core frame (FLTS | version | u32 header length |
//   header JSON | payload)
// where the payload, when present, is a safetensors file. The length comes first so that a reader can refuse
// an oversized record before it allocates anything for it.

/** The external learner protocol version this site speaks (the `protocol` field of hello and welcome). */
export const LEARNER_PROTOCOL_VERSION = 1;

/** Bytes of the record length prefix (u64 little-endian). */
const RECORD_PREFIX_BYTES = 8;

const NOT_A_LENGTH = 1n << 48n;

/** The largest header JSON of a protocol frame: the core frame limit (64 KiB). */
export const MAX_HEADER_BYTES = FRAME_LIMITS.maxHeaderBytes;

const metricName = z.string().regex(/^[A-Za-z0-9_.:/-]{1,64}$/, 'a metric name of 1-64 letters, digits, _ . : / -');

const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.string().max(4096), z.number(), z.boolean(), z.null(), z.array(jsonValue).max(1024), z.record(z.string().max(128), jsonValue)]),
);

/** A metric value: a number, or one of the strings a client writes for a non-finite value (refused by the site). */
const metricValue = z.union([z.number(), z.enum(['NaN', 'Infinity', '-Infinity'])]);

/** The program's first frame: which protocol it speaks. */
const Hello = z.strictObject({
  t: z.literal('hello'),
  protocol: z.int().min(1).max(65_535),
  /** The client library and its version, for the site log (e.g. `flare-ts-python/0.1.0`). */
  client: z.string().max(200).optional(),
});

/** The program's answer to a task: a train result carries a safetensors payload; a validate result does not. */
const Result = z.strictObject({
  t: z.literal('result'),
  id: z.int().min(0),
  /** Full weights or the difference from the received global model (train results only). */
  kind: z.enum(['full', 'diff']).optional(),
  /** NUM_STEPS_CURRENT_ROUND: local steps this round (train results only; FedAvg weighs by it). */
  steps: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  metrics: z.record(metricName, metricValue).default({}),
  /** Extra meta for the update (small JSON); the site's own keys override it. */
  meta: z.record(z.string().max(128), jsonValue).optional(),
});

/** The program could not do a task (an exception in its training code). */
const Failure = z.strictObject({
  t: z.literal('error'),
  id: z.int().min(0),
  message: z.string().max(4000),
});

/** Every frame a learner program may send, by its `t`. */
const FromLearner = z.discriminatedUnion('t', [Hello, Result, Failure]);
/** A parsed frame from a learner program. */
type FromLearner = z.output<typeof FromLearner>;

/** The site's answer to hello: who runs the program and the job's learner arguments. */
interface Welcome {
  readonly t: 'welcome';
  readonly protocol: number;
  readonly site: string;
  readonly job: string;
  readonly learner: string;
  readonly args: { readonly [k: string]: JsonValue };
}

/** A task: the payload is the global model (safetensors). */
export interface TaskHeader {
  readonly t: 'task';
  readonly id: number;
  /** `train` (answer with weights) or `validate` (answer with metrics). */
  readonly kind: 'train' | 'validate';
  /** The workflow's task name. */
  readonly task: string;
  readonly site: string;
  readonly job: string;
  readonly round: number;
  readonly total_rounds?: number;
  readonly meta: { readonly [k: string]: JsonValue };
}

/** Every frame the site sends. */
export type ToLearner = Welcome | TaskHeader | { readonly t: 'stop' };

/**
 * The bytes of one record with `header` and `payload` parts, as a list to write in order (the payload parts are
 * not copied). The header JSON is padded with spaces so that the payload starts 8-byte aligned in the record,
 * which lets the receiver view float tensors without copying them.
 */
export function encodeRecord(header: ToLearner | { readonly [k: string]: JsonValue }, payload: readonly Uint8Array[] = []): Uint8Array[] {
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const misaligned = (FRAME_PREFIX_BYTES + json.length) % 8;
  if (misaligned !== 0) json = Buffer.concat([json, Buffer.alloc(8 - misaligned, 0x20)]);
  if (json.length > MAX_HEADER_BYTES) throw new RangeError(`a protocol header of ${json.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  const payloadBytes = payload.reduce((n, p) => n + p.byteLength, 0);
  const prefix = Buffer.alloc(RECORD_PREFIX_BYTES + FRAME_PREFIX_BYTES);
  prefix.writeBigUInt64LE(BigInt(FRAME_PREFIX_BYTES + json.length + payloadBytes), 0);
  prefix.set(FRAME_MAGIC, RECORD_PREFIX_BYTES);
  prefix[RECORD_PREFIX_BYTES + 4] = FRAME_VERSION;
  prefix.writeUInt32LE(json.length, RECORD_PREFIX_BYTES + 5);
  return [prefix, json, ...payload];
}

/** One decoded record from a learner program. */
export interface LearnerFrame {
  readonly header: FromLearner;
  /** The safetensors payload (empty when the frame has none); a view into the record. */
  readonly payload: Uint8Array;
}

/**
 * Reassembles records from the bytes a learner program writes, one at a time, with a limit that the site
 * sets before each read (a train result may be as large as the global model; anything else is header-only).
 * The limit is checked on the 8-byte length, before the record's buffer is allocated; a frame that does not
 * decode is an error, never a guess.
 */
export class RecordReader {
  #limit: number;
  #prefix = Buffer.alloc(RECORD_PREFIX_BYTES);
  #prefixFill = 0;
  #record: Buffer | undefined;
  #recordFill = 0;
  #failed = false;
  readonly #onFrame: (f: LearnerFrame) => void;
  readonly #onError: (e: LearnerError) => void;

  constructor(limit: number, onFrame: (f: LearnerFrame) => void, onError: (e: LearnerError) => void) {
    this.#limit = limit;
    this.#onFrame = onFrame;
    this.#onError = onError;
  }

  /** The largest record accepted from now on, in bytes (prefix excluded). */
  set limit(bytes: number) {
    this.#limit = bytes;
  }

  /** True once a bad record was seen: everything after it is ignored (the site kills the program). */
  get failed(): boolean {
    return this.#failed;
  }

  /** Feeds bytes as they arrive; emits each whole record, or one error and nothing after it. */
  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length && !this.#failed) {
      if (this.#record === undefined) {
        const take = Math.min(RECORD_PREFIX_BYTES - this.#prefixFill, chunk.length - at);
        this.#prefix.set(chunk.subarray(at, at + take), this.#prefixFill);
        this.#prefixFill += take;
        at += take;
        if (this.#prefixFill < RECORD_PREFIX_BYTES) return;
        const declared = this.#prefix.readBigUInt64LE(0);
        this.#prefixFill = 0;
        // Too short for any frame, a "length" of 256 TiB and more (what eight bytes of text read as), or a frame
        // without its length: not a record of this protocol, whatever its size would have been.
        const bareFrame = FRAME_MAGIC.every((b, i) => this.#prefix[i] === b);
        if (declared < BigInt(FRAME_PREFIX_BYTES) || declared >= NOT_A_LENGTH || bareFrame) {
          return this.#fail(new LearnerError('E_LEARNER_PROTOCOL', 'the program wrote bytes that are not a protocol record (garbage on the protocol channel)'));
        }
        if (declared > BigInt(this.#limit)) {
          return this.#fail(new LearnerError('E_LEARNER_OVERSIZED', `the program announced a ${declared}-byte frame; at most ${this.#limit} bytes are accepted now`));
        }
        // Filled completely before anyone reads it, so the unzeroed allocation never shows old memory.
        this.#record = Buffer.allocUnsafeSlow(Number(declared));
        this.#recordFill = 0;
      }
      const take = Math.min(this.#record.length - this.#recordFill, chunk.length - at);
      this.#record.set(chunk.subarray(at, at + take), this.#recordFill);
      this.#recordFill += take;
      at += take;
      if (this.#recordFill === this.#record.length) {
        const record = this.#record;
        this.#record = undefined;
        this.#emit(record);
      }
    }
  }

  /** True while a record is partly read (the stream ended mid-record when this holds at its end). */
  get midRecord(): boolean {
    return this.#record !== undefined || this.#prefixFill > 0;
  }

  #emit(record: Uint8Array): void {
    let frame;
    try {
      frame = decodeFrame(record, FromLearner, { maxHeaderBytes: MAX_HEADER_BYTES, maxBytes: this.#limit });
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'invalid';
      return this.#fail(new LearnerError('E_LEARNER_PROTOCOL', `the program sent a frame that does not decode (${code}: ${(e as Error).message.slice(0, 300)})`, { cause: e }));
    }
    this.#onFrame({ header: frame.header, payload: frame.payload });
  }

  #fail(e: LearnerError): void {
    this.#failed = true;
    this.#record = undefined;
    this.#onError(e);
  }
}
