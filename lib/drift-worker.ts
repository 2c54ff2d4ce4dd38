/** A worker thread of computeDriftParallel (lib/drift-parallel): tests the columns it is sent. */
import { parentPort } from 'node:worker_threads';
import type { DriftOptions } from '../engine/drift/index.js';
import { outcomeOf, type ColumnTask } from './drift-parallel.js';

parentPort?.on('message', ({ tasks, options }: { tasks: ColumnTask[]; options: DriftOptions }) => {
  parentPort!.postMessage(tasks.map((t) => outcomeOf(t, options)));
});
