import { join } from 'node:path';
import winston from 'winston';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, AuditTransport, readEvents } from '../src/index.js';
import { scratch, siteKey } from './helpers.js';

const tmp = scratch();
afterAll(() => tmp.cleanup());

/** Resolves when `transport` has handled `count` entries (or rejects after 60 s). */
const handled = (transport: AuditTransport, count: number) =>
  new Promise<void>((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => reject(new Error('entries not logged within 60 s')), 60_000);
    const done = () => (++seen === count ? (clearTimeout(timer), resolve()) : undefined);
    transport.on('logged', done);
    transport.on('error', done);
  });

describe('AuditTransport', () => {
  it('routes winston entries into the audit log, mapping audit fields and keeping the rest as data', async () => {
    const path = join(tmp.dir, 'site-1.jsonl');
    const log = await AuditLog.open(path, { site: 'site-1', signer: siteKey(tmp.dir, 'site-1').pem });
    const transport = new AuditTransport({ log, level: 'info' });
    const logger = winston.createLogger({ level: 'debug', transports: [transport] });
    const done = handled(transport, 2);
    logger.info('job submitted', { action: 'submit_job', user: 'alice@a.org', job: 'j1', scope: 'public', ref: 'srv-7', attempt: 2, err: new Error('retry'), fn: () => 1 });
    logger.debug('too chatty for the audit log');
    logger.warn('budget low', { data: { epsilon: 0.9 } });
    await done;
    await log.close();
    const events = [];
    for await (const e of readEvents(path)) events.push(e.record);
    expect(events.map((e) => e.action)).toEqual(['audit_open', 'submit_job', 'log']);
    expect(events[1]).toMatchObject({ msg: 'job submitted', user: 'alice@a.org', job: 'j1', scope: 'public', ref: 'srv-7', data: { level: 'info', attempt: 2, err: { name: 'Error', message: 'retry' } } });
    expect(events[1]!.data).not.toHaveProperty('fn');
    expect(events[2]).toMatchObject({ msg: 'budget low', data: { level: 'warn', epsilon: 0.9 } });
  });

  it('emits an error when the audit log refuses the entry', async () => {
    const log = await AuditLog.open(join(tmp.dir, 'closed.jsonl'), { site: 'site-1', signer: siteKey(tmp.dir, 'site-x').pem });
    await log.close();
    const transport = new AuditTransport({ log });
    const error = new Promise<unknown>((resolve) => transport.once('error', resolve));
    transport.log({ level: 'info', message: 'late' }, () => undefined);
    expect(await error).toMatchObject({ code: 'E_AUDIT_CLOSED' });
  });
});
