/**
 * `mlpipe serve <model>`: an HTTP prediction server over an exported ONNX model, and
 * `mlpipe promote` / `mlpipe rollback`: moving a registered model's alias by hand.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createTrackingBackend, modelRegistryOf } from '../adapters/mlflow/index.js';
import type { Settings } from '../app/project.js';
import { startPredictionServer, type ServedModel } from '../serve/server.js';
import { parseGsUri, storageFromEnv } from '../adapters/gcs-store.js';
import { parseDuration } from '../engine/duration.js';
import { PipelineError } from '../engine/errors.js';
import type { ArtifactStore, ModelRegistry, ModelVersionInfo } from '../engine/ports.js';
import { PredictionLogWriter } from '../engine/prediction-log.js';
import { aliasHistory, moveAlias, rollbackAlias } from '../engine/promotion.js';
import { portInUse } from '../dev/temporal-server.js';
import { openStore } from './store-commands.js';
import { formatOf } from './artifact-commands.js';
import { runsOf } from '../engine/lineage.js';
import { isArtifactRef } from '../engine/types.js';
import { importOptional } from '../adapters/optional.js';
import { isForecastContract } from '../adapters/onnx/contract.js';
import { forecastCodec } from '../lib/forecast-input.js';

const out = (s: string): boolean => process.stdout.write(`${s}\n`);

/** `name@alias`, `models:/name@alias`, `models:/name/3`: a registered model reference. */
export function parseModelRef(ref: string): { name: string; alias?: string; version?: string } | undefined {
  if (ref.endsWith('.onnx')) return undefined;
  const m = /^(?:models:\/)?([^@/\s]+)(?:@([\w-]+)|\/(\d+))$/.exec(ref);
  if (!m || (!m[2] && !m[3])) return undefined;
  return { name: m[1]!, ...(m[2] ? { alias: m[2] } : {}), ...(m[3] ? { version: m[3] } : {}) };
}

function registryFor(settings: Settings): ModelRegistry {
  const registry = settings.trackingUri ? modelRegistryOf(createTrackingBackend(settings.trackingUri)) : undefined;
  if (!registry) {
    throw new PipelineError(
      'TRACKING_ERROR',
      `Registered models need an MLflow tracking server; MLFLOW_TRACKING_URI is ${settings.trackingUri ? `'${settings.trackingUri}' (no registry)` : 'not set'}.`,
      {
        hint: 'export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (mlpipe dev starts one), or serve a .onnx file by path.',
      },
    );
  }
  return registry;
}

async function findVersion(registry: ModelRegistry, ref: { name: string; alias?: string; version?: string }): Promise<ModelVersionInfo> {
  const mv = ref.alias ? await registry.byAlias(ref.name, ref.alias) : await registry.version(ref.name, ref.version!);
  if (!mv) {
    throw new PipelineError(
      'INPUT_INVALID',
      `Registered model '${ref.name}' has no ${ref.alias ? `version aliased '${ref.alias}'` : `version ${ref.version}`} in ${registry.location}.`,
      {
        hint: ref.alias === 'champion' ? `Promote one: mlpipe promote ${ref.name} <version>` : 'Check the name and alias in the MLflow UI.',
      },
    );
  }
  return mv;
}

