/**
 * Getting artifacts out of the store: `mlpipe artifacts get <artifact> -o FILE` writes its bytes,
 * `mlpipe show <artifact>` previews it in the terminal (a Parquet dataset's schema, row count and
 * first rows through DuckDB; JSON pretty-printed; an evaluation's metrics table; an ONNX model's
 * contract). An artifact is named by its digest (`sha256:3f9a1c…`, at least 6 hex digits) or as a
 * run's step output (`<workflow-id>/<step>.<output>`, the newest run under that ID).
 *
 * The argument is untrusted text: a digest must be hex, a step and output must be names; the store
 * reads objects by digest only (never by a path or URI from a record), and SQL never holds it.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Settings } from '../app/project.js';
import { withDuckDB, sqlString } from '../adapters/duckdb.js';
import { readContract } from '../adapters/onnx/contract.js';
import { decodeModel } from '../adapters/onnx/proto.js';
import { STEP_ID } from '../engine/contracts.js';
import { PipelineError } from '../engine/errors.js';
import { artifactRefs, lineageOf, resolveDigest, runsOf } from '../engine/lineage.js';
import type { ArtifactStore } from '../engine/ports.js';
import { isArtifactRef, type ArtifactRef } from '../engine/types.js';
import { metricsTable } from './render.js';
import { openStore } from './store-commands.js';

const out = (s: string): boolean => process.stdout.write(`${s}\n`);

export type ArtifactArg = { kind: 'digest'; prefix: string } | { kind: 'output'; workflowId: string; stepId: string; output: string };

const OUTPUT_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const HINT =
  "Name an artifact by its sha256 digest (at least 6 hex digits, e.g. from 'mlpipe runs show'), or as <workflow-id>/<step>.<output> (e.g. california-housing-2c896c09/train.model).";

/** What an artifact argument names; INPUT_INVALID when it is neither a digest nor a step output. */
export function parseArtifactArg(text: string): ArtifactArg {
  const digest = /^(?:sha256:)?([a-fA-F0-9]{6,64})$/.exec(text);
  if (digest) return { kind: 'digest', prefix: digest[1]!.toLowerCase() };
  const slash = text.lastIndexOf('/');
  const workflowId = slash > 0 ? text.slice(0, slash) : '';
  const [stepId, output, ...rest] = text.slice(slash + 1).split('.');
  // Control characters never belong in a workflow ID; the store maps the rest to safe key segments.
  const printable = !/[\u0000-\u001f\u007f]/.test(workflowId);
  if (
    workflowId &&
    workflowId.length <= 1000 &&
    printable &&
    stepId &&
    STEP_ID.test(stepId) &&
    output &&
    OUTPUT_NAME.test(output) &&
    !rest.length
  )
    return { kind: 'output', workflowId, stepId, output };
  throw new PipelineError('INPUT_INVALID', `'${text.slice(0, 200)}' names no artifact.`, { hint: HINT });
}

/** What an argument resolves to: an artifact reference, or (for a step output that is JSON) its value. */
export type Resolved = { ref: ArtifactRef; from: string } | { value: unknown; from: string };

/** The artifact (or JSON output) an argument names, from the store's lineage records and run manifests. */
export async function resolveArtifact(store: ArtifactStore, arg: ArtifactArg): Promise<Resolved> {
  if (arg.kind === 'digest') {
    const matches = await resolveDigest(store, arg.prefix);
    if (matches.length === 0)
      throw new PipelineError('STORAGE_NOT_FOUND', `No artifact sha256:${arg.prefix}… is recorded in ${store.location}.`, { hint: HINT });
    if (matches.length > 1)
      throw new PipelineError('INPUT_INVALID', `sha256:${arg.prefix}… matches ${matches.length} artifacts.`, { hint: 'Give more digits.' });
    const sha256 = matches[0]!;
    const node = await lineageOf(store, sha256, 1);
    // The reference as its producer returned it (name, media type); the digest is what is read.
    const produced = node.producedBy.flatMap((p) => artifactRefs(p.outputs)).find((r) => r.sha256 === sha256);
    const ref: ArtifactRef = produced ?? {
      kind: 'artifact',
      uri: `sha256:${sha256}`,
      sha256,
      size: node.size ?? 0,
      mediaType: 'application/octet-stream',
      ...(node.name ? { name: node.name } : {}),
    };
    const by = node.producedBy[0];
    return { ref, from: by ? `${by.workflowId}/${by.stepId}` : `sha256:${sha256}` };
  }
  const views = await runsOf(store, arg.workflowId);
  const view = views[0];
  if (!view)
    throw new PipelineError('STORAGE_NOT_FOUND', `No run of '${arg.workflowId}' is recorded in ${store.location}.`, {
      hint: "List recorded runs with 'mlpipe runs list'; check MLPIPE_ARTIFACTS points at the store the worker used.",
    });
  const step = view.steps.find((s) => s.stepId === arg.stepId);
  if (!step)
    throw new PipelineError('INPUT_INVALID', `Run '${arg.workflowId}' has no step '${arg.stepId}'.`, {
      hint: `Its steps: ${view.steps.map((s) => s.stepId).join(', ')}.`,
    });
  if (!Object.hasOwn(step.outputs, arg.output))
    throw new PipelineError('INPUT_INVALID', `Step '${arg.stepId}' of '${arg.workflowId}' has no output '${arg.output}'.`, {
      hint: `Its outputs: ${Object.keys(step.outputs).join(', ') || '(none)'}.`,
    });
  const v = step.outputs[arg.output];
  const from = `${arg.workflowId}/${arg.stepId}.${arg.output}`;
  return isArtifactRef(v) ? { ref: v, from } : { value: v, from };
}

