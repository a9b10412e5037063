import { errorInfo, type FlareErrorCode } from './codes.js';

/** Options accepted by every {@link FlareError} constructor. */
export interface FlareErrorOptions {
  /** The lower-level error this one wraps. Never put secrets into it. */
  readonly cause?: unknown;
}

/**
 * The one error type FLARE-TS throws for a refusal or a failure a user can meet.
 *
 * `code` is stable API (tests and programs match on it); `message` says what happened in this case;
 * `hint` says what to do, from the code's catalog entry. Neither contains key material, tokens or file
 * contents. Area subclasses ({@link CodecError}, `PkiError`, ...) narrow `code` to their family.
 *
 * @example
 * ```ts
 * try { decodeModel(bytes) } catch (e) { if (e instanceof FlareError && e.code === 'E_CODEC_TRUNCATED') ... }
 * ```
 */
export class FlareError<C extends FlareErrorCode = FlareErrorCode> extends Error {
  readonly code: C;

  constructor(code: C, message: string, options?: FlareErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }

  /** What to do about it: the catalog's action sentence for this code. */
  get hint(): string {
    return errorInfo(this.code).action;
  }

  /** `E_CODE: message What to do: hint` — the line a CLI prints. */
  describe(): string {
    return `${this.code}: ${this.message} What to do: ${this.hint}`;
  }
}

/** True when `value` is a {@link FlareError}, optionally with the given code. */
export function isFlareError(value: unknown, code?: FlareErrorCode): value is FlareError {
  return value instanceof FlareError && (code === undefined || value.code === code);
}
