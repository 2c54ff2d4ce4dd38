/**
 * The prediction log: what a model server predicted, in the artifact store, in the form the drift
 * monitor reads as current data. Rows are JSON lines — the raw input columns, `prediction`,
 * `model_version`, `predicted_at`, `request_id` — written in chunks (one stored object each) and
 * indexed by records `predictions/<model>/<chunk-end>-<writer>-<seq>` that say the rows' time span.
 * Only the ArtifactStore port: the same code writes from the server and reads in the monitor.
 */
import { keySegment } from './lineage.js';
import type { ArtifactStore } from './ports.js';
import type { ArtifactRef } from './types.js';

export const PREDICTIONS_PREFIX = 'predictions/';

export interface PredictionChunk {
  kind: 'mlpipe.predictions';
  model: string;
  modelVersion: string;
  rows: number;
  /** First and last prediction time in the chunk (ISO). */
  from: string;
  to: string;
  file: ArtifactRef;
}

export interface PredictionRow {
  [column: string]: unknown;
  prediction: number | number[] | null;
  model_version: string;
  predicted_at: string;
  request_id: string;
}

export interface PredictionLogOptions {
  /** Write a chunk when this many rows wait (default 1000) ... */
  flushRows?: number;
  /** ... or when the oldest waiting row is this old (default 10 s). */
  flushMs?: number;
  /** Rows kept while the store is failing; beyond it the oldest are dropped and counted. */
  maxBufferedRows?: number;
  /** Distinguishes writers (server replicas) in record keys; default: random per writer. */
  writerId?: string;
  onError?: (e: unknown) => void;
}

export class PredictionLogWriter {
  private buffer: PredictionRow[] = [];
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly writer: string;
  /** Rows written to the store, rows dropped (store down too long), failed flushes. */
  readonly counts = { written: 0, dropped: 0, failedFlushes: 0, chunks: 0 };

  constructor(
    private readonly store: ArtifactStore,
    private readonly model: string,
    private readonly modelVersion: string,
    private readonly options: PredictionLogOptions = {},
  ) {
    this.writer = keySegment(options.writerId ?? globalThis.crypto.randomUUID().slice(0, 8));
  }

  append(rows: PredictionRow[]): void {
    this.buffer.push(...rows);
    const max = this.options.maxBufferedRows ?? 100_000;
    if (this.buffer.length > max) {
      this.counts.dropped += this.buffer.length - max;
      this.buffer.splice(0, this.buffer.length - max);
    }
    if (this.buffer.length >= (this.options.flushRows ?? 1000)) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.options.flushMs ?? 10_000).unref();
  }

  get pending(): number {
    return this.buffer.length;
  }

  /** Writes what is buffered as one chunk. Rows stay buffered when the store fails. */
  async flush(): Promise<void> {
    if (this.flushing) await this.flushing;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.buffer.length) return;
    const rows = this.buffer;
    this.buffer = [];
    this.flushing = (async () => {
      try {
        const file = await this.store.put(rows.map((r) => JSON.stringify(r)).join('\n') + '\n', {
          name: 'predictions.jsonl',
          mediaType: 'application/x-ndjson',
        });
        const from = rows[0]!.predicted_at;
        const to = rows[rows.length - 1]!.predicted_at;
        const chunk: PredictionChunk = {
          kind: 'mlpipe.predictions',
          model: this.model,
          modelVersion: this.modelVersion,
          rows: rows.length,
          from,
          to,
          file,
        };
        await this.store.putRecord(`${PREDICTIONS_PREFIX}${keySegment(this.model)}/${keyTime(to)}-${this.writer}-${++this.seq}`, chunk);
        this.counts.written += rows.length;
        this.counts.chunks++;
      } catch (e) {
        this.counts.failedFlushes++;
        this.buffer = [...rows, ...this.buffer];
        this.options.onError?.(e);
        this.timer ??= setTimeout(() => void this.flush(), this.options.flushMs ?? 10_000).unref();
      }
    })();
    await this.flushing;
    this.flushing = undefined;
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.timer) clearTimeout(this.timer);
  }
}

/** How a reader of the log goes: reads at once, and a callback after each record or chunk read. */
export interface ReadOptions {
  /** Records or chunk files read at the same time (default 8). */
  concurrency?: number;
  /** Called after each read, with what is done of what there is (a heartbeat, say). */
  onProgress?: (progress: { phase: 'index' | 'rows'; done: number; total: number }) => void;
}

/** `fn` over `items`, at most `limit` at once; results in the items' order. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, lane));
  return out;
}

/** A chunk's end time as its key starts with it: fixed width, so keys sort by time. */
const keyTime = (iso: string): string => iso.replace(/[:.]/g, '-');

/** The chunks of a model's log whose rows fall in [since, until], oldest first. */
export async function predictionChunks(
  store: ArtifactStore,
  model: string,
  since?: Date,
  until?: Date,
  read: ReadOptions = {},
): Promise<PredictionChunk[]> {
  const prefix = `${PREDICTIONS_PREFIX}${keySegment(model)}/`;
  const floor = since ? keyTime(since.toISOString()) : '';
  // Chunks that ended before `since` are skipped by their key, without reading them: a monitor
  // reading the last day of a long log reads only that day's records.
  const keys = (await store.listRecords(prefix)).filter((k) => k.slice(prefix.length, prefix.length + floor.length) >= floor);
  let done = 0;
  const records = await mapLimited(keys, read.concurrency ?? 8, async (key) => {
    const c = await store.getRecord<PredictionChunk>(key);
    read.onProgress?.({ phase: 'index', done: ++done, total: keys.length });
    return c;
  });
  const chunks = records.filter((c): c is PredictionChunk => {
    if (!c || c.kind !== 'mlpipe.predictions') return false;
    if (since && Date.parse(c.to) < since.getTime()) return false;
    return !(until && Date.parse(c.from) > until.getTime());
  });
  return chunks.sort((a, b) => a.from.localeCompare(b.from));
}

/**
 * One JSON-lines document of the rows of a model's log in [since, until] (rows of a chunk outside
 * the window are left out), for the drift monitor's current data. Chunks are read `concurrency` at a
 * time and kept in time order.
 */
export async function collectPredictions(
  store: ArtifactStore,
  model: string,
  since?: Date,
  until?: Date,
  read: ReadOptions = {},
): Promise<{ text: string; rows: number; chunks: number; versions: string[] }> {
  const chunks = await predictionChunks(store, model, since, until, read);
  let done = 0;
  const perChunk = await mapLimited(chunks, read.concurrency ?? 8, async (c) => {
    const kept: string[] = [];
    for (const line of (await store.get(c.file)).toString('utf8').split('\n')) {
      if (!line) continue;
      const at = Date.parse((JSON.parse(line) as PredictionRow).predicted_at);
      if ((since && at < since.getTime()) || (until && at > until.getTime())) continue;
      kept.push(line);
    }
    read.onProgress?.({ phase: 'rows', done: ++done, total: chunks.length });
    return kept;
  });
  const lines = perChunk.flat();
  return {
    text: lines.join('\n') + (lines.length ? '\n' : ''),
    rows: lines.length,
    chunks: chunks.length,
    versions: [...new Set(chunks.map((c) => c.modelVersion))],
  };
}