export async function cmdArtifacts(argv: string[], settings: Settings, store = openStore(settings)): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'get')
    throw new PipelineError('INPUT_INVALID', `Unknown 'artifacts' subcommand '${sub ?? ''}'.`, {
      hint: "Use 'mlpipe artifacts get <artifact> -o FILE' (or 'mlpipe show <artifact>' for a preview).",
    });
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { output: { type: 'string', short: 'o' } },
  });
  const [text] = positionals;
  if (!text) throw new PipelineError('INPUT_INVALID', 'mlpipe artifacts get needs an artifact.', { hint: HINT });
  const target = values.output;
  if (!target) throw new PipelineError('INPUT_INVALID', 'mlpipe artifacts get needs -o FILE (or -o - for standard output).');
  const resolved = await resolveArtifact(store, parseArtifactArg(text));
  // get() checks the bytes against the digest: altered bytes are never written out.
  const bytes = 'ref' in resolved ? await store.get(resolved.ref) : Buffer.from(`${JSON.stringify(resolved.value, null, 2)}\n`);
  if (target === '-') {
    process.stdout.write(bytes);
    return 0;
  }
  await writeFile(target, bytes);
  const what = 'ref' in resolved ? `${resolved.ref.name ?? 'artifact'} sha256:${resolved.ref.sha256.slice(0, 12)}` : 'JSON value';
  process.stderr.write(`wrote ${what} (${bytes.length} bytes) from ${resolved.from} to ${target}\n`);
  return 0;
}

export async function cmdShow(argv: string[], settings: Settings, store = openStore(settings)): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { rows: { type: 'string' } } });
  const [text] = positionals;
  if (!text) throw new PipelineError('INPUT_INVALID', 'mlpipe show needs an artifact.', { hint: HINT });
  const rows = values.rows === undefined ? 10 : Number(values.rows);
  if (!Number.isInteger(rows) || rows < 0 || rows > 1000)
    throw new PipelineError('INPUT_INVALID', `--rows '${values.rows}' is not a whole number from 0 to 1000.`);
  const resolved = await resolveArtifact(store, parseArtifactArg(text));
  if (!('ref' in resolved)) {
    out(`${resolved.from} (JSON value)`);
    for (const line of previewJson(resolved.value)) out(line);
    return 0;
  }
  const { ref } = resolved;
  out(`${ref.name ?? 'artifact'}  sha256:${ref.sha256}  ${ref.size} bytes  ${ref.mediaType}  (from ${resolved.from})`);
  for (const line of await preview(store, ref, rows)) out(line);
  return 0;
}

type Format = 'parquet' | 'onnx' | 'json' | 'text' | 'binary';

export function formatOf(ref: Pick<ArtifactRef, 'name' | 'mediaType'>): Format {
  const name = (ref.name ?? '').toLowerCase();
  if (ref.mediaType === 'application/vnd.apache.parquet' || name.endsWith('.parquet')) return 'parquet';
  if (ref.mediaType === 'application/onnx' || name.endsWith('.onnx')) return 'onnx';
  if (ref.mediaType === 'application/json' || ref.mediaType.endsWith('+json') || name.endsWith('.json')) return 'json';
  if (ref.mediaType.startsWith('text/') || /\.(csv|txt|md|jsonl|ndjson|html|yaml|yml)$/.test(name)) return 'text';
  return 'binary';
}

