import { Worker } from 'node:worker_threads';
import { MlError, flareErrorFromCode, isFlareErrorCode } from '@flare/core';
import type { SiteData, SiteDataOptions } from './dataset.js';

// The worker imports the built dataset module and sends the site's arrays back (transferred, not copied).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.module)
  .then((m) => {
    const d = m.loadSiteData(workerData.options);
    parentPort.postMessage({ data: d }, [d.train.x.buffer, d.train.y.buffer, d.test.x.buffer, d.test.y.buffer]);
  })
  .catch((e) => parentPort.postMessage({ error: { code: e && e.code, message: String((e && e.message) || e) } }));
`;

/**
 * {@link loadSiteData} in a worker thread: reading the SpamAssassin corpus and featurizing a site's e-mails takes
 * seconds (2 s to load the corpus and 1-2 s to featurize at load 12 on this machine, 20-30 s on a busy one), and
 * done on the site's event loop at deploy it stopped the site's heartbeats and messages for that long. Resolves
 * with the same data; rejects with the loader's own code (E_ML_DATASET_MISSING when no corpus is installed).
 */
export function loadSiteDataOffThread(options: SiteDataOptions, module: URL = new URL('./dataset.js', import.meta.url)): Promise<SiteData> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: module.href, options } });
    let settled = false;
    worker.once('message', (m: { data?: SiteData; error?: { code?: unknown; message: string } }) => {
      settled = true;
      if (m.data !== undefined) resolve(m.data);
      else {
        const { code, message } = m.error ?? { message: 'no data' };
        reject(isFlareErrorCode(code) ? flareErrorFromCode(code, message) : new MlError('E_ML_DATASET_MISSING', `the site's data could not be loaded: ${message}`));
      }
      void worker.terminate();
    });
    worker.once('error', (e) => {
      if (!settled) reject(new MlError('E_ML_DATASET_MISSING', `the site's data could not be loaded: ${e.message}`, { cause: e }));
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new MlError('E_ML_DATASET_MISSING', `the worker loading the site's data exited (${code})`));
    });
  });
}