/** The ONNX bytes and identity of what `ref` names. */
export async function resolveModel(ref: string, settings: Settings): Promise<{ bytes: Uint8Array; model: ServedModel }> {
  const registered = parseModelRef(ref);
  if (registered) {
    const registry = registryFor(settings);
    const mv = await findVersion(registry, registered);
    const file = mv.tags['mlpipe.file'] ?? 'model.onnx';
    if (!file.endsWith('.onnx'))
      throw new PipelineError(
        'INPUT_INVALID',
        `Version ${mv.version} of '${mv.name}' holds ${file}, not an ONNX model; register the export.onnx output.`,
      );
    const bytes = await registry.readFile(mv, file);
    return { bytes, model: { name: mv.name, version: mv.version, source: `${mv.source}/${file}` } };
  }
  if (ref.startsWith('gs://')) {
    const { bucket, prefix } = parseGsUri(ref);
    const object = prefix.endsWith('.onnx') ? prefix : `${prefix.replace(/\/$/, '')}/model.onnx`;
    const [bytes] = await storageFromEnv().bucket(bucket).file(object).download();
    // gs://…/housing/model.onnx is named after its folder (housing), gs://…/housing.onnx after the file.
    const folder = dirname(object);
    const name = basename(object, '.onnx') === 'model' ? (folder === '.' ? 'model' : basename(folder)) : basename(object, '.onnx');
    return { bytes, model: { name, version: 'file', source: `gs://${bucket}/${object}` } };
  }
  const path = resolve(settings.projectDir, ref.replace(/^file:\/\//, ''));
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new PipelineError(
      'INPUT_INVALID',
      `Cannot read the model ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`,
      {
        hint: 'Give a .onnx file (export.onnx output), gs://bucket/path/model.onnx, or a registered model as name@alias / models:/name/<version>.',
      },
    );
  }
  return { bytes, model: { name: basename(path, '.onnx'), version: 'file', source: path } };
}

/**
 * The ONNX model a run exported (`mlpipe serve --run <workflow-id>`): the newest run recorded under
 * that ID, the output of its step that is an ONNX model (export.onnx's `onnx`), read by digest.
 */
export async function runModel(store: ArtifactStore, workflowId: string): Promise<{ bytes: Uint8Array; model: ServedModel }> {
  if (!workflowId || workflowId.length > 1000 || /[\u0000-\u001f\u007f]/.test(workflowId))
    throw new PipelineError('INPUT_INVALID', '--run needs a workflow ID.', { hint: "List recorded runs with 'mlpipe runs list'." });
  const view = (await runsOf(store, workflowId))[0];
  if (!view)
    throw new PipelineError('STORAGE_NOT_FOUND', `No run of '${workflowId}' is recorded in ${store.location}.`, {
      hint: "List recorded runs with 'mlpipe runs list'; check MLPIPE_ARTIFACTS points at the store the worker used.",
    });
  const models = view.steps
    .filter((s) => s.status === 'succeeded' || s.status === 'cached')
    .flatMap((s) =>
      Object.entries(s.outputs).flatMap(([output, v]) => (isArtifactRef(v) && formatOf(v) === 'onnx' ? [{ s, output, ref: v }] : [])),
    );
  const found = models.find((m) => m.s.uses === 'export.onnx') ?? models[0];
  if (!found)
    throw new PipelineError('INPUT_INVALID', `Run '${workflowId}' exported no ONNX model (no step output is one).`, {
      hint: 'Serve a run of a pipeline with an export.onnx step, e.g. california-housing.',
    });
  const bytes = await store.get(found.ref);
  const runId = view.run?.runId ?? found.s.runId;
  return {
    bytes,
    model: { name: view.run?.pipeline ?? workflowId, version: `run-${runId}`, source: `${workflowId}/${found.s.stepId}.${found.output}` },
  };
}

/** `512kb`, `4mb`, `1048576` in bytes; NaN when it is not a size. */
function parseSize(text: string): number {
  const m = /^(\d+)\s*(kb|kib|mb|mib)?$/i.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * ({ kb: 2 ** 10, kib: 2 ** 10, mb: 2 ** 20, mib: 2 ** 20 }[(m[2] ?? '').toLowerCase()] ?? 1);
}

export async function cmdServe(argv: string[], settings: Settings): Promise<number> {
  const env = process.env;
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      name: { type: 'string' },
      'no-log': { type: 'boolean' },
      'max-body': { type: 'string' },
      'max-instances': { type: 'string' },
      threads: { type: 'string' },
      watch: { type: 'string' },
      'log-sample': { type: 'string' },
      run: { type: 'string' },
    },
  });
  if (values.run !== undefined && positionals.length)
    throw new PipelineError('INPUT_INVALID', 'mlpipe serve takes a model or --run <workflow-id>, not both.');
  // On Vertex AI the container gets its port and model location from AIP_* variables.
  const ref = values.run !== undefined ? '' : (positionals[0] ?? env['MLPIPE_SERVE_MODEL'] ?? env['AIP_STORAGE_URI']);
  if (ref === undefined)
    throw new PipelineError('INPUT_INVALID', 'mlpipe serve needs a model.', {
      hint: 'mlpipe serve california-housing@champion | models:/california-housing/3 | path/to/model.onnx | --run <workflow-id>',
    });
  const port = Number(values.port ?? env['AIP_HTTP_PORT'] ?? env['PORT'] ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new PipelineError('INPUT_INVALID', `--port '${values.port}' is not a port number.`);
  const maxBody = values['max-body'] ? parseSize(values['max-body']) : 2 ** 20;
  if (!Number.isFinite(maxBody) || maxBody <= 0)
    throw new PipelineError('INPUT_INVALID', `--max-body '${values['max-body']}' is not a size (e.g. 512kb, 4mb).`);

  // Following an alias: check it every `watch` and switch to the version it points at.
  const registered = parseModelRef(ref);
  const aliasRef = registered?.alias ? registered : undefined;
  const watchMs = values.watch !== undefined ? parseDuration(values.watch) : aliasRef ? 30_000 : 0;
  if (watchMs === undefined)
    throw new PipelineError('INPUT_INVALID', `--watch '${values.watch}' is not a duration (e.g. 30s, 5m; 0 turns it off).`);

  const logSample = values['log-sample'] !== undefined ? Number(values['log-sample']) : 1;
  if (!(logSample > 0 && logSample <= 1))
    throw new PipelineError('INPUT_INVALID', `--log-sample '${values['log-sample']}' is not a share in (0, 1].`, {
      hint: '--log-sample 0.1 logs one prediction in ten.',
    });
  const threads = values.threads ? Number(values.threads) : 1;
  if (!Number.isInteger(threads) || threads < 1)
    throw new PipelineError('INPUT_INVALID', `--threads '${values.threads}' is not a positive whole number.`, { hint: '--threads 2' });
  const maxInstances = values['max-instances'] !== undefined ? Number(values['max-instances']) : undefined;
  if (maxInstances !== undefined && !(Number.isInteger(maxInstances) && maxInstances >= 1)) {
    throw new PipelineError('INPUT_INVALID', `--max-instances '${values['max-instances']}' is not a positive whole number.`, {
      hint: '--max-instances 1000 (default 10000)',
    });
  }
  const { loadOnnxModel } = await importOptional('onnxruntime-node', 'mlpipe serve', () => import('../adapters/onnx/runtime.js'));
  const { bytes, model } = values.run !== undefined ? await runModel(openStore(settings), values.run) : await resolveModel(ref, settings);
  if (values.name) model.name = values.name;
  const predictor = await loadOnnxModel(bytes, { threads });
  const store = values['no-log'] ? undefined : openStore(settings);
  const newLog = (version: string): PredictionLogWriter | undefined =>
    store
      ? new PredictionLogWriter(store, model.name, version, {
          writerId: `${env['HOSTNAME'] ?? 'local'}-${process.pid}`,
          onError: (e) => process.stderr.write(`prediction log: write failed, will retry: ${(e as Error).message}\n`),
        })
      : undefined;
  const log = newLog(model.version);
  const host = values.host ?? env['MLPIPE_SERVE_HOST'] ?? (env['AIP_HTTP_PORT'] ? '0.0.0.0' : '127.0.0.1');
  const server = await startPredictionServer({
    predictor,
    // An exported forecaster takes a history window per request (lib/forecast-input.ts).
    codecFor: (contract) => (isForecastContract(contract) ? forecastCodec(contract) : undefined),
    model,
    log,
    port,
    host,
    maxBodyBytes: maxBody,
    maxInstances,
    logSample,
  }).catch((e: unknown) => {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw portInUse(port, `prediction server on ${host}`, '--port');
    if (code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new PipelineError('PORT_IN_USE', `Cannot listen on ${host}:${port} (${code}).`, {
        hint: 'Ports below 1024 need privileges; --host must be an address of this machine.',
      });
    }
    throw e;
  });
  out(
    `serving ${model.name} version ${model.version} (${isForecastContract(predictor.contract) ? `a forecaster: ${predictor.contract.lookback} steps in, ${predictor.contract.horizon} out` : `${predictor.contract.inputs.length} inputs`}, sha256:${predictor.sha256.slice(0, 12)}) from ${model.source}`,
  );
  out(`listening on ${server.url}: POST /predict, GET /health, GET /metrics, GET /model`);
  out(
    store
      ? `prediction log: ${store.location} (records predictions/${model.name}/)${logSample < 1 ? `, ${logSample * 100}% of predictions` : ''}`
      : 'prediction log: off (--no-log)',
  );
  let served = model.version;
  let checking = false;
  const watcher =
    aliasRef && watchMs > 0
      ? setInterval(() => {
          if (checking) return;
          checking = true;
          (async () => {
            const registry = registryFor(settings);
            const now = await registry.byAlias(aliasRef.name, aliasRef.alias!);
            if (!now || now.version === served) return;
            const next = await resolveModel(ref, settings);
            if (values.name) next.model.name = values.name;
            const nextPredictor = await loadOnnxModel(next.bytes, { threads });
            out(
              `${aliasRef.name}@${aliasRef.alias} moved to version ${next.model.version}: serving it (sha256:${nextPredictor.sha256.slice(0, 12)}) instead of version ${served}`,
            );
            served = next.model.version;
            await server.swap({ predictor: nextPredictor, model: next.model, log: newLog(next.model.version) });
          })()
            .catch((e: unknown) => process.stderr.write(`watching ${ref}: ${(e as Error).message} (still serving version ${served})\n`))
            .finally(() => (checking = false));
        }, watchMs)
      : undefined;
  if (watcher) out(`following ${ref}: checked every ${watchMs / 1000}s`);
  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      out('stopping: finishing requests and writing the prediction log');
      resolveStop();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  if (watcher) clearInterval(watcher);
  await server.close();
  return 0;
}

