import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import {
  CodecError,
  FRAME_PREFIX_BYTES,
  LearnerError,
  META,
  decodeModel,
  encodeModelParts,
  silentLogger,
  type FLModel,
  type JsonValue,
  type Learner,
  type LearnerContext,
  type Logger,
} from '@flare/core';
import { OutputLines } from './output-lines.js';
import { LEARNER_PROTOCOL_VERSION, MAX_HEADER_BYTES, RecordReader, encodeRecord, type LearnerFrame, type TaskHeader } from './protocol.js';
import { checkMetrics, checkUpdate, where } from './result-check.js';

/** Time limits of an external learner, in milliseconds. */
export interface ExternalLearnerTimeouts {
  /** From spawning the program to its hello frame (default 120 s: a Python program may import torch first). */
  readonly startMs?: number;
  /** For one train task, from sending the global model to the last byte of the result (default 1 h). */
  readonly trainMs?: number;
  /** For one validate task (default 10 min). */
  readonly validateMs?: number;
  /** From the stop frame to the program's exit, before the site kills it (default 10 s). */
  readonly stopMs?: number;
}

/** Options of {@link ExternalLearner.start}. */
export interface ExternalLearnerOptions {
  /** The learner's registered name (for messages and logs). */
  readonly name: string;
  readonly site: string;
  readonly job: string;
  /** argv: the program and its arguments, run without a shell. */
  readonly command: readonly [string, ...string[]];
  /** The program's working folder (inside the job's workspace). */
  readonly cwd: string;
  /** The program's whole environment: nothing of the site's own environment is added. */
  readonly env: Readonly<Record<string, string>>;
  /** The job's learner arguments, handed to the program in the welcome frame (untrusted input for it). */
  readonly args?: { readonly [k: string]: JsonValue };
  readonly timeouts?: ExternalLearnerTimeouts;
  /** Largest frame accepted from the program, in bytes, whatever the model size (default 4 GiB). */
  readonly maxFrameBytes?: number;
  /** How often the program is started again after it failed (died, hung, wrote garbage) in this job (default 2). */
  readonly maxRestarts?: number;
  readonly logger?: Logger;
}

const DEFAULT_TIMEOUTS = { startMs: 120_000, trainMs: 3_600_000, validateMs: 600_000, stopMs: 10_000 } as const;
/** Frames that carry no model (hello, validate results, errors) are at most a header. */
const SMALL_FRAME = FRAME_PREFIX_BYTES + MAX_HEADER_BYTES;

// Process groups of running learner programs: killed when the site process exits, whatever way it exits, so
// that no training program outlives its site (the programs also stop on their own at EOF of their input).
const liveGroups = new Set<number>();
let exitHookInstalled = false;
function trackGroup(pid: number): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const g of liveGroups) killGroup(g);
    });
  }
  liveGroups.add(pid);
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: the whole group is gone already.
  }
}

interface Expectation {
  readonly accept: (f: LearnerFrame) => boolean;
  readonly resolve: (f: LearnerFrame) => void;
  readonly reject: (e: Error) => void;
}

/** One running instance of the program. */
class Running {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly reader: RecordReader;
  readonly stdout: OutputLines;
  readonly stderr: OutputLines;
  readonly input: Writable;
  /** Resolves when the process is gone (exit code or signal). */
  readonly gone: Promise<string>;
  #expect: Expectation | undefined;
  #dead: LearnerError | undefined;
  #stoppedBySite = false;
  readonly #at: string;

