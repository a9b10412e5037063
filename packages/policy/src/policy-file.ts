import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { FlareError, PolicyError, type AuditHook, type Logger } from '@flare/core';
import { MAX_POLICY_BYTES } from './json-input.js';

/** Options of {@link PolicyFile.load}. */
export interface PolicyFileOptions<T> {
  /** What the policy is called in audit events and messages, e.g. `authorization`. */
  readonly name: string;
  /**
   * Candidate files, first existing wins: FLARE's `local/authorization.json` overrides
   * `local/authorization.json.default`.
   */
  readonly paths: readonly string[];
  /** Validates the file's bytes into a policy (may be async: it may read files the policy names); throws a FlareError for a bad file. */
  readonly parse: (bytes: Uint8Array) => T | Promise<T>;
  /** The policy when no candidate exists (e.g. no privacy.json: no privacy policy); without it a missing file is an error. */
  readonly fallback?: () => T;
  /** Where every load, change and failed reload is reported (`policy_loaded`, `policy_changed`, `policy_reload_failed`). */
  readonly audit?: AuditHook;
  readonly logger?: Logger;
  /** Called after every reload attempt (tests and engines wait on it instead of sleeping). */
  readonly onReload?: (result: PolicyReloadResult) => void;
}

/** What a reload did. */
export interface PolicyReloadResult {
  readonly name: string;
  /** False when the new file was refused; the previous policy stays in force. */
  readonly ok: boolean;
  /** True when a new policy replaced the old one. */
  readonly changed: boolean;
  /** The file now in force (undefined: the fallback). */
  readonly path: string | undefined;
  /** SHA-256 (hex) of the file now in force. */
  readonly sha256: string | undefined;
  /** Why the new file was refused. */
  readonly error?: FlareError;
}

interface Loaded<T> {
  readonly value: T;
  readonly path: string | undefined;
  readonly sha256: string | undefined;
}

async function readCandidate(path: string): Promise<Uint8Array | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PolicyError('E_POLICY_FILE', `cannot open ${path}`, { cause });
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new PolicyError('E_POLICY_FILE', `${path} is not a regular file`);
    if (stat.size > MAX_POLICY_BYTES) throw new PolicyError('E_POLICY_FILE', `${path} is larger than ${MAX_POLICY_BYTES} bytes`);
    const buffer = Buffer.alloc(stat.size);
    const { bytesRead } = await handle.read(buffer, 0, stat.size, 0);
    return buffer.subarray(0, bytesRead);
  } catch (cause) {
    if (cause instanceof FlareError) throw cause;
    throw new PolicyError('E_POLICY_FILE', `cannot read ${path}`, { cause });
  } finally {
    await handle.close();
  }
}

/**
 * A site policy file that can change while the site runs: loaded and validated at start, reloaded on request
 * or on file change, and replaced only by a file that validates; a broken file keeps the previous policy in
 * force and reports why. Every load, change and refused change is an audit event.
 *
 * @example
 * ```ts
 * const authz = await PolicyFile.load({ name: 'authorization', paths: ['local/authorization.json', 'local/authorization.json.default'],
 *   parse: (b) => parseAuthorizationPolicy(b), audit });
 * authz.watch(); ... authorize(authz.current, request); ... authz.close();
 * ```
 */
