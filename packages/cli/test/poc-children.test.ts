// A killed `flare poc` leaves no orphans: its server and sites watch a pipe from it and stop when it closes.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

/** The state letter and parent pid of a live process (from /proc), or undefined once it is gone or a zombie. */
function alive(pid: number): { ppid: number } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
  const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return state === 'Z' || state === 'X' ? undefined : { ppid: Number(ppid) };
}

/** The pids of the live children of `parent`. */
function childrenOf(parent: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => alive(pid)?.ppid === parent);
}

/** Polls `probe` every 100 ms until it returns a value other than undefined; fails after `timeoutMs`. */
async function until<T>(what: string, probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const started: number[] = [];
const dirs: string[] = [];
afterEach(async () => {
  // Whatever the outcome, nothing this test started stays alive.
  for (const pid of started.splice(0)) if (alive(pid) !== undefined) process.kill(pid, 'SIGKILL');
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe.runIf(process.platform === 'linux')('a killed flare poc', () => {
  it.each(['SIGKILL', 'SIGTERM'] as const)('takes its server and sites with it (%s)', async (signal) => {
    const ws = await mkdtemp(join(tmpdir(), 'flare-poc-children-'));
    dirs.push(ws);
    const poc = spawn(process.execPath, [BIN, 'poc', '--clients', '2', '--rounds', '100', '--workspace', ws], { stdio: 'ignore' });
    started.push(poc.pid!);
    const exited = new Promise((r) => poc.once('exit', r));
    // The server and both sites are running (the poc starts the sites once the server listens).
    const children = await until('the server and 2 sites', () => {
      const c = childrenOf(poc.pid!);
      return c.length >= 3 ? c : undefined;
    }, 240_000);
    started.push(...children);
    expect(children).toHaveLength(3);
    poc.kill(signal);
    await exited;
    // The pipe each child watches closed with the poc: each stops on its own (grace 10 s, then a forced exit).
    await until('the children to exit', () => (children.every((pid) => alive(pid) === undefined) ? true : undefined), 60_000);
  }, 360_000);
});
