#!/usr/bin/env node
import { exitWithParent } from './poc/processes.js';
import { main } from './program.js';

// A server or site the poc started does not outlive it.
exitWithParent();
await main();
