// @flare/core/testing: helpers for tests of any package (not for production code).

import type { FlareMatchers } from './flare-code.js';
import type {} from 'vitest';

export { expectFlareCode, expectFlareCodeAsync, flareMatchers } from './flare-code.js';
export type { FlareMatcherResult, FlareMatchers } from './flare-code.js';

declare module 'vitest' {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-explicit-any -- vitest's documented augmentation shape
  interface Matchers<T = any> extends FlareMatchers<T> {}
}
