import { preset } from '../../vitest.preset.mjs';

export default preset(import.meta.url);
