/**
 * Artifact previews for the web UI. A request names an artifact by its digest only; the digest is
 * checked (64 lowercase hex characters) before anything is read, and the artifact must be one a
 * recorded step produced or used (the lineage index), so its reference (media type, name, size)
 * comes from the store, never from the request. DuckDB reads the store's own file for it, in a
 * session restricted to that one file, with the path bound as a parameter.
 */
import { open } from 'node:fs/promises';
import { withDuckDB } from '../adapters/duckdb.js';
import { validateDigest } from '../adapters/local-store.js';
import { readContract, type OnnxContract } from '../adapters/onnx/contract.js';
import { decodeModel } from '../adapters/onnx/proto.js';
import { PipelineError } from '../engine/errors.js';
import { artifactRefs, type LineageLink, type StepManifest, stepKey } from '../engine/lineage.js';
import type { ArtifactStore } from '../engine/ports.js';
import type { ArtifactRef } from '../engine/types.js';
import { UiRequestError } from './runs.js';

export interface ArtifactInfo {
  ref: ArtifactRef;
  /** Steps that wrote these bytes, and steps that read them. */
  producedBy: (LineageLink & { output?: string })[];
  usedBy: LineageLink[];
}

export type Preview =
  | { kind: 'parquet'; rows: number; schema: { name: string; type: string }[]; head: Record<string, unknown>[] }
  | { kind: 'history'; points: { epoch: number; loss?: number; valLoss?: number }[] }
  | { kind: 'metrics'; table: { metric: string; values: Record<string, number | string> }[]; json: unknown }
  | { kind: 'json'; json: unknown; truncated?: boolean }
  | { kind: 'model'; contract?: OnnxContract; error?: string }
  | { kind: 'html' }
  | { kind: 'text'; text: string; truncated?: boolean }
  | { kind: 'binary' };

const PREVIEW_ROWS = 20;
const JSON_PREVIEW_BYTES = 2 * 2 ** 20;

/** The digest of a request, checked; a bad one is a 400 that says what a digest is. */
export function checkDigest(text: string): string {
  try {
    validateDigest(text);
  } catch (e) {
    if (e instanceof PipelineError) throw new UiRequestError(400, e.message);
    throw e;
  }
  return text;
}

export async function findArtifact(store: ArtifactStore, sha256: string): Promise<ArtifactInfo> {
  checkDigest(sha256);
  const [produced, used] = await Promise.all([
    store.listRecords(`lineage/${sha256}/produced-by/`),
    store.listRecords(`lineage/${sha256}/used-by/`),
  ]);
  const links = async (keys: string[]): Promise<LineageLink[]> =>
    (await Promise.all(keys.slice(0, 50).map((k) => store.getRecord<LineageLink>(k)))).filter((l): l is LineageLink => !!l);
  const producedBy = await links(produced);
  const usedBy = await links(used);
  let ref: ArtifactRef | undefined;
  const named: ArtifactInfo['producedBy'] = [];
  for (const l of [...producedBy, ...usedBy]) {
    const m = await store.getRecord<StepManifest>(stepKey(l.workflowId, l.runId, l.stepId));
    if (!m) continue;
    const side = producedBy.includes(l) ? m.outputs : m.inputs;
    for (const [name, value] of Object.entries(side)) {
      const found = artifactRefs(value).find((r) => r.sha256 === sha256);
      if (!found) continue;
      ref ??= found;
      if (producedBy.includes(l)) named.push({ ...l, output: name });
    }
  }
  if (!ref) throw new UiRequestError(404, `No recorded step produced or used an artifact with digest ${sha256}.`);
  return { ref: { ...ref, sha256 }, producedBy: named.length ? named : producedBy, usedBy };
}

async function magic(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4);
    await fh.read(buf, 0, 4, 0);
    return buf.toString('latin1');
  } finally {
    await fh.close();
  }
}

const isParquet = (ref: ArtifactRef, head: string): boolean =>
  head === 'PAR1' || ref.mediaType === 'application/vnd.apache.parquet' || !!ref.name?.endsWith('.parquet');

