import { randomUUID } from 'node:crypto';
import { closeSync, fdatasync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, unlinkSync, writeSync, type PathLike } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import type { FlareError} from '@flare/core';
import { AuditError, canonicalJson, parseStrictJson, type AuditEventInput, type JsonValue } from '@flare/core';
import { ACTION, ANCHOR_ACTION, ANCHOR_ROLLBACK_ACTION, AUDIT_FORMAT_VERSION, CHECKPOINT_ACTION, checkpointSchema, type CheckpointRecord, eventSchema, GENESIS, MAX_LINE_BYTES, OPEN_ACTION, recordHash, sha256Hex } from './record.js';
import { checkpointSigner, type CheckpointSigner } from './signer.js';
import { compareAnchors, verifyAnchor, type AuditAnchor } from './anchor.js';

/** Options of {@link AuditLog.open}. */
export interface AuditLogOptions {
  /** This site's name; every line carries it and a log of another site is refused. */
  readonly site: string;
  /** The site's kit private key (KeyObject or PEM): ECDSA P-256, RSA ≥ 2048 or Ed25519. Signs checkpoints. */
  readonly signer: KeyObject | string;
  /** Events between signed checkpoints (default 1000). */
  readonly checkpointEvery?: number;
  /**
   * `always`: every append is written and fdatasync'ed before it returns (survives power loss; ~hundreds per
   * second on ordinary disks). `batch` (default): every append is written to the OS before it returns (survives
   * a crash or SIGKILL of the process) and synced at most `batchMs` later (while the event loop runs), on
   * flush() and at close; a power loss or kernel crash can lose the events of that last window.
   */
  readonly fsync?: 'always' | 'batch';
  /** Longest time an appended event stays unsynced in `batch` mode, ms (default 100). */
  readonly batchMs?: number;
  /**
   * Peers' anchors recorded before (e.g. `(await readAnchors([path])).anchors` of this same log, read before it is
   * opened), so {@link AuditLog.recordAnchor} notices a peer that rolled back across restarts of this process.
   */
  readonly anchors?: Iterable<AuditAnchor>;
}

/** Options of {@link AuditLog.recordAnchor}. */
export interface RecordAnchorOptions {
  /** The peer's certificate (PEM) or public key, from its authenticated session: the anchor must be signed by it. */
  readonly certificate?: string | KeyObject;
  /** The peer's authenticated name: the anchor must be its log's. */
  readonly site?: string;
}

const MAX_CHECKPOINT_EVERY = 1_000_000;
const encoder = new TextEncoder();

/** `pid` alive? EPERM means alive but not ours. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function takeLock(lockPath: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new AuditError('E_AUDIT_WRITE', `cannot create ${lockPath}`, { cause: e });
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
    } catch {
      // Unreadable or vanished: treat as stale below.
    }
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) throw new AuditError('E_AUDIT_LOCKED', `${lockPath} is held by live process ${pid}`);
    // A writer that died without close (SIGKILL, crash) leaves its lock: take it over.
    try {
      unlinkSync(lockPath);
    } catch {
      // Someone else removed it first; retry.
    }
  }
  throw new AuditError('E_AUDIT_LOCKED', `${lockPath} is being taken by another process`);
}

interface Tail {
  readonly seq: number;
  readonly hash: string;
  /** Bytes of an incomplete last line that were cut off (a write torn by a crash), and their SHA-256. */
  readonly torn?: { readonly bytes: number; readonly sha256: string };
}

