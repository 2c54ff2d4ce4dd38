/** What every command prints with, and the error of a command line mlpipe cannot take. */
import { PipelineError } from '../engine/errors.js';

/** A command line mlpipe cannot take: INPUT_INVALID, pointing at the usage. */
export const USAGE_HINT = "Run 'mlpipe help' for usage.";
export const usageError = (message: string): PipelineError => new PipelineError('INPUT_INVALID', message, { hint: USAGE_HINT });

export const out = (s: string): boolean => process.stdout.write(`${s}\n`);
export const err = (s: string): boolean => process.stderr.write(`${s}\n`);
