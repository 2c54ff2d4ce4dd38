import { z } from 'zod';
import { definePlugin } from '../sdk.js';
import { abortable, journal } from './journal.js';

/**
 * util.echo — returns `values` as its outputs (each key becomes an output). Optionally waits
 * `sleepMs` first and writes start/finish lines to a `journal` file. For wiring pipelines, tests and
 * benchmarks: it does no work of its own.
 */
export const echo = definePlugin({
  name: 'util.echo',
  version: '1',
  description: 'Returns `values` as outputs; optional sleepMs and journal file. No side effects.',
  pathParams: ['journal'],
  params: z
    .object({
      values: z.record(z.string(), z.unknown()).default({}),
      sleepMs: z.number().int().min(0).optional(),
      journal: z.string().optional(),
    })
    .strict(),
  outputs: (p) => Object.fromEntries(Object.keys(p.values).map((k) => [k, 'json' as const])),
  async run(ctx, p) {
    journal(ctx, p.journal, 'start');
    if (p.sleepMs) await abortable(p.sleepMs, ctx.signal);
    journal(ctx, p.journal, 'finish');
    return p.values;
  },
});
