/** `mlpipe worker`, `dev`, `demo`: a worker, dev servers (Temporal, MLflow, the UI) in this process. */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { listPipelines, type Settings } from '../app/project.js';
import { redact } from '../adapters/mlflow/rest.js';
import { findMlflow, startMlflowServer, type MlflowServer } from '../dev/mlflow-server.js';
import { freePort, isListening, portInUse, requireTemporalCli, startDevServer, type DevServer } from '../dev/temporal-server.js';
import { PipelineError } from '../engine/errors.js';
import { DEMO_PIPELINE } from './help.js';
import type { startUi } from './ui-command.js';
import { out, usageError } from './output.js';
import { cmdRun } from './run-command.js';
import { DEFAULT_UI_PORT } from '../ui/port.js';

export async function cmdWorker(argv: string[], settings: Settings): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { 'task-queue': { type: 'string' }, 'trust-submitted-pipelines': { type: 'boolean', default: false } },
  });
  const s = {
    ...settings,
    taskQueue: values['task-queue'] ?? settings.taskQueue,
    trustSubmitted: values['trust-submitted-pipelines'] || settings.trustSubmitted,
  };
  if (!(await isListening(s.temporalAddress))) {
    throw new PipelineError('TOOL_MISSING', `No Temporal server at ${s.temporalAddress}.`, {
      hint: "Start one with 'mlpipe dev', or set TEMPORAL_ADDRESS.",
    });
  }
  const { worker, connection } = await (await import('../app/worker.js')).createPipelineWorker({ settings: s });
  out(
    `worker polling task queue '${s.taskQueue}' on ${s.temporalAddress} (namespace ${s.namespace}, pid ${process.pid}); project ${s.projectDir}`,
  );
  if (s.trustSubmitted)
    out('trusting submitted pipelines: anyone who can start workflows on this task queue may run commands on this worker');
  await worker.run();
  await connection.close();
  return 0;
}

export function portOption(text: string, option: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535)
    throw new PipelineError('INPUT_INVALID', `${option} '${text}' is not a port number (1-65535).`);
  return n;
}

export async function cmdDev(argv: string[], settings: Settings): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', default: '7233' },
      'ui-port': { type: 'string' },
      db: { type: 'string' },
      'mlflow-port': { type: 'string', default: '5000' },
      'no-mlflow': { type: 'boolean', default: false },
      registry: { type: 'boolean', default: false },
      'web-port': { type: 'string', default: String(DEFAULT_UI_PORT) },
      'no-web': { type: 'boolean', default: false },
    },
  });
  if (values.registry && values['no-mlflow']) throw usageError('--registry runs an MLflow server; it cannot go with --no-mlflow.');
  const port = portOption(values.port, '--port');
  const webPort = portOption(values['web-port'], '--web-port');
  const uiPort = values['ui-port'] === undefined ? undefined : portOption(values['ui-port'], '--ui-port');
  const bin = requireTemporalCli(settings.cacheDir);
  const dbFile = values.db ?? join(settings.stateDir, 'temporal.db');
  const server = await startDevServer({
    bin,
    port,
    uiPort,
    dbFile,
    logFile: join(settings.stateDir, 'temporal.log'),
  });
  let registry: MlflowServer | undefined;
  try {
    registry = values.registry ? await startDevRegistry(settings, portOption(values['mlflow-port'], '--mlflow-port')) : undefined;
  } catch (e) {
    await server.stop();
    throw e;
  }
  const s = { ...settings, temporalAddress: server.address, ...(registry ? { trackingUri: registry.url } : {}) };
  const { worker, connection } = await (await import('../app/worker.js')).createPipelineWorker({ settings: s });
  out(`Temporal dev server on ${server.address} (state in ${dbFile})`);
  out(`Web UI: ${server.uiUrl}`);
  const mlflow = registry ?? (await startDevMlflow(settings, Number(values['mlflow-port']), values['no-mlflow']));
  const web = values['no-web'] ? undefined : await startDevWeb(s, webPort);
  out(`worker polling task queue '${s.taskQueue}'. Ctrl-C stops them all.`);
  const tracking = registry ? `MLFLOW_TRACKING_URI=${registry.url} ` : '';
  out(
    `try: TEMPORAL_ADDRESS=${server.address} ${tracking}${selfCommand(settings)} run ${listPipelines(settings.projectDir)[0] ?? '<pipeline>'}`,
  );
  if (registry) out(`then: ${tracking}${selfCommand(settings)} serve <model>@champion (and promote, rollback)`);
  await worker.run();
  await connection.close();
  await web?.stop();
  await server.stop();
  await mlflow?.stop();
  return 0;
}

/** The mlpipe UI for `mlpipe dev`; a port already taken is said and skipped (dev goes on without it). */
export async function startDevWeb(settings: Settings, port: number): Promise<Awaited<ReturnType<typeof startUi>> | undefined> {
  try {
    const web = await (await import('./ui-command.js')).startUi(settings, { port });
    out(`mlpipe UI: ${web.url}`);
    return web;
  } catch (e) {
    if (!(e instanceof PipelineError) || e.code !== 'PORT_IN_USE') throw e;
    out(`mlpipe UI: port ${port} is taken, so no UI was started (--web-port N; or 'mlpipe ui --port N' later).`);
    return undefined;
  }
}

/**
 * `mlpipe dev --registry`: an MLflow tracking server with a model registry in place of the file
 * store: a sqlite database and served artifacts under the project's .mlpipe/ (kept across restarts).
 * The worker of `mlpipe dev` tracks to it, so `deploy.mlflow-register`, `mlpipe serve name@champion`,
 * `mlpipe promote` and `mlpipe rollback` work with nothing else installed than the provisioned MLflow.
 */
