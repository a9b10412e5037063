import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { FlareRuntimeError } from '@flare/core';

/** The `flare` entry point of this build (dist/bin.js), for spawning participants as separate processes. */
const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));

/** A free TCP port on loopback (the OS picks it; it is released before the server binds it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** A participant process: its output goes to `log`; `waitFor` resolves when a stdout line matches. */
export interface Participant {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/** Set by the poc in the participants it starts: exit when the poc's pipe to them closes ({@link exitWithParent}). */
const EXIT_WITH_PARENT = 'FLARE_EXIT_WITH_PARENT';

/**
 * In a participant the poc started (EXIT_WITH_PARENT set; otherwise nothing happens): when its stdin, a pipe the
 * poc holds open and never writes, ends, the poc is gone, however it died (SIGKILL and a test's timeout included:
 * the kernel closes the pipe). Then the participant stops as on SIGTERM (its graceful stop) and exits for sure
 * after `graceMs`. The variable is removed first, so this process's own children (learner programs) do not
 * inherit it; stdin does not keep the process alive.
 */
export function exitWithParent(graceMs = 10_000): void {
  if (process.env[EXIT_WITH_PARENT] !== '1') return;
  delete process.env[EXIT_WITH_PARENT];
  let gone = false;
  const parentGone = (): void => {
    if (gone) return;
    gone = true;
    setTimeout(() => process.exit(1), graceMs).unref();
    process.kill(process.pid, 'SIGTERM');
  };
  process.stdin.once('end', parentGone).once('close', parentGone).once('error', parentGone);
  process.stdin.resume();
  process.stdin.unref();
}

/**
 * Starts `flare <args>` as a child process with its stdout and stderr appended to `log`. Its stdin is a pipe from
 * this process that it watches ({@link exitWithParent}): it does not outlive this process.
 */
export function startParticipant(name: string, args: readonly string[], log: string, env: NodeJS.ProcessEnv = process.env): Participant {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...env, [EXIT_WITH_PARENT]: '1' } });
  // Nothing is ever written: the pipe only tells the child this process is alive.
  child.stdin!.on('error', () => {});
  const out = createWriteStream(log, { flags: 'a' });
  let buffered = '';
  const watchers: Array<{ re: RegExp; resolve(m: RegExpMatchArray): void }> = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    out.write(chunk);
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      for (const w of [...watchers]) {
        const m = w.re.exec(line);
        if (m !== null) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(m);
        }
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => out.write(chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exited.then(() => out.end());
  return {
    name,
    child,
    exited,
    waitFor: (re, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new FlareRuntimeError('E_RUNTIME_TIMEOUT', `${name} did not report ${re.source} within ${timeoutMs} ms (see ${log})`)), timeoutMs);
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new FlareRuntimeError('E_RUNTIME_DISCONNECTED', `${name} exited with code ${code} (see ${log})`));
        });
        watchers.push({
          re,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
      }),
    stop: async (graceMs = 5000) => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
