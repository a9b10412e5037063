// A watchdog for the event loop of a scale bench process (issue #18: a server once stalled 128 s during 5,000
// logins, cause unknown). A thread beside the main one notices when the main thread stops beating and reports,
// while the stall lasts, what the kernel says the main thread is doing: running (JavaScript, GC: state R, no
// wait channel) or sleeping in a system call (state D or S, the wait channel and the syscall number: a write
// held by the disk, say). Linux only (it reads /proc); elsewhere it reports the length of the stall alone.
import { Worker } from 'node:worker_threads';

/** The watchdog thread: checks the main thread's beat every second and reads /proc while it is missing. */
const WATCHER = `
const { workerData } = require('node:worker_threads');
const { readFileSync, writeSync } = require('node:fs');
// Straight to fd 2: a worker's process.stderr goes through the main thread, which is the one that is stuck.
const say = (line) => { try { writeSync(2, line + '\\n'); } catch {} };
const beat = new Int32Array(workerData.shared);
const sleep = new Int32Array(new SharedArrayBuffer(4));
const task = '/proc/' + workerData.pid + '/task/' + workerData.pid + '/';
const read = (f) => { try { return readFileSync(task + f, 'utf8').trim(); } catch { return '?'; } };
const state = () => {
  const stat = read('stat');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // In the kernel: its stack (root only) names what it waits for, e.g. the journal or dirty-page throttling.
  const stack = fields[0] === 'R' ? '' : ', kernel stack ' + read('stack').split('\\n').slice(0, 4).map((l) => l.replace(/^\\[<[0-9a-f]+>\\] /, '')).join(' < ');
  return 'state ' + fields[0] + ', wchan ' + (read('wchan') || '0') + ', syscall ' + read('syscall').split(' ')[0] + stack;
};
let last = Atomics.load(beat, 0);
let since = Date.now();
let reported = 0;
for (;;) {
  Atomics.wait(sleep, 0, 0, 1000);
  const now = Atomics.load(beat, 0);
  if (now !== last) {
    if (reported > 0) say(workerData.name + ': event loop ran again after ' + ((Date.now() - since) / 1000).toFixed(1) + ' s');
    last = now;
    since = Date.now();
    reported = 0;
    continue;
  }
  const blocked = Date.now() - since;
  // The first report at the threshold, then one every threshold while it lasts.
  if (blocked >= workerData.thresholdMs * (reported + 1)) {
    reported++;
    say(new Date().toISOString().slice(11, 19) + ' ' + workerData.name + ': event loop blocked for ' + (blocked / 1000).toFixed(1) + ' s; main thread: ' + state());
  }
}
`;

/**
 * Starts the watchdog of this process's event loop: a stall of `thresholdMs` or more is reported on stderr with
 * the main thread's kernel state (every `thresholdMs` while it lasts), and its end. The thread does not keep the
 * process alive.
 */
export function watchEventLoop(name: string, thresholdMs = 5_000): void {
  const shared = new SharedArrayBuffer(4);
  const beat = new Int32Array(shared);
  const t = setInterval(() => Atomics.add(beat, 0, 1), 200);
  t.unref();
  const worker = new Worker(WATCHER, { eval: true, workerData: { shared, pid: process.pid, name, thresholdMs } });
  worker.unref();
}
