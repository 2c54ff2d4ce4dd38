import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { ENV_NAME } from '../../engine/secrets.js';
import { definePlugin } from '../sdk.js';

/** How much of stdout / stderr the step reports. */
const TAIL = 4096;
/** How much is kept before scrubbing, so a secret cut by the tail's edge is still found whole. */
const KEEP = 64 * 1024;

/** A value passed to the command as data: an argument or an environment variable. */
const value = z
  .union([z.string(), z.number(), z.boolean()])
  .refine((v) => typeof v !== 'string' || !v.includes('\0'), 'must not contain a NUL character');

/**
 * util.shell — runs a command in the project folder: a shell line (a string, through /bin/sh) or a
 * program and its arguments (a list, no shell). The command is code written in the pipeline: it may
 * not contain `${...}`. Values (params, overrides, step outputs) reach it as data only: `args`
 * (appended to the list, or the shell line's "$1", "$2", ...) and `env` (read as "$NAME").
 * The process sees PATH, HOME, LANG, LC_ALL, TZ, TMPDIR, the worker variables the step asks for
 * (`env: [NAME]` on the step), `env` and MLPIPE_WORK_DIR / MLPIPE_STEP / MLPIPE_RUN_ID, and nothing
 * else of the worker's environment. Files it writes can be stored as artifacts:
 * `artifacts: { report: out/report.html }` (relative to $MLPIPE_WORK_DIR, or absolute).
 * Non-zero exit fails the step with the end of stderr, secrets scrubbed. Cancellation sends SIGTERM
 * to the process group (children included), then SIGKILL after `killGraceMs`.
 * Not cached by default: commands have side effects.
 */
export const shell = definePlugin({
  name: 'util.shell',
  version: '2',
  description:
    'Runs a shell line or a program; values go in as args or env, never into the command; stores named output files as artifacts; outputs exitCode and the tail of stdout.',
  params: z
    .object({
      command: z.union([z.string().min(1), z.array(z.string()).min(1)]),
      args: z.array(value).default([]),
      cwd: z.string().optional(),
      env: z.record(z.string().regex(ENV_NAME, 'environment variable names are letters, digits and _'), value).default({}),
      artifacts: z.record(z.string(), z.string()).default({}),
      killGraceMs: z.number().int().min(0).default(10_000),
    })
    .strict(),
  codeParams: ['command'],
  runsCode: true,
  codeHint:
    'Pass values as data: args: ["${params.x}"] (read as "$1" in a shell line, or appended to a command list) or env: { X: "${params.x}" } (read as "$X"). ' +
    'Write $${ for a literal ${.',
  outputs: (p) => ({
    exitCode: 'json',
    stdout: 'json',
    ...Object.fromEntries(Object.keys(p.artifacts).map((k) => [k, 'artifact' as const])),
  }),
  cacheable: false,
  pathParams: ['cwd'],
  async run(ctx, p) {
    const cwd = resolve(ctx.projectDir, p.cwd ?? '.');
    const vars = Object.fromEntries(Object.entries(p.env).map(([k, v]) => [k, String(v)]));
    const env = { ...ctx.env, ...vars, MLPIPE_WORK_DIR: ctx.workDir, MLPIPE_STEP: ctx.stepId, MLPIPE_RUN_ID: ctx.runId };
    const args = p.args.map(String);
    const [file, argv] = Array.isArray(p.command)
      ? [p.command[0]!, [...p.command.slice(1), ...args]]
      : ['/bin/sh', ['-c', p.command, 'sh', ...args]];
    // Its own process group: cancellation reaches every process the command starts.
    const child = spawn(file, argv, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout = (stdout + d).slice(-KEEP);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-KEEP);
    });
    const group = (signal: NodeJS.Signals | 0): boolean => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
        return child.pid !== undefined;
      } catch {
        return false; // the group is gone
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      group('SIGTERM');
      killTimer = setTimeout(() => group('SIGKILL'), p.killGraceMs);
      killTimer.unref();
    };
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener('abort', onAbort, { once: true });
    const code = await new Promise<number>((res, rej) => {
      child.on('error', (e) => {
        const command = Array.isArray(p.command) ? p.command[0]! : '/bin/sh';
        rej(
          new PipelineError('STEP_FAILED', `Could not start '${command}' in ${cwd}: ${e.message}.`, {
            hint: 'Check the command and cwd of the step.',
            retryable: false,
            cause: e,
          }),
        );
      });
      child.on('close', (c, sig) => res(c ?? (sig ? 128 : 1)));
    }).finally(() => {
      ctx.signal.removeEventListener('abort', onAbort);
      // Keep the SIGKILL due while something of the group outlives the command's pipes.
      if (killTimer && !group(0)) clearTimeout(killTimer);
    });
    if (ctx.signal.aborted) throw ctx.signal.reason as Error;
    const tail = (text: string): string => ctx.redact(text).slice(-TAIL).trimEnd();
    if (code !== 0) {
      const err = tail(stderr);
      throw new PipelineError('STEP_FAILED', `Command exited with code ${code}.${err ? `\n--- stderr (end) ---\n${err}` : ''}`);
    }
    const outputs: Record<string, unknown> = { exitCode: code, stdout: tail(stdout) };
    for (const [name, path] of Object.entries(p.artifacts)) {
      outputs[name] = await ctx.store.putFile(resolve(ctx.workDir, path), { name: path.split('/').pop() });
    }
    return outputs;
  },
});