export async function previewArtifact(store: ArtifactStore, ref: ArtifactRef): Promise<Preview> {
  const file = await store.getFile(ref);
  const head = await magic(file);
  if (isParquet(ref, head)) return previewParquet(file);
  if (ref.mediaType === 'application/onnx' || ref.name?.endsWith('.onnx')) {
    try {
      const { readFile } = await import('node:fs/promises');
      return { kind: 'model', contract: readContract(decodeModel(await readFile(file))) };
    } catch (e) {
      return { kind: 'model', error: (e as Error).message };
    }
  }
  if (ref.mediaType === 'text/html' || ref.name?.endsWith('.html')) return { kind: 'html' };
  const { readFile } = await import('node:fs/promises');
  const bytes = await readFile(file);
  const text = bytes.subarray(0, JSON_PREVIEW_BYTES).toString('utf8');
  const truncated = bytes.length > JSON_PREVIEW_BYTES;
  if (ref.mediaType?.includes('json') || ref.name?.endsWith('.json') || /^\s*[[{]/.test(text)) {
    if (!truncated) {
      try {
        return jsonPreview(JSON.parse(text) as unknown);
      } catch {
        /* not JSON after all */
      }
    }
    return { kind: 'text', text, truncated };
  }
  if (ref.mediaType?.startsWith('text/') || !/[\u0000-\u0008\u000e-\u001f]/.test(text.slice(0, 4096)))
    return { kind: 'text', text: text.slice(0, 64 * 1024), truncated: truncated || text.length > 64 * 1024 };
  return { kind: 'binary' };
}

/** A training history (a list of epochs with losses), a metrics object (a table), or plain JSON. */
export function jsonPreview(value: unknown): Preview {
  if (
    Array.isArray(value) &&
    value.length &&
    value.every((r) => typeof r === 'object' && r !== null && typeof (r as { epoch?: unknown }).epoch === 'number')
  ) {
    const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
    return {
      kind: 'history',
      points: (value as Record<string, unknown>[]).map((r) => ({
        epoch: r['epoch'] as number,
        ...(num(r['loss']) !== undefined ? { loss: num(r['loss']) } : {}),
        ...(num(r['valLoss'] ?? r['val_loss']) !== undefined ? { valLoss: num(r['valLoss'] ?? r['val_loss']) } : {}),
      })),
    };
  }
  const table = metricsTable(value);
  if (table.length) return { kind: 'metrics', table, json: value };
  return { kind: 'json', json: value };
}

/**
 * Metrics as rows: `{ rmse: 1, r2: 0.8 }` gives one column, `{ model: {...}, baseline: {...} }` one
 * column per group (an evaluation's model against its baseline).
 */
function metricsTable(value: unknown): { metric: string; values: Record<string, number | string> }[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  const obj = value as Record<string, unknown>;
  const metrics = (obj['metrics'] && typeof obj['metrics'] === 'object' ? obj['metrics'] : obj) as Record<string, unknown>;
  const flat = Object.entries(metrics).filter(([, v]) => typeof v === 'number');
  if (flat.length >= 2 && flat.length === Object.keys(metrics).length)
    return flat.map(([metric, v]) => ({ metric, values: { value: v as number } }));
  const groups = Object.entries(metrics).filter(
    ([, v]) => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).some((x) => typeof x === 'number'),
  );
  if (!groups.length) return [];
  const names = [
    ...new Set(groups.flatMap(([, g]) => Object.keys(g as object).filter((k) => typeof (g as Record<string, unknown>)[k] === 'number'))),
  ];
  return names.map((metric) => ({
    metric,
    values: Object.fromEntries(groups.map(([group, g]) => [group, (g as Record<string, number>)[metric] ?? ''])),
  }));
}

async function previewParquet(file: string): Promise<Preview> {
  return withDuckDB(
    async (db) => {
      await db.restrict({ paths: [file] });
      const schema = await db.rows<{ column_name: string; column_type: string }>('DESCRIBE SELECT * FROM read_parquet($file)', { file });
      const [count] = await db.rows<{ n: number }>('SELECT count(*) AS n FROM read_parquet($file)', { file });
      const head = await db.rows(`SELECT * FROM read_parquet($file) LIMIT ${PREVIEW_ROWS}`, { file });
      return {
        kind: 'parquet' as const,
        rows: Number(count?.n ?? 0),
        schema: schema.map((c) => ({ name: c.column_name, type: c.column_type })),
        head: head.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, plain(v)]))),
      };
    },
    { threads: 1 },
  );
}

/** A DuckDB value as JSON can carry it. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  if (v === null || typeof v !== 'object') return v;
  return String(v);
}

/** A file name for Content-Disposition: the artifact's name reduced to safe characters. */
export function downloadName(ref: ArtifactRef): string {
  const base = (ref.name ?? `${ref.sha256.slice(0, 12)}.bin`).replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 100);
  return base.replace(/^\.+/, '') || 'artifact';
}
