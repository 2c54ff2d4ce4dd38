/**
 * `mlpipe trial`: the entrypoint of a Vertex AI tuning trial (deploy/Dockerfile.serve). Vertex passes
 * the trial's parameters as arguments, `--training__lr 0.004` or `--training__lr=0.004`; they become
 * overrides (`training.lr=0.004`). The pipeline runs up to its hpo metric step, on the Temporal server
 * at TEMPORAL_ADDRESS or, when none answers, on an in-memory dev server started here, with a worker in
 * this process. The metric is reported in cloudml-hypertune's file format.
 */
import { Client, Connection } from '@temporalio/client';
import type { Settings } from '../app/project.js';
import { loadPipeline } from '../app/load-pipeline.js';
import { loadProjectRegistry } from '../app/project-plugins.js';
import { isListening, requireTemporalCli, startDevServer, type DevServer } from '../dev/temporal-server.js';
import { HyperTune } from '../adapters/vertex/hypertune.js';
import { fromParameterId } from '../adapters/vertex/parameter-ids.js';
import { PipelineError } from '../engine/errors.js';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../engine/contracts.js';

const out = (s: string): boolean => process.stdout.write(`${s}\n`);

/** `--k v` and `--k=v` pairs; `--pipeline` picks the pipeline. */
export function parseTrialArgs(argv: string[]): { pipeline?: string; overrides: string[] } {
  const overrides: string[] = [];
  let pipeline: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--'))
      throw new PipelineError('INPUT_INVALID', `Unexpected trial argument '${a}': expected --name value or --name=value.`);
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    let value: string | undefined = eq > 0 ? a.slice(eq + 1) : argv[i + 1];
    if (eq < 0) {
      if (value === undefined || value.startsWith('--')) throw new PipelineError('INPUT_INVALID', `Trial argument --${name} has no value.`);
      i++;
    }
    value ??= '';
    if (name === 'pipeline') pipeline = value;
    else if (name === 'override')
      overrides.push(value); // the search's base overrides, passed through
    else overrides.push(`${fromParameterId(name)}=${value}`);
  }
  return { ...(pipeline ? { pipeline } : {}), overrides };
}

export async function cmdTrial(
  argv: string[],
  settings: Settings,
  startWorker: (s: Settings) => Promise<() => Promise<void>>,
): Promise<number> {
  const { pipeline: named, overrides } = parseTrialArgs(argv);
  const pipeline = named ?? process.env['MLPIPE_TRIAL_PIPELINE'];
  if (!pipeline) throw new PipelineError('INPUT_INVALID', 'mlpipe trial needs --pipeline <name> (or MLPIPE_TRIAL_PIPELINE).');
  const compiled = loadPipeline(settings.projectDir, pipeline, await loadProjectRegistry(settings.projectDir), overrides);
  if (!compiled.hpo) throw new PipelineError('SPEC_INVALID', `Pipeline '${compiled.name}' has no hpo: section: no metric to report.`);
  const metric = compiled.hpo.metric;
  let server: DevServer | undefined;
  let s = settings;
  if (!(await isListening(settings.temporalAddress))) {
    server = await startDevServer({ bin: requireTemporalCli(settings.cacheDir), headless: true });
    s = { ...settings, temporalAddress: server.address };
  }
  const stopWorker = await startWorker(s);
  const connection = await Connection.connect({ address: s.temporalAddress });
  try {
    const client = new Client({ connection, namespace: s.namespace });
    const trial = process.env['CLOUD_ML_TRIAL_ID'] ?? '0';
    const workflowId = `${process.env['CLOUD_ML_JOB_ID'] ?? 'vertex'}-trial-${trial}-${Date.now()}`;
    const result = (await client.workflow.execute(PIPELINE_WORKFLOW, {
      taskQueue: s.taskQueue,
      workflowId,
      args: [
        {
          pipeline,
          overrides,
          until: metric.step,
          trial: { hpo: process.env['CLOUD_ML_JOB_ID'] ?? 'vertex', index: Number(trial) || 0 },
          labels: { trial },
        },
      ],
    })) as PipelineResult;
    const outValue = result.outputs[metric.step]?.[metric.output];
    const value = metric.output === metric.key ? outValue : (outValue as Record<string, unknown> | undefined)?.[metric.key];
    if (typeof value !== 'number')
      throw new PipelineError('STEP_FAILED', `The trial produced no numeric ${metric.step}.${metric.output}.${metric.key}.`);
    const ht = new HyperTune();
    ht.report(metric.key, value);
    out(`trial ${trial}: ${metric.key}=${value} (${overrides.join(' ')}); reported to ${ht.file}`);
    return 0;
  } finally {
    await connection.close();
    await stopWorker();
    await server?.stop();
  }
}
