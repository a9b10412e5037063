import type { Catalog } from '../info.js';

/** Error codes of durable file reads and writes (@flare/core's writeFileAtomic, readFileIfExists). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const FILE_CODES = {
  E_FILE_WRITE: {
    meaning: 'A file could not be written durably (its folder is missing or not writable, the disk is full, or the rename failed); the previous content, if any, is unchanged.',
    action: 'Check that the folder named in the message exists and is writable by this process and that the disk has space, then retry.',
  },
  E_FILE_READ: {
    meaning: 'A file exists but could not be read (permissions, or it is a folder).',
    action: 'Check the path named in the message and its permissions.',
  },
  E_FILE_TOO_LARGE: {
    meaning: 'A file is larger than the limit its reader allows, so it was not read.',
    action: 'Check that the path names the intended file; a file of that kind is never this large unless it was replaced or corrupted.',
  },
} as const satisfies Catalog;