export async function cmdPromote(argv: string[], settings: Settings): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { alias: { type: 'string', default: 'champion' }, reason: { type: 'string' } },
  });
  const [name, version] = positionals;
  if (!name || !version || !/^\d+$/.test(version))
    throw new PipelineError('INPUT_INVALID', 'mlpipe promote needs a registered model and a version number.', {
      hint: 'mlpipe promote california-housing 3 [--alias champion]',
    });
  const registry = registryFor(settings);
  if (!(await registry.version(name, version)))
    throw new PipelineError('INPUT_INVALID', `Registered model '${name}' has no version ${version}.`);
  const r = await moveAlias(registry, name, values.alias!, version, 'promote', values.reason ?? 'promoted by hand (mlpipe promote)');
  out(
    r.moved
      ? `${name}@${values.alias} -> version ${version} (was ${r.previous ?? 'unset'})`
      : `${name}@${values.alias} is version ${version} already`,
  );
  return 0;
}

export async function cmdRollback(argv: string[], settings: Settings): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { alias: { type: 'string', default: 'champion' }, to: { type: 'string' }, history: { type: 'boolean' } },
  });
  const [name] = positionals;
  if (!name)
    throw new PipelineError('INPUT_INVALID', 'mlpipe rollback needs a registered model.', {
      hint: 'mlpipe rollback california-housing [--alias champion] [--to <version>]',
    });
  const registry = registryFor(settings);
  if (values.history) {
    for (const m of await aliasHistory(registry, name, values.alias!))
      out(`${m.at}  ${m.action.padEnd(8)} version ${m.version} (before: ${m.previous ? `version ${m.previous}` : 'unset'})  ${m.reason}`);
    return 0;
  }
  const r = await rollbackAlias(registry, name, values.alias!, values.to);
  out(`${name}@${values.alias} -> version ${r.to} (rolled back from ${r.from})`);
  return 0;
}
