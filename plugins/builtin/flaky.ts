import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { definePlugin } from '../sdk.js';
import { journal } from './journal.js';

/**
 * util.flaky — fails on every attempt before `succeedOnAttempt` (omit it to always fail), with a
 * retryable error unless `retryable: false`. For demonstrating and testing retry policies.
 */
export const flaky = definePlugin({
  name: 'util.flaky',
  version: '1',
  description: 'Fails until attempt `succeedOnAttempt` (always, when omitted); for retry demos and tests.',
  pathParams: ['journal'],
  params: z
    .object({
      succeedOnAttempt: z.number().int().min(1).optional(),
      message: z.string().default('simulated failure'),
      retryable: z.boolean().default(true),
      journal: z.string().optional(),
    })
    .strict(),
  outputs: { attempts: 'json' },
  cacheable: false,
  async run(ctx, p) {
    journal(ctx, p.journal, 'start');
    if (p.succeedOnAttempt === undefined || ctx.attempt < p.succeedOnAttempt) {
      journal(ctx, p.journal, 'fail');
      throw new PipelineError('STEP_FAILED', `${p.message} (attempt ${ctx.attempt})`, { retryable: p.retryable });
    }
    journal(ctx, p.journal, 'finish');
    return { attempts: ctx.attempt };
  },
});
