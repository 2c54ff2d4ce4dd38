/**
 * util.shell and the secrets helpers: values reach commands as data only, commands see a minimal
 * environment, secrets are scrubbed from what the step reports, cancellation kills the whole group.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compilePipeline } from '../../engine/compile.js';
import { PipelineError, SpecErrors } from '../../engine/errors.js';
import { escapeTemplates, resolveDeep } from '../../engine/expressions.js';
import { scrub, scrubberFor, scrubError, secretValues, stepEnvironment } from '../../engine/secrets.js';
import { shell } from '../../plugins/builtin/shell.js';
import { memoryConf, registry } from './fakes.js';
import { runPlugin, testContext } from './step-context.js';

const HOSTILE = `'";$(touch /tmp/PWN)\`touch /tmp/PWN\`$HOME \\ * ~ | & > x`;

function compile(text: string, overrides: string[] = []) {
  return compilePipeline({ file: 'pipelines/t.yaml', text, conf: memoryConf({}), catalog: registry, overrides });
}

function problems(text: string, overrides: string[] = []): PipelineError[] {
  try {
    compile(text, overrides);
  } catch (e) {
    return e instanceof SpecErrors ? e.problems : [e as PipelineError];
  }
  throw new Error('expected the compile to fail');
}

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'mlpipe-shell-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Whether a process exists and is not a zombie (an orphan may wait a while to be reaped). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Polls `fn` until it returns a value; the bound only stops a broken test from hanging. */
async function waitUntil<T>(fn: () => T | undefined | false, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('util.shell: values are data, never code', () => {
  it('rejects ${...} in a shell line or a command list at compile time, with the location and a hint', () => {
    const text = `name: t
params: { target: x }
steps:
  a: { uses: util.echo, with: { values: { v: 1 } } }
  line:
    uses: util.shell
    with:
      command: echo "\${params.target}"
  list:
    uses: util.shell
    needs: a
    with:
      command: [echo, "\${steps.a.outputs.v}"]
`;
    const found = problems(text);
    expect(found.map((p) => [p.code, p.where?.line, p.where?.path?.join('.')])).toEqual([
      ['EXPR_IN_CODE', 8, 'steps.line.with.command'],
      ['EXPR_IN_CODE', 13, 'steps.list.with.command.1'],
    ]);
    expect(found[0]!.message).toContain("'command' is code, so it cannot contain '${params.target}'");
    expect(found[0]!.hint).toContain('args:');
    expect(found[0]!.hint).toContain('env:');
    expect(found[0]!.where?.file).toBe('pipelines/t.yaml');
    expect(found[0]!.retryable).toBe(false);
  });

  it('matches code params by path with * for any key or index (process.transform: steps.*.sql)', () => {
    const text = `name: t
params: { k: 2 }
steps:
  load: { uses: util.echo, with: { values: { d: 1 } } }
  t:
    uses: process.transform
    needs: load
    inputs: { train: "\${steps.load.outputs.d}" }
    with:
      steps:
        - { op: derive, name: ok, expr: "rooms * \${params.k}" }
        - { op: derive, name: bad, sql: "rooms * \${params.k}" }
`;
    const found = problems(text);
    expect(found.map((p) => [p.code, p.where?.path?.join('.')])).toEqual([['EXPR_IN_CODE', 'steps.t.with.steps.1.sql']]);
    expect(found[0]!.hint).toContain('expr');
  });

  it('accepts a literal shell line ($${ escapes included) and values in args and env', () => {
    const p = compile(
      `name: t
params: { target: x }
steps:
  s:
    uses: util.shell
    env: [HF_TOKEN, HF_TOKEN]
    with:
      command: 'echo "$1 $$\{T}" $HOME'
      args: ["\${params.target}"]
      env: { T: "\${params.target}" }
`,
      [`params.target=${JSON.stringify(HOSTILE)}`],
    );
    // The workflow resolves `with` once more at run time: what the command gets is the literal text.
    expect(resolveDeep(p.steps['s']!.with, {})).toEqual({ command: 'echo "$1 ${T}" $HOME', args: [HOSTILE], env: { T: HOSTILE } });
    expect(p.steps['s']!.env).toEqual(['HF_TOKEN']);
  });

  it('keeps a ${...} that arrives in an override value literal: it is never evaluated at run time', () => {
    const p = compile(
      'name: t\nparams: { x: a }\nsteps:\n  a: { uses: util.echo, with: { values: { v: secret-output } } }\n  s:\n    uses: util.echo\n    needs: a\n    with: { values: { v: "${params.x}", w: "x ${params.x}" } }\n',
      ['params.x="${steps.a.outputs.v}"'],
    );
    const scope = { steps: { a: { outputs: { v: 'secret-output' } } } };
    expect(resolveDeep(p.steps['s']!.with, scope)).toEqual({ values: { v: '${steps.a.outputs.v}', w: 'x ${steps.a.outputs.v}' } });
  });

  it('escapeTemplates: resolving an escaped value gives it back unchanged', () => {
    for (const text of ['${a}', '$${a}', '$$${a}', 'x${', '${', '$', '$$', 'a ${b} $${c} $$${d}', HOSTILE, '${params.x == "}"}']) {
      expect(resolveDeep(escapeTemplates({ list: [text], text }), { params: { x: 1 }, a: 'A' })).toEqual({ list: [text], text });
    }
  });

  it('rejects a NUL character from an override before anything runs, and malformed env names', () => {
    const pipeline =
      'name: t\nparams: { x: a }\nsteps:\n  s:\n    uses: util.shell\n    env: [ok, "1bad"]\n    with:\n      command: [printf, "%s"]\n      args: ["${params.x}"]\n';
    const found = problems(pipeline, ['params.x="a\\0b"']);
    expect(found.map((p) => p.code)).toEqual(['SPEC_INVALID']);
    expect(found[0]!.where?.path).toEqual(['steps', 's', 'env', 1]);
    const nul = problems(pipeline.replace(', "1bad"', ''), ['params.x="a\\0b"']);
    expect(nul.map((p) => [p.code, p.where?.path?.join('.')])).toEqual([['PLUGIN_PARAMS', 'steps.s.with.args.0']]);
    expect(nul[0]!.message).toContain('NUL');
  });

  it('passes a hostile value to a program through args and env, byte for byte, and runs nothing of it', async () => {
    const dir = tempDir();
    const marker = join(dir, 'PWN');
    const value = HOSTILE.replaceAll('/tmp/PWN', marker);
    const ctx = testContext(dir);
    const viaArgs = await runPlugin(shell, ctx, {
      command: [process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))'],
      args: [value, 7],
    });
    expect(JSON.parse(viaArgs['stdout'] as string)).toEqual([value, '7']);
    const viaLine = await runPlugin(shell, ctx, { command: 'printf "%s|%s" "$1" "$V"', args: [value], env: { V: value } });
    expect(viaLine['stdout']).toBe(`${value}|${value}`);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('util.shell: failures', () => {
  it('a program that cannot start fails the step once, non-retryable, naming it', async () => {
    const ctx = testContext(tempDir());
    const err = await runPlugin(shell, ctx, { command: ['/nonexistent/tool', 'x'] }).then(
      () => undefined,
      (e: unknown) => e as PipelineError,
    );
    expect(err).toBeInstanceOf(PipelineError);
    expect([err!.code, err!.retryable]).toEqual(['STEP_FAILED', false]);
    expect(err!.message).toContain("Could not start '/nonexistent/tool'");
  });
});

describe('util.shell: environment and secrets', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  it('gives the command a minimal environment, plus the worker variables the step asked for', async () => {
    process.env['MLFLOW_TRACKING_TOKEN'] = 'tracking-token-123';
    process.env['SOME_API_KEY'] = 'api-key-456';
    process.env['MLPIPE_ALERT_WEBHOOK'] = 'https://hooks.example/abc';
    process.env['ASKED_FOR'] = 'asked-789';
    const ctx = testContext(tempDir(), undefined, { env: ['ASKED_FOR'] });
    const out = await runPlugin(shell, ctx, {
      command: [process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.env))'],
      env: { MINE: 1 },
    });
    const seen = JSON.parse(out['stdout'] as string) as Record<string, string>;
    expect(Object.keys(seen).sort()).toEqual(
      [
        'ASKED_FOR',
        'MINE',
        'MLPIPE_RUN_ID',
        'MLPIPE_STEP',
        'MLPIPE_WORK_DIR',
        ...['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'].filter((k) => process.env[k] !== undefined),
      ].sort(),
    );
    expect(seen['MINE']).toBe('1');
    expect(seen['PATH']).toBe(process.env['PATH']);
  });

  it('scrubs secret values from the stderr of a failure and from stdout, also where the tail cuts a secret', async () => {
    process.env['DEPLOY_TOKEN'] = 'deploy-secret-value-0123456789';
    process.env['ASKED'] = 'plain-but-asked';
    const ctx = testContext(tempDir(), undefined, { env: ['ASKED', 'DEPLOY_TOKEN'] });
    const failed = await runPlugin(shell, ctx, { command: 'printf "err %s %s\\n" "$ASKED" "$DEPLOY_TOKEN" >&2; exit 3' }).then(
      () => undefined,
      (e: unknown) => e as PipelineError,
    );
    expect(failed).toBeInstanceOf(PipelineError);
    expect(failed!.code).toBe('STEP_FAILED');
    expect(failed!.message).toContain('exited with code 3');
    expect(failed!.message).toContain('err *** ***');
    // The last 4096 characters of the raw output start inside the secret: scrubbing comes first.
    const out = await runPlugin(shell, ctx, {
      command: `printf '%s' "$DEPLOY_TOKEN"; head -c 4064 /dev/zero | tr '\\0' x; printf ' %s\\n' "$ASKED"`,
    });
    const stdout = out['stdout'] as string;
    expect(stdout).toBe(`***${'x'.repeat(4064)} ***`);
  });

  it('pure helpers: which names are secrets, what is scrubbed, errors scrubbed with their causes', () => {
    const env = {
      GITHUB_TOKEN: 'ghp_abcdef',
      MLFLOW_TRACKING_PASSWORD: 'pw-secret',
      MLFLOW_TRACKING_INSECURE_TLS: 'true',
      AWS_ACCESS_KEY_ID: 'AKIAXYZ',
      GOOGLE_APPLICATION_CREDENTIALS: '/keys/sa.json',
      DB_PASSWORD_FILE: '/run/pw',
      SHORT_TOKEN: 'ab',
      PLAIN: 'not-a-secret',
      PATH: '/usr/bin',
    };
    expect(secretValues(env).sort()).toEqual(['/keys/sa.json', '/run/pw', 'AKIAXYZ', 'ghp_abcdef', 'pw-secret'].sort());
    expect(secretValues(env, ['PLAIN'])).toContain('not-a-secret');
    expect(scrub('a ghp_abcdef b pw-secret ghp_abcdef', secretValues(env))).toBe('a *** b *** ***');
    expect(
      scrub(
        'overlap: abcdef',
        ['abc', 'abcdef'].sort((a, b) => b.length - a.length),
      ),
    ).toBe('overlap: ***');
    expect(stepEnvironment(env, ['GITHUB_TOKEN', 'MISSING'])).toEqual({ PATH: '/usr/bin', GITHUB_TOKEN: 'ghp_abcdef' });
    const inner = new Error('cause has pw-secret');
    const outer = new PipelineError('STEP_FAILED', 'failed with ghp_abcdef', { hint: 'hint ghp_abcdef', cause: inner });
    scrubError(outer, scrubberFor(env));
    expect([outer.message, outer.hint, inner.message]).toEqual(['failed with ***', 'hint ***', 'cause has ***']);
    expect(`${outer.stack} ${inner.stack}`).not.toMatch(/ghp_abcdef|pw-secret/);
    // The error's details travel in the failure too.
    const detailed = new PipelineError('STEP_FAILED', 'failed', { details: { argv: ['--token', 'ghp_abcdef'], exitCode: 7 } });
    scrubError(detailed, scrubberFor(env));
    expect(detailed.details).toEqual({ argv: ['--token', '***'], exitCode: 7 });
  });
});

describe('util.shell: cancellation', () => {
  async function started(dir: string): Promise<number[]> {
    return waitUntil(() => {
      const f = join(dir, 'pids');
      if (!existsSync(f)) return undefined;
      const pids = readFileSync(f, 'utf8').trim().split(/\s+/).map(Number);
      return pids.length === 2 && pids.every((p) => p > 0) ? pids : undefined;
    }, 'the command to start');
  }

  it('kills the whole process group on cancel, grandchildren included', async () => {
    const dir = tempDir();
    const ac = new AbortController();
    const ctx = testContext(dir, undefined, { signal: ac.signal });
    const run = runPlugin(shell, ctx, { command: 'sleep 1000 & echo "$$ $!" > pids; wait' });
    const pids = await started(dir);
    expect(pids.every(alive)).toBe(true);
    ac.abort(new Error('cancelled by the test'));
    await expect(run).rejects.toThrow('cancelled by the test');
    // The run settles once the pipes close, that is once every process of the group is gone.
    await waitUntil(() => !pids.some(alive), 'the processes to exit');
  });

  it('sends SIGKILL after killGraceMs to processes that ignore SIGTERM', async () => {
    const dir = tempDir();
    const ac = new AbortController();
    const ctx = testContext(dir, undefined, { signal: ac.signal });
    // An ignored signal stays ignored in the children: neither the shell nor the sleep dies of SIGTERM.
    const run = runPlugin(shell, ctx, { command: 'trap \'\' TERM; sleep 1000 & echo "$$ $!" > pids; wait; wait', killGraceMs: 300 });
    const pids = await started(dir);
    ac.abort(new Error('cancelled'));
    await expect(run).rejects.toThrow('cancelled');
    await waitUntil(() => !pids.some(alive), 'the processes to be killed');
  });
});
