/**
 * util.shell on the real dev server with a real worker: hostile values from overrides, labels and
 * step outputs reach programs as literal data; worker secrets stay out of workflow history, the
 * artifact store, MLflow (file store) and the logs; cancelling a run kills the step's grandchildren.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrackingBackend } from '../../adapters/mlflow/index.js';
import { PIPELINE_WORKFLOW, type PipelineInput, type PipelineResult } from '../../engine/contracts.js';
import { createClient, createTestProject, startWorker, uniqueId, waitFor, waitForTracking } from './helpers.js';
import type { Client } from '@temporalio/client';

/** Everything the worker logs (Temporal's runtime logger: worker, activity and workflow logs). */
const logs: string[] = [];
/** Errors in log metadata become their message, stack and cause (JSON.stringify would print {}). */
function plain(v: unknown, depth = 0): unknown {
  if (depth > 8) return '…';
  if (v instanceof Error) return { name: v.name, message: v.message, stack: v.stack, cause: plain(v.cause, depth + 1) };
  if (Array.isArray(v)) return v.map((x) => plain(x, depth + 1));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x, depth + 1)]));
  return v;
}
Runtime.install({
  logger: new DefaultLogger('DEBUG', (entry) => void logs.push(JSON.stringify({ message: entry.message, meta: plain(entry.meta) }))),
});

const SECRET = `s3cr3t-${randomBytes(12).toString('hex')}`;
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
process.env['H1_DEPLOY_TOKEN'] = SECRET;
process.env['MLFLOW_TRACKING_PASSWORD'] = PASSWORD;

const project = createTestProject('shell');
const PWNED = join(project.dir, 'pwned');
// Quotes, ;, $(...), backticks, globs, a newline: shell syntax if it ever became part of a shell line.
const HOSTILE = `'";$(touch ${PWNED}) \`touch ${PWNED}\` $HOME * | & > out\nnext line`;
// Labels may hold no control characters (the input check refuses them), so the label's copy has none.
const HOSTILE_LABEL = HOSTILE.replace('\n', ' ');
const NODE_ARGV = "require('fs').writeFileSync(process.argv[1], JSON.stringify(process.argv.slice(2)))";

project.write(
  'pipelines/inject.yaml',
  `name: inject
params:
  value: plain
steps:
  echo:
    uses: util.echo
    cache: false
    with: { values: { v: "\${params.value}" } }
  argv:
    uses: util.shell
    needs: echo
    with:
      command: [${JSON.stringify(process.execPath)}, -e, ${JSON.stringify(NODE_ARGV)}, argv.json]
      args: ["\${params.value}", "\${steps.echo.outputs.v}", "\${run.labels.owner}"]
  line:
    uses: util.shell
    needs: echo
    with:
      command: printf '%s' "$1" > line-arg.txt; printf '%s' "$FROM_OUTPUT" > line-env.txt; printf '%s' "$OWNER" > line-label.txt
      args: ["\${params.value}"]
      env: { FROM_OUTPUT: "\${steps.echo.outputs.v}", OWNER: "\${run.labels.owner}" }
`,
);
project.write(
  'pipelines/spliced.yaml',
  `name: spliced
params:
  value: plain
steps:
  first: { uses: util.echo, with: { journal: journal.jsonl } }
  bad:
    uses: util.shell
    with:
      command: echo "\${params.value}"
`,
);
project.write(
  'pipelines/secret.yaml',
  `name: secret
steps:
  probe:
    uses: util.shell
    with:
      command: printf '%s|%s' "$\${H1_DEPLOY_TOKEN:-unset}" "$\${MLFLOW_TRACKING_PASSWORD:-unset}" > probe.txt
  leak:
    uses: util.shell
    needs: probe
    env: [H1_DEPLOY_TOKEN]
    retry: { maximumAttempts: 2, initialInterval: 100ms }
    with:
      command: printf '%s' "$H1_DEPLOY_TOKEN" > seen.txt; echo "token is $H1_DEPLOY_TOKEN"; echo "token is $H1_DEPLOY_TOKEN" >&2; exit 7
`,
);
project.write(
  'pipelines/long.yaml',
  `name: long
steps:
  wait:
    uses: util.shell
    heartbeat: 2s
    with:
      command: sleep 1000 & echo "$$ $!" > pids.txt; wait
      killGraceMs: 2000
`,
);

let client: Client;
let stop: () => Promise<void>;
beforeAll(async () => {
  client = await createClient();
  stop = (await startWorker(project, { tracking: createTrackingBackend(`file:${join(project.dir, 'mlruns')}`) })).stop;
});
afterAll(async () => {
  await stop?.();
  await client?.connection.close();
});

function start(input: PipelineInput) {
  return client.workflow.start(PIPELINE_WORKFLOW, {
    taskQueue: project.taskQueue,
    workflowId: uniqueId(input.pipeline),
    args: [input],
    workflowRunTimeout: '2 minutes',
  });
}

async function failureOf(handle: { result(): Promise<unknown> }): Promise<WorkflowFailedError> {
  const e = await handle.result().then(
    () => new Error('expected the run to fail'),
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(WorkflowFailedError);
  return e as WorkflowFailedError;
}

/** A workflow's history as text, payloads (bytes) decoded, so a value anywhere in it can be searched. */
async function historyText(workflowId: string): Promise<string> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return JSON.stringify(history, (k, v: unknown) => {
    if (k === 'data' && typeof v === 'string') return Buffer.from(v, 'base64').toString('utf8'); // payload bytes, as the client returns them
    if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
    if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      return Buffer.from((v as { data: number[] }).data).toString('utf8');
    }
    return v;
  });
}