/** Reads the last complete line to continue the chain; cuts a torn (never acknowledged) final fragment. */
function readTail(fd: number, path: string, site: string): Tail | undefined {
  const size = fstatSync(fd).size;
  if (size === 0) return undefined;
  const window = Math.min(size, 2 * MAX_LINE_BYTES + 1);
  const buf = Buffer.alloc(window);
  readSync(fd, buf, 0, window, size - window);
  const end = buf.lastIndexOf(0x0a);
  const fragment = buf.subarray(end + 1);
  // A torn write of ours is the start of a canonical line, whose first key is always "action".
  if (fragment.length > 0 && (fragment.length >= MAX_LINE_BYTES || !fragment.toString('utf8').startsWith('{"action":"'.slice(0, fragment.length)))) {
    throw new AuditError('E_AUDIT_CORRUPT', `${path} ends in ${fragment.length} bytes that are not an audit line`);
  }
  let last: { seq: number; hash: string } | undefined;
  if (end >= 0) {
    const start = buf.lastIndexOf(0x0a, end - 1) + 1;
    if (start === 0 && window < size) throw new AuditError('E_AUDIT_CORRUPT', `${path} ends in a line longer than ${MAX_LINE_BYTES} bytes`);
    const line = buf.subarray(start, end).toString('utf8');
    let value: JsonValue;
    try {
      value = parseStrictJson(line);
    } catch (cause) {
      throw new AuditError('E_AUDIT_CORRUPT', `the last line of ${path} is not JSON`, { cause });
    }
    const parsed = (value as { action?: unknown }).action === CHECKPOINT_ACTION ? checkpointSchema.safeParse(value) : eventSchema.safeParse(value);
    if (!parsed.success || recordHash(value as Record<string, JsonValue>) !== parsed.data.hash) {
      throw new AuditError('E_AUDIT_CORRUPT', `the last line of ${path} is not an intact audit line`);
    }
    if (parsed.data.site !== site) throw new AuditError('E_AUDIT_SITE_MISMATCH', `${path} is the audit log of site ${JSON.stringify(parsed.data.site)}, not ${JSON.stringify(site)}`);
    last = { seq: parsed.data.seq, hash: parsed.data.hash };
  }
  const torn = fragment.length > 0 ? { bytes: fragment.length, sha256: sha256Hex(fragment.toString('latin1')) } : undefined;
  if (torn) ftruncateSync(fd, size - fragment.length);
  if (last === undefined) return torn ? { seq: -1, hash: GENESIS, torn } : undefined;
  return torn ? { ...last, torn } : last;
}

const str = (s: string) => JSON.stringify(s);

/** `,"key":"value"` for an optional string field of an event, '' when absent. */
function field(key: string, v: unknown, max: number): string {
  if (v === undefined) return '';
  if (typeof v !== 'string' || v.length > max) throw new AuditError('E_AUDIT_EVENT', `audit event: ${key} must be a string of at most ${max} characters`);
  return `,"${key}":${str(v)}`;
}

/**
 * canonicalJson of an event's data: flat objects of strings, finite numbers, booleans and null (the usual case)
 * are serialized here with the same rules (keys sorted by UTF-16 code units, JSON.stringify for each value);
 * anything nested goes to core's canonicalJson. The property test checks lines against canonicalJson.
 */
function canonicalData(data: Readonly<Record<string, JsonValue>>): string {
  const keys = Object.keys(data).sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = data[k];
    if (v === undefined) continue;
    const flat = v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
    // Nested values, and values JSON cannot represent (which canonicalJson refuses with a TypeError).
    if (!flat) return canonicalJson(data as JsonValue);
    out += `${out.length > 1 ? ',' : ''}${str(k)}:${JSON.stringify(v)}`;
  }
  return `${out}}`;
}

// toISOString per call is a measurable share of an append; events within the same millisecond share it.
let lastMs = -1;
let lastIso = '';
function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/**
 * An append-only, hash-chained, signed audit log for one site (or one job): JSON Lines, one event per line,
 * each line `{v, seq, ts, site, id, ref?, user?, job?, scope?, action, msg?, data?, prev, hash}` where `hash` is
 * the SHA-256 of the line's canonical JSON (RFC 8785, core's canonicalJson) without `hash`, and `prev` the
 * previous line's hash. Every `checkpointEvery` events and at close a checkpoint line signed with the site's
 * key seals everything before it. One writer per file (a `.lock` file beside it); reopening continues the chain.
 *
 * @example
 * ```ts
 * const log = await AuditLog.open('audit/site-1.jsonl', { site: 'site-1', signer: kitKeyPem });
 * const id = log.append({ action: 'task_received', ref: serverEventId, job, msg: 'train round 3' });
 * filterCtx = { ...filterCtx, audit: log.append }; // log.append is an AuditHook
 * await log.close();
 * ```
 */
export class AuditLog {
  readonly path: string;
  readonly site: string;
  readonly #fd: number;
  readonly #lockPath: string;
  readonly #signer: CheckpointSigner;
  readonly #every: number;
  readonly #always: boolean;
  readonly #batchMs: number;
  readonly #siteJson: string;
  #seq: number;
  #prev: string;
  #sinceCheckpoint = 0;
  #syncTimer: NodeJS.Timeout | undefined;
  #inflight: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #failed: FlareError | undefined;
  #closed = false;
  #lastCheckpoint: CheckpointRecord | undefined;
  /** The latest anchor recorded per peer log (site name). */
  readonly #peers = new Map<string, AuditAnchor>();

