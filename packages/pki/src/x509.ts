// @peculiar/x509 needs the Reflect metadata polyfill loaded before it evaluates (it uses tsyringe decorators).
// Every module of this package imports x509 through this file, so the polyfill is loaded exactly once, first,
// whichever module a program (or a test) imports. This is the package's one documented import side effect.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

export { x509 };
