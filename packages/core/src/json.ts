/** A JSON value as it travels in headers and model metadata. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
