/**
 * The `mlpipe` command line. Parses arguments, calls library functions, prints. Exit codes:
 * 0 success, 1 the run failed or was cancelled, 2 bad input (nothing was started), 3 environment
 * problem (server unreachable, tool missing).
 */
// Only the command being run is loaded: each command's module (and what it needs: the Temporal SDK,
// the worker, the plugins, DuckDB) is imported when that command starts, so `--help`, `validate` and
// `drift` do not load the others'. The usage below is a static table of them all.
import { loadSettings } from '../app/project.js';
import { DEFAULT_TASK_QUEUE } from '../engine/contracts.js';
import { formatZodIssues, PipelineError } from '../engine/errors.js';
import { commandHelp, DEMO_PIPELINE } from './help.js';
import { err, out, usageError } from './output.js';

const HELP = `mlpipe — declarative ML pipelines on Temporal

Usage:
  mlpipe init [dir]                      Scaffold a project: pipelines/, conf/, mlpipe.plugins.ts, a plugin test
  mlpipe run <pipeline> [overrides...]   Start a run, follow it, print outputs (exit code = result)
      --worker            also run a worker in this process while the run lasts
      --no-cache          do not reuse cached step results
      --max-parallel N    at most N steps at once
      --label k=v         attach a label (repeatable)
      --id ID             workflow ID (default <pipeline>-<random>)
      --detach            start and print the workflow ID, do not wait
      --json              print the result as JSON
      --wait-tracking     wait until the run's tracking is in MLflow before exiting
  mlpipe validate <pipeline> [overrides...] [--show-config] [--json]
  mlpipe graph <pipeline> [overrides...]  Print the DAG as a Mermaid flowchart
  mlpipe worker [--task-queue Q]         Serve pipelines on a task queue (default ${DEFAULT_TASK_QUEUE})
  mlpipe dev [--port 7233] [--ui-port 8233] [--db FILE] [--registry] [--web-port 8234] [--no-web]
                                         Temporal dev server (SQLite file) + a worker + the mlpipe UI; --registry:
                                         an MLflow server with a model registry instead of the file store
  mlpipe ui [--port 8234] [--host H]     Web UI: runs, live DAGs, artifacts, training curves (also started by dev)
  mlpipe status <workflow-id>            Live status of a run
  mlpipe cancel <workflow-id>            Cancel a run (running steps are cancelled)
  mlpipe plugins [name]                  List plugins, or show one plugin's params
  mlpipe pipelines                       List the pipelines in pipelines/
  mlpipe demo [pipeline] [overrides...]  Start what is needed and run a pipeline (default ${DEMO_PIPELINE}; or forecast-unemployment)
  mlpipe runs list [--limit N] [--json]  Runs recorded in the artifact store, newest first
  mlpipe runs show <workflow-id> [--run-id R] [--json]
                                         A run's manifest: steps, plugin versions, params hashes,
                                         input and output digests, timings, cache hits
  mlpipe lineage <sha256-prefix | artifact-uri> [--json]
                                         Where an artifact came from (producing steps, their inputs,
                                         recursively) and which steps used it
  mlpipe artifacts get <sha256 | workflow-id/step.output> -o FILE
                                         Write an artifact (digest checked) to FILE (- for stdout)
  mlpipe show <sha256 | workflow-id/step.output> [--rows N]
                                         Preview an artifact: Parquet schema, rows and first rows;
                                         JSON; an evaluation's metrics; an ONNX model's contract
  mlpipe drift <reference> <current> [--json F] [--html F] [--columns a,b] [--stattest T]
             [--threshold X] [--drift-share S] [--column name:test[:threshold]] [--fail-on-drift]
                                         Evidently-compatible data drift between two Parquet/CSV/JSONL
                                         files; exit 1 with --fail-on-drift when the dataset drifted
  mlpipe hpo <pipeline> [overrides...] [--trials N] [--parallel P] [--worker] [--json] [--detach]
                                         Hyperparameter search of the pipeline's hpo: section (trials
                                         as child workflows), then a final run with the best config
  mlpipe trial --pipeline <name> [--<param> <value> | --<param>=<value>]...
                                         A Vertex AI tuning trial: run to the hpo metric step, report
                                         the metric in cloudml-hypertune's file format
  mlpipe monitor <pipeline> [overrides...] [--worker] [--json]
                                         One drift check of the pipeline's monitor: section now
  mlpipe serve <name@alias | models:/name/N | model.onnx | gs://... | --run WORKFLOW-ID> [--port 8080] [--host H]
             [--no-log] [--log-sample S] [--max-body 1mb] [--max-instances N] [--watch 30s]
                                         HTTP prediction server (onnxruntime): POST /predict,
                                         GET /health, /metrics, /model; logs predictions for drift
  mlpipe promote <name> <version> [--alias champion]
                                         Point a registered model's alias at a version
  mlpipe rollback <name> [--alias champion] [--to N] [--history]
                                         Move the alias back to its previous holder
  mlpipe schedule create <pipeline> --every 1h [--id ID] [--workflow monitor|pipeline] [--paused]
  mlpipe schedule list | describe <id> | pause <id> | unpause <id> | trigger <id> | delete <id>
                                         Temporal Schedules of drift monitors (or pipeline runs)
  mlpipe gc [--older-than 7d] [--dry-run] [--json]
                                         Delete stored objects no manifest references, older than N

<pipeline> is a name (pipelines/<name>.yaml) or a path to a YAML file. 'mlpipe <command> --help' (or
'mlpipe help <command>') shows a command's arguments and options.
Overrides: model=wide  training.lr=0.01  +new.key=1  ++key=1  ~key  params.name=value

Environment: TEMPORAL_ADDRESS (localhost:7233), TEMPORAL_NAMESPACE (default), MLPIPE_TASK_QUEUE (${DEFAULT_TASK_QUEUE}),
MLPIPE_PROJECT_DIR (cwd), MLPIPE_ARTIFACTS (<project>/.mlpipe/artifacts, or gs://bucket/prefix), TEMPORAL_CLI,
MLPIPE_LOG_LEVEL, MLPIPE_GCS_ENDPOINT (a GCS emulator), MLPIPE_GCS_CACHE_MAX_BYTES (local cache bound, 10 GiB).
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const settings = loadSettings();
  try {
    const helpOf =
      command === 'help'
        ? rest[0]
        : rest.slice(0, (rest.indexOf('--') + 1 || rest.length + 1) - 1).some((a) => a === '--help' || a === '-h')
          ? command
          : undefined;
    if (helpOf) {
      const text = commandHelp(helpOf);
      if (!text) throw usageError(`Unknown command '${helpOf}'.`);
      out(text);
      return 0;
    }
    switch (command) {
      case 'run': {
        const { cmdRun } = await import('./run-command.js');
        await (await import('./shared.js')).installRuntime('ERROR', true);
        return await cmdRun(rest, settings);
      }
      case 'validate':
        return await (await import('./pipeline-command.js')).cmdValidate(rest, settings);
      case 'graph':
        return await (await import('./pipeline-command.js')).cmdGraph(rest, settings);
      case 'worker': {
        const { cmdWorker } = await import('./dev-command.js');
        await (await import('./shared.js')).installRuntime();
        return await cmdWorker(rest, settings);
      }
      case 'dev': {
        const { cmdDev } = await import('./dev-command.js');
        await (await import('./shared.js')).installRuntime();
        return await cmdDev(rest, settings);
      }
      case 'ui':
        return await (await import('./ui-command.js')).cmdUi(rest, settings);
      case 'status':
        return await (await import('./run-command.js')).cmdStatus(rest, settings);
      case 'cancel':
        return await (await import('./run-command.js')).cmdCancel(rest, settings);
      case 'plugins':
        return await (await import('./pipeline-command.js')).cmdPlugins(rest, settings);
      case 'init':
        return await (await import('./init-command.js')).cmdInit(rest);
      case 'pipelines':
        for (const p of (await import('../app/project.js')).listPipelines(settings.projectDir)) out(p);
        return 0;
      case 'runs':
        return await (await import('./store-commands.js')).cmdRuns(rest, settings);
      case 'lineage':
        return await (await import('./store-commands.js')).cmdLineage(rest, settings);
      case 'gc':
        return await (await import('./store-commands.js')).cmdGc(rest, settings);
      case 'artifacts':
        return await (await import('./artifact-commands.js')).cmdArtifacts(rest, settings);
      case 'show':
        return await (await import('./artifact-commands.js')).cmdShow(rest, settings);
      case 'drift':
        return await (await import('./drift-command.js')).cmdDrift(rest, settings);
      case 'schedule':
        return await (
          await import('./schedule-command.js')
        ).cmdSchedule(rest, settings, async () => (await import('./shared.js')).connect(settings));
      case 'hpo': {
        const { cmdHpo } = await import('./run-command.js');
        await (await import('./shared.js')).installRuntime('ERROR');
        return await cmdHpo(rest, settings);
      }
      case 'trial': {
        const { installRuntime, startBackgroundWorker } = await import('./shared.js');
        await installRuntime('ERROR');
        return await (await import('./trial-command.js')).cmdTrial(rest, settings, startBackgroundWorker);
      }
      case 'serve':
        return await (await import('./serve-command.js')).cmdServe(rest, settings);
      case 'promote':
        return await (await import('./serve-command.js')).cmdPromote(rest, settings);
      case 'rollback':
        return await (await import('./serve-command.js')).cmdRollback(rest, settings);
      case 'monitor': {
        const { cmdMonitor } = await import('./run-command.js');
        await (await import('./shared.js')).installRuntime('ERROR');
        return await cmdMonitor(rest, settings);
      }
      case 'demo': {
        const { cmdDemo } = await import('./dev-command.js');
        await (await import('./shared.js')).installRuntime('ERROR', true);
        return await cmdDemo(rest, settings);
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(HELP);
        return command === undefined ? 2 : 0;
      default:
        throw usageError(`Unknown command '${command}'.`);
    }
  } catch (e) {
    if (e instanceof PipelineError) {
      err(e.format());
      return e.code === 'TOOL_MISSING' || e.code === 'PORT_IN_USE' ? 3 : 2;
    }
    // Options node:util parseArgs or a zod schema refused: the same INPUT_INVALID.
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err(usageError((e as Error).message).format());
      return 2;
    }
    // A zod schema refused (zod is loaded here only then).
    if (e instanceof (await import('zod')).z.ZodError) {
      err(usageError(`Invalid option: ${formatZodIssues(e.issues)}`).format());
      return 2;
    }
    throw e;
  }
}