  /** `onDeath(failed)`: failed unless the site stopped it, or it ended by itself with code 0 between tasks. */
  constructor(o: ExternalLearnerOptions, at: string, log: Logger, onDeath: (failed: boolean) => void) {
    this.#at = at;
    const fields = { site: o.site, job: o.job, learner: o.name };
    this.stdout = new OutputLines(log, 'stdout', fields);
    this.stderr = new OutputLines(log, 'stderr', fields);
    this.reader = new RecordReader(
      SMALL_FRAME,
      (f) => this.#frame(f),
      (e) => this.fail(new LearnerError(e.code, `${at}: ${e.message}`, { cause: e })),
    );
    // detached: the program leads a process group of its own, so a kill reaches whatever it started (data
    // loader workers, a shell script's children).
    this.child = spawn(o.command[0], o.command.slice(1), {
      cwd: o.cwd,
      env: { ...o.env },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
      detached: true,
      shell: false,
      windowsHide: true,
    });
    this.pid = this.child.pid ?? -1;
    if (this.pid > 0) trackGroup(this.pid);
    this.input = this.child.stdio[3] as Writable;
    const output = this.child.stdio[4] as Readable;
    // EPIPE and the like: the exit handler reports what happened; a write error alone says nothing new.
    this.input.on('error', () => undefined);
    output.on('error', () => undefined);
    output.on('data', (c: Buffer) => this.reader.push(c));
    this.child.stdout?.on('data', (c: Buffer) => this.stdout.push(c));
    this.child.stderr?.on('data', (c: Buffer) => this.stderr.push(c));
    this.gone = new Promise<string>((resolve) => {
      let ended = false;
      this.child.once('error', (e: NodeJS.ErrnoException) => {
        if (ended) return;
        ended = true;
        this.fail(new LearnerError('E_LEARNER_START', `${at}: cannot run ${JSON.stringify(o.command[0])} (${e.code ?? e.message})`, { cause: e }));
        onDeath(true);
        resolve(e.code ?? 'spawn error');
      });
      this.child.once('exit', (code, signal) => {
        if (ended) return;
        ended = true;
        const failed = !this.#stoppedBySite && (code !== 0 || this.busy || this.#dead !== undefined);
        const how = signal === null ? `exit code ${code}` : `signal ${signal}`;
        // Grandchildren may still hold the pipes; kill them so that the output ends and nothing is left behind.
        killGroup(this.pid);
        liveGroups.delete(this.pid);
        // Report once the pipes are drained ('close'), so that the last frame and stderr lines are in; a
        // descendant that left the group could hold them open, hence the bound.
        let reported = false;
        const report = () => {
          if (reported) return;
          reported = true;
          clearTimeout(bound);
          this.stdout.end();
          this.stderr.end();
          const tail = this.stderr.tail.slice(-5).join(' | ').slice(0, 1500);
          this.fail(new LearnerError('E_LEARNER_EXITED', `${at}: the program ended (${how})${tail.length > 0 ? `; last stderr: ${tail}` : ''}`));
          onDeath(failed);
          resolve(how);
        };
        const bound = setTimeout(report, 5000);
        this.child.once('close', report);
      });
    });
  }

  /** True while a task waits for the program's answer. */
  get busy(): boolean {
    return this.#expect !== undefined;
  }

  /** False once the instance failed or the site stopped it (it may still be exiting). */
  get usable(): boolean {
    return this.#dead === undefined && !this.#stoppedBySite;
  }

  /** The reason this instance stopped, once it did. */
  get dead(): LearnerError | undefined {
    return this.#dead;
  }

  /** Waits for the next frame that `accept` takes, with a deadline; anything else from the program is a protocol error. */
  expect(accept: (f: LearnerFrame) => boolean, ms: number, limit: number, timeout: () => LearnerError, signal?: AbortSignal): Promise<LearnerFrame> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    this.reader.limit = limit;
    return new Promise<LearnerFrame>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(timeout()), ms);
      const onAbort = () => {
        const reason: unknown = signal?.reason;
        this.stop();
        reject(reason instanceof Error ? reason : new DOMException('the task was aborted', 'AbortError'));
      };
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#expect = undefined;
        this.reader.limit = SMALL_FRAME;
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#expect = {
        accept,
        resolve: (f) => {
          done();
          resolve(f);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
    });
  }

  /** Writes a record without copying its parts; a program that does not read is caught by the task's deadline. */
  send(parts: readonly Uint8Array[]): void {
    if (this.#dead !== undefined) return;
    for (const p of parts) this.input.write(p);
  }

  /** Ends this instance with `e`: the pending task fails with it and the process group is killed. */
  fail(e: LearnerError): void {
    if (this.#dead === undefined) this.#dead = e;
    this.kill();
    this.#expect?.reject(this.#dead);
  }

  kill(): void {
    if (this.pid > 0) killGroup(this.pid);
  }

  /** Kills the program for the site's own reasons (abort, job end): not counted as the program's failure. */
  stop(): void {
    this.#stoppedBySite = true;
    this.kill();
  }

  #frame(f: LearnerFrame): void {
    const x = this.#expect;
    if (x === undefined || !x.accept(f)) {
      const what = f.header.t === 'hello' ? 'a second hello' : `a ${f.header.t} frame for task ${f.header.id}`;
      this.fail(new LearnerError('E_LEARNER_PROTOCOL', `${this.#at}: the program sent ${what} the site did not ask for`));
      return;
    }
    x.resolve(f);
  }
}