/** The text of every file under a folder. */
function filesUnder(dir: string): { path: string; text: string }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((rel) => join(dir, rel))
    .filter((path) => statSync(path).isFile())
    .map((path) => ({ path, text: readFileSync(path, 'utf8') }));
}

const read = (name: string): string => readFileSync(join(project.dir, name), 'utf8');

describe('util.shell on the dev server', () => {
  it('passes an override, a step output and a label to programs as the literal string, through args and env', async () => {
    const handle = await start({
      pipeline: 'inject',
      overrides: [`params.value=${JSON.stringify(HOSTILE)}`],
      labels: { owner: HOSTILE_LABEL },
    });
    const r = (await handle.result()) as PipelineResult;
    expect(Object.values(r.steps).map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(JSON.parse(read('argv.json'))).toEqual([HOSTILE, HOSTILE, HOSTILE_LABEL]);
    expect([read('line-arg.txt'), read('line-env.txt'), read('line-label.txt')]).toEqual([HOSTILE, HOSTILE, HOSTILE_LABEL]);
    expect(existsSync(PWNED)).toBe(false);
    expect(existsSync(join(project.dir, 'out'))).toBe(false);
  });

  it('fails a run whose shell line splices a value before any step starts, non-retryable, with the location', async () => {
    const handle = await start({ pipeline: 'spliced', overrides: [`params.value=${JSON.stringify(`$(touch ${PWNED})`)}`] });
    const e = await failureOf(handle);
    const cause = e.cause as { type?: string; message: string; nonRetryable?: boolean };
    expect(cause.type).toBe('EXPR_IN_CODE');
    expect(cause.nonRetryable).toBe(true);
    expect(cause.message).toContain('spliced.yaml:9');
    expect(cause.message).toContain("'command' is code");
    expect(existsSync(PWNED)).toBe(false);
    expect(project.journal().filter((l) => l.runId === handle.firstExecutionRunId)).toEqual([]);
  });

  it('refuses workflow input that sets params of a shell step, and keeps ${...} in input-set params literal', async () => {
    const trial = (stepParams: Record<string, Record<string, unknown>>) => ({ hpo: 'h', index: 0, stepParams });
    const e = await failureOf(await start({ pipeline: 'inject', trial: trial({ line: { command: `touch ${PWNED}` } }) } as PipelineInput));
    const cause = e.cause as { type?: string; message: string; nonRetryable?: boolean };
    expect(cause.type).toBe('INPUT_INVALID');
    expect(cause.nonRetryable).toBe(true);
    expect(cause.message).toContain("step 'line' (util.shell) runs code");
    expect(existsSync(PWNED)).toBe(false);
    // Values from the input are data: a ${...} in them is not evaluated when the step starts.
    const handle = await start({
      pipeline: 'inject',
      until: 'echo',
      trial: trial({ echo: { values: { v: '${run.workflowId}' } } }),
    } as PipelineInput);
    const r = (await handle.result()) as PipelineResult;
    expect(r.outputs['echo']).toEqual({ v: '${run.workflowId}' });
  });

  it('keeps worker secrets from steps that do not ask, and out of history, manifests, MLflow and logs', async () => {
    const handle = await start({ pipeline: 'secret' });
    const e = await failureOf(handle);
    // The program saw the secret it asked for, printed it to stdout and stderr, and failed.
    expect(read('seen.txt')).toBe(SECRET);
    expect(read('probe.txt')).toBe('unset|unset');
    const message = JSON.stringify(plain(e));
    expect(message).toContain('token is ***');
    expect(message).toContain('exited with code 7');

    const tracking = await waitForTracking(client, handle);
    const history = await historyText(handle.workflowId);
    const trackingHistory = await historyText(tracking);
    const manifests = filesUnder(project.settings.artifactsDir);
    const mlruns = filesUnder(join(project.dir, 'mlruns'));
    // Each place does hold the (scrubbed) failure, so the search below looks where the secret would be.
    expect(history).toContain('token is ***');
    expect(trackingHistory).toContain('token is ***');
    expect(manifests.filter((f) => f.text.includes('token is ***')).length).toBeGreaterThan(0);
    expect(mlruns.filter((f) => f.text.includes('token is ***')).length).toBeGreaterThan(0);
    expect(logs.filter((l) => l.includes('token is ***')).length).toBeGreaterThan(0);
    for (const secret of [SECRET, PASSWORD]) {
      expect(history).not.toContain(secret);
      expect(trackingHistory).not.toContain(secret);
      expect(manifests.filter((f) => f.text.includes(secret)).map((f) => f.path)).toEqual([]);
      expect(mlruns.filter((f) => f.text.includes(secret)).map((f) => f.path)).toEqual([]);
      expect(logs.filter((l) => l.includes(secret))).toEqual([]);
    }
  });

  it('cancelling a run kills the shell step and the processes it started', async () => {
    const handle = await start({ pipeline: 'long' });
    const pids = await waitFor(() => {
      if (!existsSync(join(project.dir, 'pids.txt'))) return undefined;
      const list = read('pids.txt').trim().split(/\s+/).map(Number);
      return list.length === 2 && list.every((p) => p > 0) ? list : undefined;
    }, 'the step to start its processes');
    const alive = (pid: number): boolean => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    expect(pids.every(alive)).toBe(true);
    await handle.cancel();
    await failureOf(handle);
    expect(pids.filter(alive)).toEqual([]);
  });
});
