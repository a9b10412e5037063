import { StringDecoder } from 'node:string_decoder';
import type { Logger } from '@flare/core';

/** Longest line kept or logged, in characters; longer lines are cut (a program printing one huge line costs nothing). */
const MAX_LINE = 2000;
/** Lines logged per task before the rest are counted, not logged (a chatty program cannot flood the site log). */
const MAX_LINES_PER_TASK = 2000;

/**
 * A learner program's stdout or stderr, split into lines and logged with the learner's name; the last lines
 * are kept for error messages. Memory is bounded whatever the program prints.
 */
export class OutputLines {
  readonly #log: Logger;
  readonly #stream: 'stdout' | 'stderr';
  readonly #fields: Record<string, unknown>;
  readonly #tail: string[] = [];
  readonly #keep: number;
  readonly #utf8 = new StringDecoder('utf8');
  #partial = '';
  #logged = 0;
  #dropped = 0;

  constructor(log: Logger, stream: 'stdout' | 'stderr', fields: Record<string, unknown>, keep = 20) {
    this.#log = log;
    this.#stream = stream;
    this.#fields = fields;
    this.#keep = keep;
  }

  /** Feeds output as it arrives. */
  push(chunk: Buffer): void {
    let text = this.#partial + this.#utf8.write(chunk);
    let nl: number;
    while ((nl = text.indexOf('\n')) >= 0) {
      this.#line(text.slice(0, nl));
      text = text.slice(nl + 1);
    }
    // No newline for a long time: log what there is as a line of its own.
    if (text.length > MAX_LINE) {
      this.#line(text);
      text = '';
    }
    this.#partial = text;
  }

  /** Logs what is left without a final newline. */
  end(): void {
    this.#partial += this.#utf8.end();
    if (this.#partial.length > 0) this.#line(this.#partial);
    this.#partial = '';
    this.newTask();
  }

  /** Starts a new per-task logging allowance (and says how many lines the last one dropped). */
  newTask(): void {
    if (this.#dropped > 0) this.#log.warn(`learner ${this.#stream}: ${this.#dropped} more lines not logged`, this.#fields);
    this.#logged = 0;
    this.#dropped = 0;
  }

  /** The last lines (at most `keep`), oldest first. */
  get tail(): readonly string[] {
    return this.#partial.length > 0 ? [...this.#tail, this.#partial.slice(0, MAX_LINE)].slice(-this.#keep) : this.#tail;
  }

  #line(raw: string): void {
    const line = raw.replace(/\r$/, '').slice(0, MAX_LINE);
    this.#tail.push(line);
    if (this.#tail.length > this.#keep) this.#tail.shift();
    if (this.#logged >= MAX_LINES_PER_TASK) {
      this.#dropped += 1;
      return;
    }
    this.#logged += 1;
    this.#log.info(`learner ${this.#stream}: ${line}`, this.#fields);
  }
}