  private constructor(path: string, fd: number, lockPath: string, site: string, signer: CheckpointSigner, options: AuditLogOptions, tail: Tail | undefined) {
    this.path = path;
    this.site = site;
    this.#fd = fd;
    this.#lockPath = lockPath;
    this.#signer = signer;
    this.#every = options.checkpointEvery ?? 1000;
    this.#always = options.fsync === 'always';
    this.#batchMs = options.batchMs ?? 100;
    this.#siteJson = str(site);
    this.#seq = tail === undefined ? 0 : tail.seq + 1;
    this.#prev = tail?.hash ?? GENESIS;
    for (const a of options.anchors ?? []) {
      const known = this.#peers.get(a.site);
      if (known === undefined || a.seq >= known.seq) this.#peers.set(a.site, a);
    }
  }

  /**
   * Opens (creating if needed) the log at `path`, continuing its chain, and writes an `audit_open` event. A
   * torn final fragment left by a crash mid-write (never acknowledged to anyone) is cut off and its size and
   * hash are recorded in that event.
   *
   * @throws AuditError E_AUDIT_SIGNER, E_AUDIT_LOCKED, E_AUDIT_CORRUPT, E_AUDIT_SITE_MISMATCH or E_AUDIT_WRITE.
   */
  static async open(path: string, options: AuditLogOptions): Promise<AuditLog> {
    if (typeof options.site !== 'string' || options.site.length === 0 || options.site.length > 256) throw new TypeError('site must be a non-empty string of at most 256 characters');
    const every = options.checkpointEvery ?? 1000;
    if (!Number.isInteger(every) || every < 1 || every > MAX_CHECKPOINT_EVERY) throw new RangeError(`checkpointEvery must be an integer in 1..${MAX_CHECKPOINT_EVERY}, got ${every}`);
    if (options.fsync !== undefined && options.fsync !== 'always' && options.fsync !== 'batch') throw new TypeError(`fsync must be 'always' or 'batch', got ${String(options.fsync)}`);
    const batchMs = options.batchMs ?? 100;
    if (!(batchMs >= 1 && batchMs <= 60_000)) throw new RangeError(`batchMs must be in 1..60000, got ${batchMs}`);
    const signer = checkpointSigner(options.signer);
    // Seeds are checked like any anchor: a seed that does not verify must not suppress a rollback alarm.
    const anchors = [...(options.anchors ?? [])].map((a) => verifyAnchor(a));
    options = { ...options, anchors };
    const lockPath = `${path}.lock`;
    takeLock(lockPath);
    let fd: number | undefined;
    try {
      try {
        fd = openSync(path as PathLike, 'a+', 0o640);
      } catch (cause) {
        throw new AuditError('E_AUDIT_WRITE', `cannot open ${path}`, { cause });
      }
      const tail = readTail(fd, path, options.site);
      const log = new AuditLog(path, fd, lockPath, options.site, signer, options, tail);
      log.#append(
        {
          action: OPEN_ACTION,
          msg: tail === undefined || tail.seq < 0 ? 'audit log created' : `audit log reopened after seq ${tail.seq}`,
          data: {
            pid: process.pid,
            resumed: tail !== undefined && tail.seq >= 0,
            ...(tail?.torn ? { tornBytes: tail.torn.bytes, tornSha256: tail.torn.sha256 } : {}),
          },
        },
        true,
      );
      return log;
    } catch (e) {
      if (fd !== undefined) closeSync(fd);
      unlinkSync(lockPath);
      throw e;
    }
  }

  /** The `seq` the next line will get. */
  get nextSeq(): number {
    return this.#seq;
  }

  /**
   * Appends an event and returns its id (a UUID), once the line is written (and synced, with fsync
   * `always`). Bound to the instance, so `log.append` can be handed out as core's AuditHook.
   *
   * @throws AuditError E_AUDIT_EVENT (bad action, reserved `audit_*` action, non-JSON data, line too long),
   * E_AUDIT_CLOSED or E_AUDIT_WRITE (the log stays failed after a write error: it never writes a broken chain).
   */
  readonly append = (event: AuditEventInput): string => this.#append(event, false);

  #append(event: AuditEventInput, internal: boolean): string {
    if (this.#closed) throw new AuditError('E_AUDIT_CLOSED', `the audit log ${this.path} is closed`);
    if (this.#failed) throw this.#failed;
    if (typeof event?.action !== 'string' || !ACTION.test(event.action)) throw new AuditError('E_AUDIT_EVENT', `invalid audit action ${JSON.stringify(String(event?.action).slice(0, 80))}`);
    if (!internal && event.action.startsWith('audit_')) throw new AuditError('E_AUDIT_EVENT', `the action ${JSON.stringify(event.action)} is reserved for the audit log itself`);
    // Keys in sorted order (RFC 8785 sorts by UTF-16 code units; all keys are ASCII): byte-identical to
    // canonicalJson(record), built without sorting on the hot path. A test checks the identity.
    const id = randomUUID();
    let data = '';
    try {
      if (event.data !== undefined) data = `,"data":${canonicalData(event.data)}`;
    } catch (cause) {
      throw new AuditError('E_AUDIT_EVENT', `audit event ${event.action}: data is not JSON`, { cause });
    }
    const opt = field;
    const head = `{"action":${str(event.action)}${data}`;
    const rest =
      `"id":"${id}"${opt('job', event.job, 256)}${opt('msg', event.msg, 8192)},"prev":"${this.#prev}"` +
      `${opt('ref', event.ref, 256)}${opt('scope', event.scope, 256)},"seq":${this.#seq},"site":${this.#siteJson},"ts":"${isoNow()}"` +
      `${opt('user', event.user, 256)},"v":${AUDIT_FORMAT_VERSION}}`;
    const hash = sha256Hex(`${head},${rest}`);
    const line = `${head},"hash":"${hash}",${rest}\n`;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit: measure exactly only when that bound is exceeded.
    if (line.length * 3 > MAX_LINE_BYTES && encoder.encode(line).length > MAX_LINE_BYTES) {
      throw new AuditError('E_AUDIT_EVENT', `audit event ${event.action} is longer than ${MAX_LINE_BYTES} bytes`);
    }
    this.#write(line);
    this.#prev = hash;
    this.#seq++;
    if (++this.#sinceCheckpoint >= this.#every) this.#checkpoint(false);
    return id;
  }

  #write(line: string): void {
    try {
      writeSync(this.#fd, line);
      if (this.#always) fdatasyncSync(this.#fd);
      else if (this.#syncTimer === undefined) {
        this.#syncTimer = setTimeout(() => this.#sync(), this.#batchMs);
        // The OS already holds the data; a pending sync must not keep the process alive on its own.
        this.#syncTimer.unref();
      }
    } catch (cause) {
      this.#failed = new AuditError('E_AUDIT_WRITE', `writing ${this.path} failed`, { cause });
      throw this.#failed;
    }
  }

  /** The batch-mode sync, off the event loop's thread so a slow disk does not stall the process. */
  #sync(): void {
    this.#syncTimer = undefined;
    if (this.#closed || this.#failed) return;
    if (this.#inflight !== undefined) {
      // A sync is still running; lines written since it began need another one.
      this.#syncTimer = setTimeout(() => this.#sync(), this.#batchMs);
      this.#syncTimer.unref();
      return;
    }
    this.#inflight = new Promise((resolve) => {
      fdatasync(this.#fd, (cause) => {
        if (cause && !this.#failed) this.#failed = new AuditError('E_AUDIT_WRITE', `syncing ${this.path} failed`, { cause });
        this.#inflight = undefined;
        resolve();
      });
    });
  }

  #checkpoint(final: boolean): void {
    const body = {
      action: CHECKPOINT_ACTION as typeof CHECKPOINT_ACTION,
      cp: { alg: this.#signer.alg, final, key: this.#signer.publicKey },
      id: randomUUID(),
      prev: this.#prev,
      seq: this.#seq,
      site: this.site,
      ts: new Date().toISOString(),
      v: AUDIT_FORMAT_VERSION as typeof AUDIT_FORMAT_VERSION,
    };
    const hash = sha256Hex(canonicalJson(body));
    const sig = this.#signer.sign(hash);
    const record: CheckpointRecord = { ...body, hash, sig };
    this.#write(`${canonicalJson(record as unknown as JsonValue)}\n`);
    this.#lastCheckpoint = record;
    this.#prev = hash;
    this.#seq++;
    this.#sinceCheckpoint = 0;
  }

  /**
   * This log's anchor for its peers: seals the events appended since the last checkpoint with a new signed
   * checkpoint (synced to disk before it is returned) and returns that checkpoint line. Send it to the peers
   * that record anchors (a site to the server at login and periodically; the server to each site); they record
   * it with {@link AuditLog.recordAnchor}, and `verifyAuditLog(path, { anchors })` later proves this log was not
   * rolled back or cut below it.
   *
   * @throws AuditError E_AUDIT_CLOSED or E_AUDIT_WRITE.
   */
  anchor(): AuditAnchor {
    if (this.#closed) throw new AuditError('E_AUDIT_CLOSED', `the audit log ${this.path} is closed`);
    if (this.#failed) throw this.#failed;
    if (this.#sinceCheckpoint > 0 || this.#lastCheckpoint === undefined) this.#checkpoint(false);
    // A peer will hold this checkpoint as proof of what this log contained: it must be on disk first.
    this.flush();
    return Object.freeze({ ...this.#lastCheckpoint!, cp: { ...this.#lastCheckpoint!.cp } });
  }

  /**
   * Records a peer's anchor (from {@link AuditLog.anchor} on its side) as an `audit_anchor` event whose
   * `data.anchor` is the peer's checkpoint line, after checking it: it must verify (hash, signature, and the
   * peer's certificate and name when given) and must not go back on an anchor this log recorded for the same
   * peer before. An older anchor, or another checkpoint at the same position, means the peer's log was rolled
   * back: an `audit_anchor_rollback` event is written and the call throws.
   *
   * @returns The event id.
   * @throws AuditError E_AUDIT_ANCHOR (does not verify), E_AUDIT_ROLLBACK (rolled back or forked),
   *   E_AUDIT_CERT, E_AUDIT_CLOSED or E_AUDIT_WRITE.
   */
  recordAnchor(value: unknown, options: RecordAnchorOptions = {}): string {
    if (this.#closed) throw new AuditError('E_AUDIT_CLOSED', `the audit log ${this.path} is closed`);
    const anchor = verifyAnchor(value, options);
    const previous = this.#peers.get(anchor.site);
    const order = previous === undefined ? 'advanced' : compareAnchors(previous, anchor);
    const brief = (a: AuditAnchor) => ({ seq: a.seq, hash: a.hash, ts: a.ts });
    if (order === 'rolled_back' || order === 'forked') {
      const msg = `the audit log of ${JSON.stringify(anchor.site)} was ${order === 'forked' ? 'rolled back and rewritten' : 'rolled back'}: it now shows seq ${anchor.seq} after seq ${previous!.seq} was recorded here${order === 'forked' ? ' with another hash' : ''}`;
      this.#append({ action: ANCHOR_ROLLBACK_ACTION, msg, data: { peer: anchor.site, order, previous: brief(previous!), received: brief(anchor) } }, true);
      throw new AuditError('E_AUDIT_ROLLBACK', msg);
    }
    const id = this.#append({ action: ANCHOR_ACTION, msg: `anchor of ${anchor.site} at seq ${anchor.seq}`, data: { peer: anchor.site, anchor: anchor as unknown as JsonValue } }, true);
    this.#peers.set(anchor.site, anchor);
    return id;
  }

  /** Syncs everything appended so far to disk now (batch mode), e.g. before acknowledging a peer. */
  flush(): void {
    if (this.#closed) return;
    if (this.#failed) throw this.#failed;
    if (this.#syncTimer !== undefined) clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    try {
      fdatasyncSync(this.#fd);
    } catch (cause) {
      this.#failed = new AuditError('E_AUDIT_WRITE', `syncing ${this.path} failed`, { cause });
      throw this.#failed;
    }
  }

  /**
   * Writes a final signed checkpoint, syncs, closes the file and releases the lock. Safe to call twice.
   *
   * @throws AuditError E_AUDIT_WRITE when the final checkpoint cannot be written or synced (the file is closed anyway).
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#syncTimer !== undefined) clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    await this.#inflight;
    try {
      if (!this.#failed) {
        this.#checkpoint(true);
        if (!this.#always) fdatasyncSync(this.#fd);
      }
    } catch (cause) {
      throw cause instanceof AuditError ? cause : new AuditError('E_AUDIT_WRITE', `closing ${this.path} failed`, { cause });
    } finally {
      this.#closed = true;
      closeSync(this.#fd);
      try {
        unlinkSync(this.#lockPath);
      } catch {
        // Already gone: nothing to release.
      }
    }
  }
}
