/**
 * computeDrift on more than one core: the columns are shared out between this thread and worker
 * threads (lib/drift-worker), each column's arrays moved (transferred, not copied) to the thread
 * that tests it. The result is the same as computeDrift's, column for column, in the same order.
 * For large datasets only: starting a worker costs tens of milliseconds.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import {
  checkOptions,
  columnDrift,
  summarise,
  type ColumnDrift,
  type ColumnValues,
  type Dataset,
  type DriftOptions,
  type DriftResult,
} from '../engine/drift/index.js';
import { PipelineError, type PipelineErrorCode } from '../engine/errors.js';

/** Below this many values (rows x columns, both sides) one thread is faster. */
const PARALLEL_FROM = 4_000_000;

export interface ColumnTask {
  name: string;
  ref: ColumnValues;
  cur: ColumnValues;
}

function buffers(c: ColumnValues): ArrayBuffer[] {
  const arrays =
    'values' in c
      ? [c.values, ...(c.exact ? [c.exact] : [])]
      : 'distinct' in c
        ? [c.distinct, c.counts]
        : 'codes' in c
          ? [c.codes]
          : [c.counts];
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

/** About the work of a column: sorting its values, or walking its frequency table. */
function cost(c: ColumnValues): number {
  return 'values' in c ? 8 * c.values.length : 'distinct' in c ? c.distinct.length : 'codes' in c ? c.codes.length : c.counts.length;
}

function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./drift-worker.js', import.meta.url));
  // From the TypeScript sources (a checkout): the worker registers tsx before loading its module.
  const tsx = import.meta.resolve('tsx/esm/api');
  const worker = new URL('./drift-worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(worker)}); })`, {
    eval: true,
  });
}

/** A column's drift, or why it has none (an error, as a worker sends it back). */
export type ColumnOutcome = { column: ColumnDrift } | { error: { message: string; code?: PipelineErrorCode; hint?: string } };

export function outcomeOf(task: ColumnTask, options: DriftOptions): ColumnOutcome {
  try {
    return { column: columnDrift(task.name, task.ref, task.cur, options) };
  } catch (e) {
    const err = e as Error;
    return {
      error: { message: err.message, ...(e instanceof PipelineError ? { code: e.code, ...(e.hint ? { hint: e.hint } : {}) } : {}) },
    };
  }
}

function inWorker(worker: Worker, tasks: ColumnTask[], options: DriftOptions): Promise<ColumnOutcome[]> {
  return new Promise((resolve, reject) => {
    worker.once('message', (m: ColumnOutcome[]) => resolve(m));
    worker.once('error', reject);
    const transfer = [...new Set(tasks.flatMap((t) => [...buffers(t.ref), ...buffers(t.cur)]))];
    worker.postMessage({ tasks, options }, transfer);
  });
}

/**
 * computeDrift, the columns tested on up to `threads` threads (default: the cores, at most 4). The
 * datasets' arrays of the columns given to workers are transferred: do not use them afterwards.
 */
export async function computeDriftParallel(
  reference: Dataset,
  current: Dataset,
  options: DriftOptions = {},
  threads = Math.min(availableParallelism(), 4),
): Promise<DriftResult> {
  const names = checkOptions(reference, current, options);
  const size = names.reduce((a, n) => a + cost(reference.columns[n]!) + cost(current.columns[n]!), 0) / 8;
  const lanes = size < PARALLEL_FROM ? 1 : Math.max(1, Math.min(threads, names.length));
  // Biggest first onto the least loaded lane; lane 0 is this thread.
  const load = new Array<number>(lanes).fill(0);
  const plan: number[][] = Array.from({ length: lanes }, () => []);
  const order = names.map((n, i) => ({ i, w: cost(reference.columns[n]!) + cost(current.columns[n]!) })).sort((a, b) => b.w - a.w);
  for (const { i, w } of order) {
    const lane = load.indexOf(Math.min(...load));
    plan[lane]!.push(i);
    load[lane]! += w;
  }
  const results = new Array<ColumnOutcome>(names.length);
  const workers = plan.slice(1).map(() => startWorker());
  try {
    const remote = plan.slice(1).map((idx, k) =>
      inWorker(
        workers[k]!,
        idx.map((i) => ({ name: names[i]!, ref: reference.columns[names[i]!]!, cur: current.columns[names[i]!]! })),
        options,
      ).then((cols) => cols.forEach((c, j) => (results[idx[j]!] = c))),
    );
    for (const i of plan[0]!)
      results[i] = outcomeOf({ name: names[i]!, ref: reference.columns[names[i]!]!, cur: current.columns[names[i]!]! }, options);
    await Promise.all(remote);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  // The first column's error in column order, as computeDrift would throw it.
  const failed = results.find((r) => 'error' in r);
  if (failed && 'error' in failed) {
    const { message, code, hint } = failed.error;
    throw code ? new PipelineError(code, message, hint ? { hint } : {}) : new Error(message);
  }
  return summarise(
    results.map((r) => (r as { column: ColumnDrift }).column),
    options,
  );
}
