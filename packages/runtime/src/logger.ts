import type { Logger } from '@flare/core';
import winston from 'winston';

/** Options of {@link createLogger}. */
export interface CreateLoggerOptions {
  /** Who logs (site or server name), added to every line. */
  readonly name: string;
  /** A JSON Lines log file (structured, one object per line); none when omitted. */
  readonly file?: string;
  /** Readable lines on stderr: `true` forces, `false` silences; default: only when stderr is a terminal. */
  readonly console?: boolean;
  /** Least severe level written (default `info`; `FLARE_LOG_LEVEL` overrides). */
  readonly level?: 'debug' | 'info' | 'warn' | 'error';
}

/** A {@link Logger} that also closes its files. */
export interface ClosableLogger extends Logger {
  /** Flushes and closes the log file. */
  close(): Promise<void>;
}

/**
 * A winston logger behind core's small {@link Logger} interface: structured JSON Lines to a file, readable
 * `time level [name] message key=value` lines on a terminal. Libraries take the `Logger`; only this
 * adapter knows winston.
 */
export function createLogger(options: CreateLoggerOptions): ClosableLogger {
  const transports: winston.transport[] = [];
  if (options.file !== undefined) {
    transports.push(new winston.transports.File({ filename: options.file, format: winston.format.combine(winston.format.timestamp(), winston.format.json()) }));
  }
  const toConsole = options.console ?? process.stderr.isTTY === true;
  if (toConsole) {
    transports.push(
      new winston.transports.Console({
        stderrLevels: ['debug', 'info', 'warn', 'error'],
        format: winston.format.combine(
          winston.format.timestamp({ format: 'HH:mm:ss' }),
          winston.format.printf((info) => {
            const { timestamp, level, message, name, ...rest } = info as Record<string, unknown>;
            const fields = Object.entries(rest)
              .filter(([k]) => typeof k === 'string')
              .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
              .join(' ');
            return `${String(timestamp)} ${String(level)} [${String(name)}] ${String(message)}${fields === '' ? '' : ` ${fields}`}`;
          }),
        ),
      }),
    );
  }
  const envLevel = process.env['FLARE_LOG_LEVEL'];
  const level = envLevel === 'debug' || envLevel === 'info' || envLevel === 'warn' || envLevel === 'error' ? envLevel : (options.level ?? 'info');
  const w = winston.createLogger({ level, defaultMeta: { name: options.name }, transports, silent: transports.length === 0 });
  const log = (lvl: string) => (msg: string, fields?: Record<string, unknown>) => {
    w.log(lvl, msg, fields ?? {});
  };
  return {
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    close: () =>
      new Promise<void>((resolve) => {
        if (transports.length === 0) return resolve();
        w.on('finish', () => resolve());
        w.end();
      }),
  };
}