export class PolicyFile<T> {
  readonly name: string;
  readonly #options: PolicyFileOptions<T>;
  #loaded: Loaded<T>;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #watchers: FSWatcher[] = [];
  #debounce: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: PolicyFileOptions<T>, loaded: Loaded<T>) {
    this.name = options.name;
    this.#options = options;
    this.#loaded = loaded;
  }

  /**
   * Loads the policy for the first time. A site must not start with a policy it cannot read, so this throws.
   *
   * @throws PolicyError E_POLICY_FILE (missing without fallback, unreadable, too large) or the parser's code.
   */
  static async load<T>(options: PolicyFileOptions<T>): Promise<PolicyFile<T>> {
    if (options.paths.length === 0) throw new TypeError('PolicyFile needs at least one candidate path');
    const loaded = await PolicyFile.#read(options);
    options.audit?.({
      action: 'policy_loaded',
      msg: `${options.name} policy loaded from ${loaded.path ?? '(built-in default)'}`,
      data: { policy: options.name, path: loaded.path ?? null, sha256: loaded.sha256 ?? null },
    });
    return new PolicyFile(options, loaded);
  }

  static async #read<T>(options: PolicyFileOptions<T>): Promise<Loaded<T>> {
    for (const path of options.paths) {
      const bytes = await readCandidate(path);
      if (bytes === undefined) continue;
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      return { value: await options.parse(bytes), path, sha256 };
    }
    if (options.fallback === undefined) throw new PolicyError('E_POLICY_FILE', `no ${options.name} policy: none of ${options.paths.join(', ')} exists`);
    return { value: options.fallback(), path: undefined, sha256: undefined };
  }

  /** The policy in force. */
  get current(): T {
    return this.#loaded.value;
  }

  /** The file in force and its SHA-256 (both undefined for the fallback). */
  get source(): { readonly path: string | undefined; readonly sha256: string | undefined } {
    return { path: this.#loaded.path, sha256: this.#loaded.sha256 };
  }

  /**
   * Reads the candidates again; replaces the policy when the file in force changed and the new one validates.
   * Never throws for a bad file: the result says why it was refused. Reloads run one at a time.
   */
  reload(): Promise<PolicyReloadResult> {
    const run = this.#queue.then(() => this.#reload());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #reload(): Promise<PolicyReloadResult> {
    const before = this.#loaded;
    const { name, audit, logger, onReload } = this.#options;
    let result: PolicyReloadResult;
    try {
      const next = await PolicyFile.#peek(this.#options, before);
      if (next === undefined) result = { name, ok: true, changed: false, path: before.path, sha256: before.sha256 };
      else {
        this.#loaded = next;
        result = { name, ok: true, changed: true, path: next.path, sha256: next.sha256 };
        audit?.({
          action: 'policy_changed',
          msg: `${name} policy replaced by ${next.path ?? '(built-in default)'}`,
          data: { policy: name, path: next.path ?? null, sha256: next.sha256 ?? null, previousPath: before.path ?? null, previousSha256: before.sha256 ?? null },
        });
        logger?.info(`${name} policy reloaded`, { path: next.path, sha256: next.sha256 });
      }
    } catch (e) {
      const error = e instanceof FlareError ? e : new PolicyError('E_POLICY_FILE', `${name} policy reload failed`, { cause: e });
      result = { name, ok: false, changed: false, path: before.path, sha256: before.sha256, error };
      audit?.({
        action: 'policy_reload_failed',
        msg: `${name} policy not replaced, the previous one stays in force: ${error.message}`,
        data: { policy: name, code: error.code, path: before.path ?? null, sha256: before.sha256 ?? null },
      });
      logger?.warn(`${name} policy not reloaded: ${error.describe()}`);
    }
    onReload?.(result);
    return result;
  }

  /** The new policy when the file in force differs from `before`, else undefined. */
  static async #peek<T>(options: PolicyFileOptions<T>, before: Loaded<T>): Promise<Loaded<T> | undefined> {
    for (const path of options.paths) {
      const bytes = await readCandidate(path);
      if (bytes === undefined) continue;
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      if (path === before.path && sha256 === before.sha256) return undefined;
      return { value: await options.parse(bytes), path, sha256 };
    }
    if (before.path === undefined && options.fallback !== undefined) return undefined;
    return PolicyFile.#read(options);
  }

  /**
   * Reloads when a candidate file changes (watching their folders, since editors replace files by renaming).
   * Changes within `debounceMs` (default 100) are taken together. Watchers do not keep the process alive.
   */
  watch({ debounceMs = 100 }: { readonly debounceMs?: number } = {}): void {
    if (this.#closed || this.#watchers.length > 0) return;
    const names = new Set(this.#options.paths.map((p) => basename(p)));
    for (const dir of new Set(this.#options.paths.map((p) => dirname(p)))) {
      let w: FSWatcher;
      try {
        w = watch(dir, { persistent: false }, (_event, file) => {
          if (file !== null && !names.has(file.toString())) return;
          if (this.#debounce !== undefined) clearTimeout(this.#debounce);
          this.#debounce = setTimeout(() => {
            this.#debounce = undefined;
            if (!this.#closed) void this.reload();
          }, debounceMs);
          this.#debounce.unref();
        });
      } catch (e) {
        // A folder that does not exist (yet) cannot be watched: explicit reload() still works.
        this.#options.logger?.warn(`${this.name} policy: cannot watch ${dir}: ${(e as Error).message}`);
        continue;
      }
      w.on('error', (e) => this.#options.logger?.warn(`${this.name} policy watch failed: ${e.message}`));
      this.#watchers.push(w);
    }
  }

  /** Stops watching. The policy in force stays readable. */
  close(): void {
    this.#closed = true;
    if (this.#debounce !== undefined) clearTimeout(this.#debounce);
    for (const w of this.#watchers.splice(0)) w.close();
  }
}
