/**
 * Commands over the artifact store: `runs list`, `runs show`, `lineage`, `gc`. They read the store
 * (MLPIPE_ARTIFACTS: a folder or gs://bucket/prefix) and need no Temporal server.
 */
import { Client, Connection } from '@temporalio/client';
import { parseArgs } from 'node:util';
import type { Settings } from '../app/project.js';
import { createArtifactStore } from '../adapters/stores.js';
import { isListening } from '../dev/temporal-server.js';
import { formatDuration, parseDuration } from '../engine/duration.js';
import { PipelineError } from '../engine/errors.js';
import { collectGarbage, DEFAULT_GC_AGE_MS } from '../engine/gc.js';
import { artifactRefs, lineageOf, listRuns, resolveDigest, runsOf, type LineageNode, type RunManifest } from '../engine/lineage.js';
import type { ArtifactStore } from '../engine/ports.js';

const out = (s: string): boolean => process.stdout.write(`${s}\n`);

export function openStore(settings: Settings): ArtifactStore {
  return createArtifactStore(settings.artifactsDir, { cacheDir: settings.stateDir });
}

function short(sha: string): string {
  return sha.slice(0, 12);
}

function size(n: number | undefined): string {
  if (n === undefined) return '?';
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

/** A step's values with artifact references shortened to name@digest. */
function brief(values: Record<string, unknown>): string {
  return Object.entries(values)
    .map(([k, v]) => {
      const refs = artifactRefs(v);
      if (refs.length) return `${k}=${refs.map((r) => `${r.name ?? 'artifact'}@${short(r.sha256)}`).join(',')}`;
      const text = JSON.stringify(v);
      return `${k}=${text.length > 40 ? `${text.slice(0, 37)}...` : text}`;
    })
    .join(' ');
}

export async function cmdRuns(argv: string[], settings: Settings, store = openStore(settings)): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, 'run-id': { type: 'string' }, limit: { type: 'string' } },
  });
  if (sub === 'list' || sub === undefined) {
    const limit = Number(values.limit ?? 20);
    if (!Number.isInteger(limit) || limit < 1)
      throw new PipelineError('INPUT_INVALID', `--limit '${values.limit}' is not a positive whole number.`);
    const runs = (await listRuns(store)).slice(0, limit);
    const { statuses, from } = await runStatuses(runs, settings, store);
    if (values.json)
      out(
        JSON.stringify(
          runs.map((r, i) => ({ ...r, status: statuses[i] })),
          null,
          2,
        ),
      );
    else {
      if (!runs.length) out(`no runs recorded in ${store.location}`);
      else out(`${'STARTED'.padEnd(24)}  ${'STATUS'.padEnd(10)} ${'PIPELINE'.padEnd(20)} WORKFLOW`);
      runs.forEach((r, i) =>
        out(`${r.startedAt.padEnd(24)}  ${statuses[i]!.padEnd(10)} ${r.pipeline.padEnd(20)} ${r.workflowId}  (run ${r.runId})`),
      );
      if (runs.length && from === 'records')
        out(`(no Temporal server at ${settings.temporalAddress}: status from the step records, 'unknown' unless a step failed)`);
    }
    return 0;
  }
  if (sub !== 'show')
    throw new PipelineError('INPUT_INVALID', `Unknown 'runs' subcommand '${sub}'.`, {
      hint: "Use 'mlpipe runs list' or 'mlpipe runs show <workflow-id>'.",
    });
  const [workflowId] = positionals;
  if (!workflowId)
    throw new PipelineError('INPUT_INVALID', 'mlpipe runs show needs a workflow ID.', { hint: "List them with 'mlpipe runs list'." });
  const views = await runsOf(store, workflowId);
  const view = values['run-id'] ? views.find((v) => v.run?.runId === values['run-id'] || v.steps[0]?.runId === values['run-id']) : views[0];
  if (!view) {
    throw new PipelineError(
      'STORAGE_NOT_FOUND',
      `No run of '${workflowId}'${values['run-id'] ? ` with run ID ${values['run-id']}` : ''} is recorded in ${store.location}.`,
      {
        hint: "List recorded runs with 'mlpipe runs list'; check MLPIPE_ARTIFACTS points at the store the worker used.",
      },
    );
  }
  if (values.json) {
    out(JSON.stringify(view, null, 2));
    return 0;
  }
  const r = view.run;
  if (r) {
    out(`${r.pipeline}  workflow ${r.workflowId}  run ${r.runId}`);
    out(`  started ${r.startedAt}  file ${r.file}${r.gitCommit ? `  git ${r.gitCommit.slice(0, 12)}` : ''}`);
    out(`  store ${r.store}${r.overrides.length ? `  overrides ${r.overrides.join(' ')}` : ''}`);
  }
  if (views.length > 1) out(`  (${views.length} runs recorded under this workflow ID; this is the newest: --run-id to choose)`);
  for (const s of view.steps) {
    const how = s.status === 'cached' ? `cached from run ${s.cachedFrom?.runId ?? '?'}` : s.status;
    out(
      `  ${s.stepId.padEnd(14)} ${`${s.uses}@${s.pluginVersion}`.padEnd(22)} ${how.padEnd(10)} ${formatDuration(s.durationMs).padStart(7)}  params ${short(s.paramsHash)}${s.attempt > 1 ? `  attempt ${s.attempt}` : ''}`,
    );
    if (Object.keys(s.inputs).length) out(`      in:  ${brief(s.inputs)}`);
    if (Object.keys(s.outputs).length) out(`      out: ${brief(s.outputs)}`);
    if (s.error) out(`      error: ${s.error.split('\n')[0]}`);
  }
  return 0;
}