export async function startDevRegistry(settings: Settings, port: number): Promise<MlflowServer> {
  const mlflow = findMlflow(settings.cacheDir);
  if (!mlflow)
    throw new PipelineError('TOOL_MISSING', 'mlpipe dev --registry needs MLflow, which was not found.', {
      hint: isCheckout(settings)
        ? "Run 'bash deploy/provision.sh --with-mlflow' (or 'npm run setup -- --with-mlflow'), or set MLPIPE_MLFLOW=/path/to/mlflow."
        : "Install it ('pip install mlflow'), put mlflow on PATH or set MLPIPE_MLFLOW=/path/to/mlflow.",
    });
  if (await isListening(`127.0.0.1:${port}`)) throw portInUse(port, 'MLflow server', '--mlflow-port');
  const db = join(settings.stateDir, 'mlflow.db');
  const artifactsDir = join(settings.stateDir, 'mlflow-artifacts');
  mkdirSync(settings.stateDir, { recursive: true });
  out(`starting an MLflow server with a model registry (sqlite ${db}; a new database takes a minute to set up)`);
  const server = await startMlflowServer({
    mlflow,
    backendStoreUri: `sqlite:///${db}`,
    artifactsDir,
    port,
    logFile: join(settings.stateDir, 'mlflow.log'),
  });
  out(`MLflow server and registry: ${server.url} (sqlite ${db}, artifacts ${artifactsDir})`);
  return server;
}

/**
 * The MLflow UI for `mlpipe dev`: with the default file store, a local `mlflow server` over the
 * project's mlruns/ (when MLflow is installed); with MLFLOW_TRACKING_URI set, just where runs go.
 */
export async function startDevMlflow(settings: Settings, port: number, disabled: boolean | undefined): Promise<MlflowServer | undefined> {
  if (!settings.trackingUri) {
    out('MLflow tracking: off (MLPIPE_TRACKING=off)');
    return undefined;
  }
  if (!settings.trackingUri.startsWith('file:')) {
    out(`MLflow tracking: ${redact(settings.trackingUri)}`);
    return undefined;
  }
  const root = settings.trackingUri.slice('file:'.length);
  const mlflow = disabled ? undefined : findMlflow(settings.cacheDir);
  if (!mlflow) {
    out(
      `MLflow tracking: ${root} (file store).${disabled ? '' : ` For the MLflow UI, ${isCheckout(settings) ? "run 'npm run setup -- --with-mlflow'" : "install MLflow ('pip install mlflow')"} (or put mlflow on PATH) and restart.`}`,
    );
    return undefined;
  }
  if (await isListening(`127.0.0.1:${port}`)) {
    out(`MLflow tracking: ${root} (file store); port ${port} is taken, so no MLflow UI was started (--mlflow-port N).`);
    return undefined;
  }
  const server = await startMlflowServer({ mlflow, backendStoreUri: `file:${root}`, port, logFile: join(settings.stateDir, 'mlflow.log') });
  out(`MLflow UI: ${server.url} (file store ${root})`);
  return server;
}

/** True in a checkout of mlpipe itself (its own pipelines are the project). */
export function isCheckout(settings: Settings): boolean {
  try {
    return (JSON.parse(readFileSync(join(settings.projectDir, 'package.json'), 'utf8')) as { name?: string }).name === 'mlpipe';
  } catch {
    return false;
  }
}

/** How to call mlpipe again from the project: the npm script in a checkout, npx in a user's project. */
export function selfCommand(settings: Settings): string {
  return isCheckout(settings) ? 'npm run mlpipe --' : 'npx mlpipe';
}

export async function cmdDemo(argv: string[], settings: Settings): Promise<number> {
  const pipeline = argv[0] && !argv[0].startsWith('-') && !argv[0].includes('=') ? argv[0] : DEMO_PIPELINE;
  const rest = argv[0] === pipeline ? argv.slice(1) : argv;
  let server: DevServer | undefined;
  let s = settings;
  let ui = process.env['MLPIPE_TEMPORAL_UI'];
  if (!(await isListening(settings.temporalAddress))) {
    const bin = requireTemporalCli(settings.cacheDir);
    // The database `mlpipe dev` uses too, so the run can be browsed afterwards.
    const dbFile = join(settings.stateDir, 'temporal.db');
    server = await startDevServer({ bin, dbFile, uiPort: await freePort(), logFile: join(settings.stateDir, 'temporal.log') });
    s = { ...settings, temporalAddress: server.address };
    ui = server.uiUrl;
    out(`started a Temporal dev server on ${server.address} (state in ${dbFile}, Web UI ${ui})`);
  } else out(`using the Temporal server at ${settings.temporalAddress}`);
  const workflowId = `${pipeline}-${randomUUID().slice(0, 8)}`;
  try {
    const code = await cmdRun([pipeline, '--worker', '--wait-tracking', '--id', workflowId, ...rest], s);
    out(`\nartifacts: ${s.artifactsDir}`);
    const path = `/namespaces/${s.namespace}/workflows/${workflowId}`;
    if (server) out(`Temporal Web UI: run '${selfCommand(s)} dev' (same database), then open http://127.0.0.1:8233${path}`);
    if (server && s.trackingUri?.startsWith('file:'))
      out(`MLflow UI: '${selfCommand(s)} dev' also serves ${s.trackingUri.slice(5)} at http://127.0.0.1:5000 when MLflow is installed`);
    else out(`Temporal Web UI: ${ui ?? 'http://localhost:8233'}${path}`);
    return code;
  } finally {
    await server?.stop();
  }
}
