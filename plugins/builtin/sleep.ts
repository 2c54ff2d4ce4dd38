import { z } from 'zod';
import { definePlugin } from '../sdk.js';
import { abortable, journal } from './journal.js';

/**
 * util.sleep — a long-running step made of `ticks` ticks of `tickMs` each. After every tick it saves
 * a checkpoint and heartbeats a pointer to it; on a retry it resumes after the last checkpointed
 * tick. The model of a training loop, used to show crash-resume without ML.
 */
export const sleep = definePlugin({
  name: 'util.sleep',
  version: '1',
  description: 'Sleeps for ticks x tickMs, checkpointing after every tick and resuming from the last checkpoint on retry.',
  pathParams: ['journal'],
  params: z
    .object({
      ticks: z.number().int().min(1),
      tickMs: z.number().int().min(0).default(100),
      journal: z.string().optional(),
    })
    .strict(),
  outputs: { ticks: 'json', resumedFrom: 'json' },
  async run(ctx, p) {
    const last = await ctx.checkpoint.latest<{ tick: number }>();
    const from = last ? last.meta.tick : 0;
    journal(ctx, p.journal, 'start', { resumedFrom: from });
    for (let tick = from + 1; tick <= p.ticks; tick++) {
      await abortable(p.tickMs, ctx.signal);
      await ctx.checkpoint.save(JSON.stringify({ tick }), { tick });
      journal(ctx, p.journal, 'tick', { tick });
    }
    journal(ctx, p.journal, 'finish');
    return { ticks: p.ticks, resumedFrom: from };
  },
});
