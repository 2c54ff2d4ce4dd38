import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { definePlugin } from '../sdk.js';

const TAIL = 4096;

/**
 * util.shell — runs a command (a string through /bin/sh, or an argv list without a shell) in the
 * project folder. Files it writes can be stored as artifacts: `artifacts: { report: out/report.html }`
 * (paths relative to the step's scratch folder, exported as $MLPIPE_WORK_DIR, or absolute).
 * Non-zero exit fails the step with the end of stderr. Cancellation kills the process.
 * Not cached by default: commands have side effects.
 */
export const shell = definePlugin({
  name: 'util.shell',
  version: '1',
  description: 'Runs a command; stores named output files as artifacts; outputs exitCode and the tail of stdout.',
  params: z
    .object({
      command: z.union([z.string().min(1), z.array(z.string()).min(1)]),
      cwd: z.string().optional(),
      env: z.record(z.string(), z.string()).default({}),
      artifacts: z.record(z.string(), z.string()).default({}),
    })
    .strict(),
  outputs: (p) => ({ exitCode: 'json', stdout: 'json', ...Object.fromEntries(Object.keys(p.artifacts).map((k) => [k, 'artifact' as const])) }),
  cacheable: false,
  pathParams: ['cwd'],
  async run(ctx, p) {
    const cwd = resolve(ctx.projectDir, p.cwd ?? '.');
    const env = { ...process.env, ...p.env, MLPIPE_WORK_DIR: ctx.workDir, MLPIPE_STEP: ctx.stepId, MLPIPE_RUN_ID: ctx.runId };
    const child = Array.isArray(p.command)
      ? spawn(p.command[0]!, p.command.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('/bin/sh', ['-c', p.command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout = (stdout + d.toString()).slice(-TAIL);
      ctx.heartbeat();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-TAIL);
    });
    const onAbort = (): void => {
      child.kill('SIGTERM');
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const code = await new Promise<number>((res, rej) => {
      child.on('error', rej);
      child.on('close', (c, sig) => res(c ?? (sig ? 128 : 1)));
    }).finally(() => ctx.signal.removeEventListener('abort', onAbort));
    if (ctx.signal.aborted) throw ctx.signal.reason as Error;
    if (code !== 0) {
      throw new PipelineError('STEP_FAILED', `Command exited with code ${code}.${stderr ? `\n--- stderr (end) ---\n${stderr.trimEnd()}` : ''}`);
    }
    const outputs: Record<string, unknown> = { exitCode: code, stdout: stdout.trimEnd() };
    for (const [name, path] of Object.entries(p.artifacts)) {
      outputs[name] = await ctx.store.putFile(resolve(ctx.workDir, path), { name: path.split('/').pop() });
    }
    return outputs;
  },
});
