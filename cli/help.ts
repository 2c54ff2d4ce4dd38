/**
 * Help of each `mlpipe` subcommand: `mlpipe <command> --help` and `mlpipe help <command>`.
 * Each entry: the usage line(s), what the command does, its arguments and options.
 */
import { DEFAULT_TASK_QUEUE } from '../engine/contracts.js';

/** What `mlpipe demo` runs without a pipeline argument: the housing data, three model families and the selection of the best. */
export const DEMO_PIPELINE = 'california-housing-models';

interface CommandHelp {
  usage: string[];
  summary: string;
  args?: [string, string][];
  options?: [string, string][];
}

const PIPELINE: [string, string] = ['<pipeline>', 'a name (pipelines/<name>.yaml) or a path to a YAML file'];
const OVERRIDES: [string, string] = ['[overrides...]', 'model=wide  training.lr=0.01  +new.key=1  ++key=1  ~key  params.name=value'];

export const COMMAND_HELP: Record<string, CommandHelp> = {
  init: {
    usage: ['mlpipe init [dir]'],
    summary:
      'Scaffold a project that uses the installed mlpipe: package.json (or the missing parts of an existing one), pipelines/example.yaml with a project plugin, conf/, mlpipe.plugins.ts, a vitest test of the plugin (mlpipe/testing), tsconfig.json, .gitignore, README.md. Existing files are kept.',
    args: [['[dir]', 'the project folder (default: the current folder; created when missing)']],
  },
  run: {
    usage: ['mlpipe run <pipeline> [overrides...] [options]'],
    summary:
      'Compile the pipeline here and start a run that carries it (the spec, its config files, the plugin versions; the project files its steps read go to the artifact store), so a worker elsewhere needs the plugins only. Follow it, print outputs. Exit 0 when it succeeded, 1 when it failed or was cancelled. SIGINT / SIGTERM cancel the run (twice: stop waiting).',
    args: [PIPELINE, OVERRIDES],
    options: [
      ['--worker', 'also run a worker in this process while the run lasts'],
      ['--by-name', "send only the pipeline's name: the workers run their own copy from their project"],
      ['--no-cache', 'do not reuse cached step results'],
      ['--max-parallel N', 'at most N steps at once'],
      ['--label k=v', 'attach a label (repeatable)'],
      ['--id ID', 'workflow ID (default <pipeline>-<random>)'],
      ['--detach', 'start and print the workflow ID, do not wait'],
      ['--json', 'print the result as JSON'],
      ['--wait-tracking', "wait until the run's tracking is in MLflow (otherwise it continues in its own workflow after exit)"],
    ],
  },
  validate: {
    usage: ['mlpipe validate <pipeline> [overrides...] [--show-config] [--json]'],
    summary: 'Compile the pipeline and report problems (file, line, key, hint); starts nothing.',
    args: [PIPELINE, OVERRIDES],
    options: [
      ['--show-config', 'print the resolved params and config'],
      ['--json', 'print the compiled pipeline as JSON'],
    ],
  },
  graph: {
    usage: ['mlpipe graph <pipeline> [overrides...]'],
    summary: 'Print the DAG as a Mermaid flowchart.',
    args: [PIPELINE, OVERRIDES],
  },
  worker: {
    usage: ['mlpipe worker [--task-queue Q] [--trust-submitted-pipelines]'],
    summary: 'Serve pipelines on a task queue until SIGINT / SIGTERM.',
    options: [
      ['--task-queue Q', `the task queue (default $MLPIPE_TASK_QUEUE or ${DEFAULT_TASK_QUEUE})`],
      [
        '--trust-submitted-pipelines',
        'run the code-running steps (util.shell, env:) of pipelines sent with the run (or MLPIPE_TRUST_SUBMITTED_PIPELINES=1): anyone who can start workflows on the queue may then run commands here',
      ],
    ],
  },
  dev: {
    usage: [
      'mlpipe dev [--port 7233] [--ui-port 8233] [--db FILE] [--mlflow-port 5000] [--no-mlflow] [--registry] [--web-port 8234] [--no-web]',
    ],
    summary:
      'A Temporal dev server (SQLite file), a worker, the mlpipe UI and, over the MLflow file store (or with --registry an MLflow server), the MLflow UI. Exit 3 when a port is taken.',
    options: [
      ['--port P', 'Temporal frontend port (default 7233)'],
      ['--ui-port P', 'Temporal Web UI port (default port + 1000)'],
      ['--db FILE', 'SQLite file (default .mlpipe/temporal.db)'],
      ['--mlflow-port P', 'MLflow UI port (default 5000)'],
      ['--no-mlflow', 'do not start the MLflow UI'],
      ['--registry', 'run an MLflow tracking server with a model registry (sqlite in .mlpipe/, served artifacts) and track to it'],
      ['--web-port P', 'mlpipe UI port (default 8234, on 127.0.0.1)'],
      ['--no-web', 'do not start the mlpipe UI'],
    ],
  },
  ui: {
    usage: ['mlpipe ui [--port 8234] [--host 127.0.0.1]'],
    summary:
      'The web UI over TEMPORAL_ADDRESS and the artifact store: runs (filter by pipeline, status, label), each run as a live DAG with a timeline, per step its plugin, params, attempts, progress, cache provenance, inputs and outputs (cancel from the page), artifact previews (Parquet, JSON, metrics, ONNX contract, drift HTML, download), training curves, runs compared. Stops on SIGINT / SIGTERM.',
    options: [
      ['--port P', 'port (default 8234; 0 picks a free one)'],
      ['--host H', 'address to bind (default 127.0.0.1; the UI has no login, so bind other addresses only on a trusted network)'],
    ],
  },
  status: { usage: ['mlpipe status <workflow-id>'], summary: 'Live status of a run.', args: [['<workflow-id>', 'the run to show']] },
  cancel: {
    usage: ['mlpipe cancel <workflow-id>'],
    summary: 'Cancel a run (running steps are cancelled).',
    args: [['<workflow-id>', 'the run to cancel']],
  },
  plugins: {
    usage: ['mlpipe plugins [name]'],
    summary: "List plugins (built-in and the project's mlpipe.plugins.ts), or show one plugin's params.",
    args: [['[name]', 'a plugin, e.g. train.mlp']],
  },
  pipelines: { usage: ['mlpipe pipelines'], summary: 'List the pipelines in pipelines/.' },
  demo: {
    usage: ['mlpipe demo [pipeline] [overrides...] [run options]'],
    summary: 'Start what is needed (a dev server when none is reachable) and run a pipeline with a worker in this process.',
    args: [['[pipeline]', `default ${DEMO_PIPELINE}; forecast-unemployment is the forecasting example`], OVERRIDES],
  },
  runs: {
    usage: ['mlpipe runs list [--limit N] [--json]', 'mlpipe runs show <workflow-id> [--run-id R] [--json]'],
    summary:
      'Runs recorded in the artifact store, newest first, with their status; or one run: steps, plugin versions, params hashes, digests, timings, cache hits.',
    args: [['<workflow-id>', 'the run to show']],
    options: [
      ['--limit N', 'at most N runs (default 20)'],
      ['--run-id R', 'which run of the workflow ID (default the newest)'],
      ['--json', 'print JSON'],
    ],
  },
  lineage: {
    usage: ['mlpipe lineage <sha256-prefix | artifact-uri> [--json]'],
    summary: 'Where an artifact came from (every producing step, newest first, their inputs, recursively) and which steps used it.',
    args: [['<sha256-prefix | artifact-uri>', 'at least 6 hex digits, or an object URI ending in objects/sha256/ab/cdef...']],
    options: [['--json', 'print the lineage tree as JSON']],
  },
  drift: {
    usage: ['mlpipe drift <reference> <current> [options]'],
    summary: 'Evidently-compatible data drift between two Parquet/CSV/JSONL files.',
    args: [
      ['<reference>', 'the reference data file'],
      ['<current>', 'the current data file'],
    ],
    options: [
      ['--json F / --html F', 'write the report as JSON / HTML'],
      ['--columns a,b', 'only these columns'],
      ['--stattest T', 'the test for every column'],
      ['--threshold X', "the test's threshold"],
      ['--drift-share S', 'share of drifted columns that makes the dataset drifted'],
      ['--column name:test[:threshold]', 'a test for one column (repeatable)'],
      ['--fail-on-drift', 'exit 1 when the dataset drifted'],
    ],
  },
  hpo: {
    usage: ['mlpipe hpo <pipeline> [overrides...] [--trials N] [--parallel P] [--worker] [--json] [--detach]'],
    summary: "Hyperparameter search of the pipeline's hpo: section (trials as child workflows), then a final run with the best config.",
    args: [PIPELINE, OVERRIDES],
    options: [
      ['--trials N', 'number of trials (default from the spec)'],
      ['--parallel P', 'trials at once (default from the spec)'],
      ['--worker', 'also run a worker in this process'],
      ['--id ID', 'workflow ID'],
      ['--detach', 'start and do not wait'],
      ['--json', 'print the result as JSON'],
    ],
  },
  trial: {
    usage: ['mlpipe trial --pipeline <name> [--<param> <value> | --<param>=<value>]...'],
    summary: "A Vertex AI tuning trial: run to the hpo metric step, report the metric in cloudml-hypertune's file format.",
    options: [
      ['--pipeline NAME', 'the pipeline'],
      ['--<param> V', 'a value of the hpo space'],
    ],
  },
  monitor: {
    usage: ['mlpipe monitor <pipeline> [overrides...] [--worker] [--json] [--id ID]'],
    summary: "One drift check of the pipeline's monitor: section now.",
    args: [PIPELINE, OVERRIDES],
    options: [
      ['--worker', 'also run a worker in this process'],
      ['--id ID', 'workflow ID'],
      ['--json', 'print the result as JSON'],
    ],
  },
  artifacts: {
    usage: ['mlpipe artifacts get <sha256 | workflow-id/step.output> -o FILE'],
    summary:
      "Write an artifact's bytes (checked against its digest) to FILE, or to standard output with -o -. A step output that is JSON is written as JSON.",
    args: [
      ['<artifact>', "a digest (sha256:3f9a1c…, at least 6 hex digits) or a run's step output (california-housing-2c896c09/train.model)"],
    ],
    options: [['-o, --output FILE', 'where to write it (- for standard output)']],
  },
  show: {
    usage: ['mlpipe show <sha256 | workflow-id/step.output> [--rows N]'],
    summary:
      "Preview an artifact: a Parquet dataset's schema, row count and first rows (DuckDB); JSON pretty-printed; an evaluation's metrics table; an ONNX model's contract.",
    args: [['<artifact>', "a digest or a run's step output, as for 'mlpipe artifacts get'"]],
    options: [['--rows N', 'first rows of a dataset to show (default 10)']],
  },
  serve: {
    usage: ['mlpipe serve <name@alias | models:/name/N | model.onnx | gs://...> [options]', 'mlpipe serve --run <workflow-id> [options]'],
    summary:
      'HTTP prediction server (onnxruntime): POST /predict (records, or for a forecaster {series, history}), GET /health, /metrics, /model; logs predictions for drift. Exit 3 when the port is taken.',
    args: [['<model>', 'a registered model (name@alias, models:/name/N), an ONNX file or gs:// path']],
    options: [
      ['--run ID', 'serve the ONNX model the run of this workflow ID exported (from the artifact store)'],
      ['--port P', 'default 8080 (or $AIP_HTTP_PORT, $PORT)'],
      ['--host H', 'default 127.0.0.1'],
      ['--no-log', 'do not log predictions'],
      ['--log-sample S', 'log this share of predictions, in (0, 1]'],
      ['--max-body SIZE', 'largest request body (default 1mb)'],
      ['--max-instances N', 'most instances a request'],
      ['--watch D', 'how often to check the alias (default 30s, 0 off)'],
    ],
  },
  promote: {
    usage: ['mlpipe promote <name> <version> [--alias champion] [--reason TEXT]'],
    summary: "Point a registered model's alias at a version (recorded in the alias history).",
    args: [
      ['<name>', 'the registered model'],
      ['<version>', 'the version number'],
    ],
    options: [
      ['--alias A', 'default champion'],
      ['--reason TEXT', 'recorded with the move'],
    ],
  },
  rollback: {
    usage: ['mlpipe rollback <name> [--alias champion] [--to N] [--history]'],
    summary: 'Move the alias back to its previous holder, or show its history.',
    args: [['<name>', 'the registered model']],
    options: [
      ['--alias A', 'default champion'],
      ['--to N', 'roll back to this version'],
      ['--history', "print the alias's moves (version, who held it before, why)"],
    ],
  },
  schedule: {
    usage: [
      'mlpipe schedule create <pipeline> [overrides...] --every 1h [--id ID] [--workflow monitor|pipeline] [--paused] [--note T]',
      'mlpipe schedule list [--json] | describe <id> | pause <id> | unpause <id> | trigger <id> | delete <id>',
    ],
    summary: 'Temporal Schedules of drift monitors (or pipeline runs).',
    args: [PIPELINE, ['<id>', 'a schedule ID (see schedule list)']],
    options: [
      ['--every D', 'interval, at least 1s (15m, 1h, 1d)'],
      ['--id ID', 'schedule ID (default monitor-<pipeline> or run-<pipeline>)'],
      ['--workflow W', 'monitor (default when the pipeline has a monitor: section) or pipeline'],
      ['--paused', 'create it paused'],
      ['--note T', 'a note (also for pause / unpause)'],
      ['--json', 'list as JSON'],
    ],
  },
  gc: {
    usage: ['mlpipe gc [--older-than 7d] [--dry-run] [--json]'],
    summary: 'Delete stored objects no manifest references, older than the bound.',
    options: [
      ['--older-than D', 'only objects older than this (default 7d)'],
      ['--dry-run', 'report, delete nothing'],
      ['--json', 'print the report as JSON'],
    ],
  },
};

/** The help text of one command, or undefined when there is no such command. */
export function commandHelp(command: string): string | undefined {
  const h = Object.hasOwn(COMMAND_HELP, command) ? COMMAND_HELP[command] : undefined;
  if (!h) return undefined;
  const table = (rows: [string, string][]): string => {
    const width = Math.max(...rows.map(([k]) => k.length));
    return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
  };
  const parts = [`Usage:\n${h.usage.map((u) => `  ${u}`).join('\n')}`, h.summary];
  if (h.args?.length) parts.push(`Arguments:\n${table(h.args)}`);
  if (h.options?.length) parts.push(`Options:\n${table([...h.options, ['--help, -h', 'show this help']])}`);
  else parts.push(`Options:\n${table([['--help, -h', 'show this help']])}`);
  return parts.join('\n\n');
}
