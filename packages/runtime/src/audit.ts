import type { AuditEventInput, AuditHook, JsonValue } from '@flare/core';

/** An audit event whose optional fields may be undefined (dropped before the hook sees them). */
export interface LooseAuditEvent {
  readonly action: string;
  readonly msg?: string | undefined;
  readonly ref?: string | undefined;
  readonly user?: string | undefined;
  readonly job?: string | undefined;
  readonly scope?: string | undefined;
  readonly data?: Record<string, JsonValue> | undefined;
}

/** Wraps an optional hook: undefined fields are dropped, a missing hook records nothing, a throwing hook is reported, not swallowed. */
export function auditor(hook: AuditHook | undefined): (e: LooseAuditEvent) => string | undefined {
  return (e) => {
    if (hook === undefined) return undefined;
    const clean = Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as unknown as AuditEventInput;
    return hook(clean);
  };
}
