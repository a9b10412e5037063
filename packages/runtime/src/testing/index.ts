// @flare/runtime/testing: in-memory channels and links for tests and single-process compositions.
export { channelPair, memoryHub, memoryLink } from './channels.js';
export type { MemoryHub, MemoryLinkOptions } from './channels.js';