/**
 * A learner that runs a site's training program as a subprocess speaking the external learner protocol
 * (docs/learners.md): the program is started once and lives across rounds; for each task it receives the
 * global model (safetensors) and the task (JSON) on file descriptor 3 and answers on file descriptor 4.
 * Everything it returns is checked before it is used: frame sizes before allocation, tensor names, shapes,
 * dtypes and finiteness against the global model, metrics. A program that hangs, dies or writes garbage is
 * killed with its whole process group and the task fails with a code naming the learner and the site; the
 * program is started again for the next task, at most `maxRestarts` times per job. Tasks run one at a time.
 *
 * @example
 * ```ts
 * const learner = await ExternalLearner.start({ name: 'pytorch', site: 'site-1', job, command: ['python3', 'train.py'],
 *   cwd: jobDir, env: { PATH: process.env.PATH ?? '', PYTHONPATH: PYTHON_CLIENT_DIR } });
 * const update = await learner.train(globalModel, { site: 'site-1', job, round: 0 });
 * await learner.close();
 * ```
 */
export class ExternalLearner implements Learner {
  readonly #o: ExternalLearnerOptions;
  readonly #t: Required<ExternalLearnerTimeouts>;
  readonly #at: string;
  readonly #log: Logger;
  #proc: Running | undefined;
  #failures = 0;
  #nextId = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(o: ExternalLearnerOptions) {
    if (o.command.length === 0 || o.command[0].length === 0) throw new RangeError('"command" expected a program and its arguments');
    this.#o = o;
    this.#t = { ...DEFAULT_TIMEOUTS, ...o.timeouts };
    this.#at = where(o.name, o.site);
    this.#log = o.logger ?? silentLogger;
  }

  /**
   * Starts the program and waits for its hello, so that a site learns at deploy time (not in round 1) that a
   * learner cannot run.
   *
   * @throws LearnerError E_LEARNER_START (cannot run, or no hello in time), E_LEARNER_VERSION, E_LEARNER_EXITED,
   *   E_LEARNER_PROTOCOL.
   */
  static async start(options: ExternalLearnerOptions): Promise<ExternalLearner> {
    const l = new ExternalLearner(options);
    await l.#ensure();
    return l;
  }

  /** The program's process id while it runs (for tests and diagnostics). */
  get pid(): number | undefined {
    return this.#proc?.usable === true ? this.#proc.pid : undefined;
  }

  train(global: FLModel, ctx: LearnerContext): Promise<FLModel> {
    return this.#serial(async () => {
      const { header, payload } = await this.#task('train', global, ctx);
      if (header.t === 'error') throw new LearnerError('E_LEARNER_FAILED', `${this.#at}: the program failed round ${ctx.round}: ${header.message}`);
      if (header.t !== 'result') throw new LearnerError('E_LEARNER_PROTOCOL', `${this.#at}: expected a result`);
      if (header.kind === undefined || header.steps === undefined || payload.length === 0) {
        throw new LearnerError('E_LEARNER_PROTOCOL', `${this.#at}: a train result needs kind, steps and the model as payload`);
      }
      let update: FLModel;
      try {
        update = decodeModel(payload, { maxTensors: Math.max(1, global.params.size) });
      } catch (e) {
        if (!(e instanceof CodecError)) throw e;
        if (e.code === 'E_CODEC_TOO_MANY_TENSORS') throw new LearnerError('E_LEARNER_RESULT_NAMES', `${this.#at}: the result has more tensors than the ${global.params.size} of the global model`, { cause: e });
        throw new LearnerError('E_LEARNER_PROTOCOL', `${this.#at}: the result is not a readable safetensors model (${e.code}: ${e.message.slice(0, 200)})`, { cause: e });
      }
      const metrics = checkMetrics(header.metrics, this.#at);
      checkUpdate(global, update, this.#at);
      return {
        params: update.params,
        kind: header.kind,
        meta: { ...header.meta, [META.NUM_STEPS_CURRENT_ROUND]: header.steps, [META.CURRENT_ROUND]: ctx.round },
        metrics,
      };
    });
  }

  validate(global: FLModel, ctx: LearnerContext): Promise<Record<string, number>> {
    return this.#serial(async () => {
      const { header, payload } = await this.#task('validate', global, ctx);
      if (header.t === 'error') throw new LearnerError('E_LEARNER_FAILED', `${this.#at}: the program failed to validate round ${ctx.round}: ${header.message}`);
      if (header.t !== 'result' || payload.length > 0) throw new LearnerError('E_LEARNER_PROTOCOL', `${this.#at}: a validate result carries metrics only`);
      return checkMetrics(header.metrics, this.#at);
    });
  }

  /**
   * Stops the program: a stop frame and EOF, then its process group is killed after `stopMs`; a task still
   * running is cut at once (the job is over). Idempotent; no task runs after it.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const p = this.#proc;
    this.#proc = undefined;
    if (p === undefined) return;
    if (!p.usable) {
      p.kill();
      await p.gone;
      return;
    }
    if (p.busy) {
      p.stop();
    } else {
      p.send(encodeRecord({ t: 'stop' }));
      p.input.end();
    }
    const timer = setTimeout(() => p.stop(), this.#t.stopMs);
    await p.gone;
    clearTimeout(timer);
  }

  #serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(f, f);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #ensure(): Promise<Running> {
    if (this.#closed) throw new Error(`${this.#at} is closed`);
    if (this.#proc?.usable === true) return this.#proc;
    if (this.#failures > (this.#o.maxRestarts ?? 2)) {
      throw new LearnerError('E_LEARNER_RESTARTS', `${this.#at}: the program failed ${this.#failures} times in job ${this.#o.job}; it is not started again`);
    }
    // Failures are counted when a program instance dies of them (hang, crash, garbage, no hello), once each.
    const p: Running = new Running(this.#o, this.#at, this.#log, (failed) => {
      if (failed) this.#failures += 1;
      if (this.#proc === p) this.#proc = undefined;
    });
    this.#proc = p;
    const tooSlow = () => new LearnerError('E_LEARNER_START', `${this.#at}: no hello from the program within ${this.#t.startMs / 1000} s`);
    const hello = await p.expect((f) => f.header.t === 'hello', this.#t.startMs, SMALL_FRAME, tooSlow).catch((e: unknown) => {
      // Ended before its hello: it never started as a learner (a wrong script, a missing import).
      throw e instanceof LearnerError && e.code === 'E_LEARNER_EXITED' ? new LearnerError('E_LEARNER_START', e.message.replace('the program ended', 'the program ended before its hello'), { cause: e }) : e;
    });
    if (hello.header.t !== 'hello' || hello.header.protocol !== LEARNER_PROTOCOL_VERSION) {
      const v = hello.header.t === 'hello' ? hello.header.protocol : '?';
      const e = new LearnerError('E_LEARNER_VERSION', `${this.#at}: the program speaks protocol ${v}, this site ${LEARNER_PROTOCOL_VERSION}`);
      p.fail(e);
      throw e;
    }
    this.#log.info('learner program started', { site: this.#o.site, job: this.#o.job, learner: this.#o.name, pid: p.pid, client: hello.header.client ?? '' });
    p.send(encodeRecord({ t: 'welcome', protocol: LEARNER_PROTOCOL_VERSION, site: this.#o.site, job: this.#o.job, learner: this.#o.name, args: this.#o.args ?? {} }));
    return p;
  }

  async #task(kind: 'train' | 'validate', global: FLModel, ctx: LearnerContext): Promise<LearnerFrame> {
    ctx.signal?.throwIfAborted();
    const p = await this.#ensure();
    const id = this.#nextId++;
    const model = encodeModelParts(global);
    const header: TaskHeader = {
      t: 'task',
      id,
      kind,
      task: ctx.task ?? kind,
      site: ctx.site,
      job: ctx.job,
      round: ctx.round,
      ...(ctx.totalRounds === undefined ? {} : { total_rounds: ctx.totalRounds }),
      meta: { ...ctx.meta },
    };
    // A train result holds the same tensors as the global model: the same data bytes, and a safetensors
    // header that may be laid out differently but not much larger than ours.
    const headerBytes = model.parts[0]?.byteLength ?? 0;
    const limit = kind === 'train' ? Math.min(this.#o.maxFrameBytes ?? 4 * 1024 ** 3, SMALL_FRAME + model.byteLength + headerBytes + 65_536) : SMALL_FRAME;
    const ms = kind === 'train' ? this.#t.trainMs : this.#t.validateMs;
    p.stdout.newTask();
    p.stderr.newTask();
    const answer = p.expect(
      (f) => (f.header.t === 'result' || f.header.t === 'error') && f.header.id === id,
      ms,
      limit,
      () => new LearnerError('E_LEARNER_TIMEOUT', `${this.#at}: no answer to the ${kind} task of round ${ctx.round} within ${ms / 1000} s; the program was killed`),
      ctx.signal,
    );
    p.send(encodeRecord(header, model.parts));
    return answer;
  }
}