const TEMPORAL_STATUS: Record<string, string> = {
  COMPLETED: 'succeeded',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  TERMINATED: 'terminated',
  TIMED_OUT: 'timed out',
  RUNNING: 'running',
  CONTINUED_AS_NEW: 'continued',
};

/**
 * Each run's status: from Temporal (describe of the workflow run) when a server is reachable, else
 * from the step records (failed when a step failed, otherwise unknown).
 */
async function runStatuses(
  runs: RunManifest[],
  settings: Settings,
  store: ArtifactStore,
): Promise<{ statuses: string[]; from: 'temporal' | 'records' }> {
  if (runs.length && (await isListening(settings.temporalAddress, 500))) {
    const connection = await Connection.connect({ address: settings.temporalAddress }).catch(() => undefined);
    if (connection) {
      try {
        const client = new Client({ connection, namespace: settings.namespace });
        const statuses = await Promise.all(
          runs.map((r) =>
            client.workflow
              .getHandle(r.workflowId, r.runId)
              .describe()
              .then((d) => TEMPORAL_STATUS[d.status.name] ?? d.status.name.toLowerCase())
              .catch(() => 'unknown'),
          ),
        );
        return { statuses, from: 'temporal' };
      } finally {
        await connection.close();
      }
    }
  }
  const statuses = await Promise.all(
    runs.map(async (r) => {
      const view = (await runsOf(store, r.workflowId)).find((v) => v.run?.runId === r.runId);
      return view?.steps.some((s) => s.status === 'failed') ? 'failed' : 'unknown';
    }),
  );
  return { statuses, from: 'records' };
}

function printNode(node: LineageNode, indent: string, label: string): void {
  out(`${indent}${label}${node.name ?? 'artifact'} sha256:${short(node.sha256)} (${size(node.size)})`);
  if (!node.producedBy.length) {
    out(`${indent}  (no recorded producer: an input from outside, or produced before lineage was kept)`);
    return;
  }
  for (const p of node.producedBy) {
    out(
      `${indent}  <- ${p.stepId} (${p.uses}@${p.pluginVersion}, params ${short(p.paramsHash)}) in ${p.workflowId} run ${p.runId.slice(0, 8)} at ${p.endedAt}`,
    );
    for (const [name, child] of Object.entries(p.inputsLineage)) printNode(child, `${indent}     `, `${name}: `);
  }
}

export async function cmdLineage(argv: string[], settings: Settings, store = openStore(settings)): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const [arg] = positionals;
  if (!arg)
    throw new PipelineError(
      'INPUT_INVALID',
      'mlpipe lineage needs an artifact: a sha256 digest (or its first 6+ digits) or an artifact URI.',
    );
  const m = /([a-f0-9]{2})\/([a-f0-9]{62})$/.exec(arg) ?? undefined;
  const prefix = m ? `${m[1]}${m[2]}` : arg.replace(/^sha256:/, '').toLowerCase();
  if (!/^[a-f0-9]{6,64}$/.test(prefix)) {
    throw new PipelineError('INPUT_INVALID', `'${arg}' is not an artifact digest or URI.`, {
      hint: "Give sha256 hex digits (at least 6), e.g. from 'mlpipe runs show', or an object URI ending in objects/sha256/ab/cdef....",
    });
  }
  const matches = await resolveDigest(store, prefix);
  if (matches.length === 0)
    throw new PipelineError('STORAGE_NOT_FOUND', `No lineage is recorded for an artifact sha256:${prefix}… in ${store.location}.`);
  if (matches.length > 1)
    throw new PipelineError(
      'INPUT_INVALID',
      `sha256:${prefix}… matches ${matches.length} artifacts (${matches.slice(0, 4).map(short).join(', ')}…).`,
      { hint: 'Give more digits.' },
    );
  const node = await lineageOf(store, matches[0]!);
  if (values.json) {
    out(JSON.stringify(node, null, 2));
    return 0;
  }
  printNode(node, '', '');
  if (node.usedBy.length) {
    out('  used by:');
    for (const u of node.usedBy) out(`    ${u.stepId} in ${u.workflowId} run ${u.runId.slice(0, 8)}`);
  }
  return 0;
}

export async function cmdGc(argv: string[], settings: Settings, store = openStore(settings)): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { 'older-than': { type: 'string' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } },
  });
  const olderThanMs = values['older-than'] === undefined ? DEFAULT_GC_AGE_MS : parseDuration(values['older-than']);
  if (olderThanMs === undefined)
    throw new PipelineError('INPUT_INVALID', `--older-than '${values['older-than']}' is not a duration.`, {
      hint: 'Write e.g. 7d, 36h or 0s.',
    });
  const report = await collectGarbage(store, { olderThanMs, dryRun: values['dry-run'] ?? false });
  if (values.json) {
    out(JSON.stringify(report, null, 2));
    return 0;
  }
  const verb = report.dryRun ? 'would delete' : 'deleted';
  out(
    `${store.location}: ${report.objects} objects (${size(report.bytes)}); ${report.referenced} referenced by ${report.roots} manifests and records`,
  );
  out(
    `${verb} ${report.collected.length} unreferenced objects older than ${formatDuration(olderThanMs)} (${size(report.collectedBytes)}); kept ${report.young} younger ones`,
  );
  return 0;
}