/** The lines `mlpipe show` prints for an artifact. */
export async function preview(store: ArtifactStore, ref: ArtifactRef, rows = 10): Promise<string[]> {
  const format = formatOf(ref);
  if (format === 'parquet') return previewParquet(await store.getFile(ref), rows);
  const bytes = await store.get(ref);
  if (format === 'onnx') return previewOnnx(bytes);
  if (format === 'json') {
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8'));
    } catch {
      return ['(not valid JSON)', ...previewText(bytes)];
    }
    return previewJson(value);
  }
  if (format === 'text') return previewText(bytes);
  return [`(binary; 'mlpipe artifacts get sha256:${ref.sha256.slice(0, 12)} -o FILE' writes it out)`];
}

/** An evaluation (`metrics` and `baseline` objects) as its table, anything else pretty-printed (at most 200 lines). */
export function previewJson(value: unknown): string[] {
  const o = value as { metrics?: unknown; baseline?: unknown; passed?: unknown; misses?: unknown } | null;
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(o) && isObject(o.metrics) && isObject(o.baseline)) {
    const lines = ['evaluation: model metrics against the baseline', ...metricsTable(o.metrics, o.baseline)];
    if (typeof o.passed === 'boolean') lines.push(`quality gate: ${o.passed ? 'passed' : 'failed'}`);
    if (Array.isArray(o.misses)) for (const m of o.misses) lines.push(`  ${String(m)}`);
    return lines;
  }
  const lines = JSON.stringify(value, null, 2).split('\n');
  return lines.length > 200 ? [...lines.slice(0, 200), `… ${lines.length - 200} more lines`] : lines;
}

function previewText(bytes: Buffer): string[] {
  const lines = bytes.toString('utf8').split('\n');
  return lines.length > 40 ? [...lines.slice(0, 40), `… ${lines.length - 40} more lines`] : lines;
}

/** A model's contract: what it takes and what it answers. */
function previewOnnx(bytes: Buffer): string[] {
  const model = decodeModel(bytes);
  const c = readContract(model);
  const lines = [
    `ONNX model: ${c.task} of '${c.target}', output tensor '${c.output}'${c.classes ? `, classes ${c.classes.join(', ')}` : ''}`,
  ];
  lines.push(`  ${'input'.padEnd(24)} ${'type'.padEnd(8)} nullable`);
  for (const i of c.inputs) lines.push(`  ${i.name.padEnd(24)} ${i.type.padEnd(8)} ${i.nullable ? 'yes (imputed)' : 'no'}`);
  return lines;
}

/** A Parquet file's schema, row count and first rows, read by DuckDB limited to that one file. */
async function previewParquet(file: string, rows: number): Promise<string[]> {
  return withDuckDB(async (db) => {
    await db.restrict({ paths: [file] });
    // The path is the store's own object file (its digest validated), quoted as a SQL string.
    const source = `read_parquet(${sqlString(file)})`;
    const schema = await db.rows<{ column_name: string; column_type: string }>(`DESCRIBE SELECT * FROM ${source}`);
    const [{ n }] = (await db.rows<{ n: number }>(`SELECT count(*)::BIGINT AS n FROM ${source}`)) as [{ n: number }];
    const first = rows ? await db.rows(`SELECT * FROM ${source} LIMIT $rows`, { rows }) : [];
    const lines = [`Parquet: ${n.toLocaleString('en-US')} rows, ${schema.length} columns`];
    for (const c of schema) lines.push(`  ${c.column_name.padEnd(28)} ${c.column_type}`);
    if (first.length)
      lines.push(
        '',
        ...table(
          schema.map((c) => c.column_name),
          first,
        ),
      );
    return lines;
  });
}

/** Rows as an aligned text table (cells cut at 24 characters, at most 12 columns). */
function table(columns: string[], rows: Record<string, unknown>[]): string[] {
  const shown = columns.slice(0, 12);
  const cell = (v: unknown): string => {
    const s = v === null || v === undefined ? 'null' : typeof v === 'number' ? String(Number(v.toPrecision(6))) : String(v);
    return s.length > 24 ? `${s.slice(0, 23)}…` : s;
  };
  const cells = rows.map((r) => shown.map((c) => cell(r[c])));
  const widths = shown.map((c, i) => Math.max(c.length > 24 ? 24 : c.length, ...cells.map((r) => r[i]!.length)));
  const line = (vals: string[]): string => `  ${vals.map((v, i) => v.padEnd(widths[i]!)).join('  ')}`.trimEnd();
  return [
    line(shown.map((c) => (c.length > 24 ? `${c.slice(0, 23)}…` : c))),
    ...cells.map(line),
    ...(columns.length > shown.length ? [`  (${columns.length - shown.length} more columns)`] : []),
  ];
}
