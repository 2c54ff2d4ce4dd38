import { createWriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { definePlugin } from '../sdk.js';

const MEDIA_TYPES: Record<string, string> = {
  csv: 'text/csv',
  json: 'application/json',
  jsonl: 'application/x-ndjson',
  parquet: 'application/vnd.apache.parquet',
  txt: 'text/plain',
  yaml: 'application/yaml',
};

/**
 * util.fetch — copies a local file (path or file:// URI) or an http(s) URL into the artifact store
 * and outputs the reference as `file`. The usual first step for data that lives outside the store.
 */
export const fetchFile = definePlugin({
  name: 'util.fetch',
  version: '1',
  description: 'Copies a local file or an http(s) URL into the artifact store; outputs `file`.',
  pathParams: ['source'],
  params: z
    .object({
      source: z.string().min(1),
      mediaType: z.string().optional(),
      name: z.string().optional(),
    })
    .strict(),
  outputs: { file: 'artifact' },
  cacheable: false,
  async run(ctx, p) {
    const base = p.name ?? p.source.split(/[/?#]/).filter(Boolean).pop() ?? 'file';
    const ext = base.includes('.') ? base.split('.').pop()!.toLowerCase() : '';
    const options = { name: base, mediaType: p.mediaType ?? MEDIA_TYPES[ext] ?? 'application/octet-stream' };
    if (/^https?:\/\//.test(p.source)) {
      const res = await fetch(p.source, { signal: ctx.signal });
      if (!res.ok || !res.body) {
        throw new PipelineError('STEP_FAILED', `GET ${p.source} answered ${res.status} ${res.statusText}.`, {
          retryable: res.status >= 500 || res.status === 429,
        });
      }
      const tmp = join(ctx.workDir, 'download');
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(tmp));
      return { file: await ctx.store.putFile(tmp, options) };
    }
    const path = p.source.startsWith('file://') ? fileURLToPath(p.source) : resolve(ctx.projectDir, p.source);
    try {
      return { file: await ctx.store.putFile(path, options) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new PipelineError('PLUGIN_PARAMS', `util.fetch: no file at ${path}.`, {
          hint: 'Paths are relative to the project folder of the worker.',
        });
      }
      throw e;
    }
  },
});
