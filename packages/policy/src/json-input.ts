import { CodecError, parseStrictJson, PolicyError, type PolicyErrorCode } from '@flare/core';

/** Largest policy document accepted (policy files are a few KiB; this bounds parsing work on hostile input). */
export const MAX_POLICY_BYTES = 1 << 20;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Turns a policy given as JSON text, UTF-8 bytes or an already parsed value into a value to validate. Text is
 * parsed with core's strict parser: duplicate keys (which JSON.parse silently resolves to the last one, so two
 * readers could disagree about a policy) and prototype keys are refused.
 */
export function policyJson(input: unknown, code: PolicyErrorCode, what: string): unknown {
  let text: string;
  if (typeof input === 'string') text = input;
  else if (input instanceof Uint8Array) {
    if (input.byteLength > MAX_POLICY_BYTES) throw new PolicyError(code, `${what} is larger than ${MAX_POLICY_BYTES} bytes`);
    try {
      text = utf8.decode(input);
    } catch (cause) {
      throw new PolicyError(code, `${what} is not UTF-8 text`, { cause });
    }
  } else return input;
  if (text.length > MAX_POLICY_BYTES) throw new PolicyError(code, `${what} is larger than ${MAX_POLICY_BYTES} bytes`);
  try {
    return parseStrictJson(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (cause) {
    if (cause instanceof CodecError) throw new PolicyError(code, `${what} is not valid JSON: ${cause.message}`, { cause });
    throw cause;
  }
}

/** True for a plain JSON object (any prototype), false for arrays and null. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** Describes a JSON value's type for error messages, without its content. */
export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}
