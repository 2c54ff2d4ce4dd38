/**
 * The built-in plugins and the default registry. A project adds its own by building a registry from
 * `[...builtinPlugins, ...mine]`.
 */
import { read, write } from './builtin/artifacts.js';
import { echo } from './builtin/echo.js';
import { fetchFile } from './builtin/fetch.js';
import { flaky } from './builtin/flaky.js';
import { shell } from './builtin/shell.js';
import { sleep } from './builtin/sleep.js';
import { ingestFile } from './ingest/file.js';
import { split } from './process/split.js';
import { sql } from './process/sql.js';
import { applyTransform, transform } from './process/transform.js';
import { window } from './process/window.js';
import { validateExpectations } from './validate/expectations.js';
import { evaluateModel } from './evaluate/model.js';
import { evaluateSelect } from './evaluate/select.js';
import { evaluateForecast } from './evaluate/forecast.js';
import { trainMlp } from './train/mlp.js';
import { trainSequence } from './train/sequence.js';
import { trainLightgbm, trainXgboost } from './train/boosting.js';
import { trainGbdtForecast } from './train/gbdt-forecast.js';
import { trainEts } from './train/ets.js';
import { trainForecastCombine } from './train/forecast-combine.js';
import { monitorDrift } from './monitor/drift.js';
import { exportOnnx } from './export/onnx.js';
import { mlflowRegister } from './deploy/mlflow-register.js';
import { vertexEndpoint } from './deploy/vertex-endpoint.js';
import { createRegistry, type Registry } from './registry.js';
import type { AnyPlugin } from './sdk.js';

export const builtinPlugins: AnyPlugin[] = [
  echo,
  sleep,
  flaky,
  shell,
  fetchFile,
  write,
  read,
  ingestFile,
  validateExpectations,
  sql,
  split,
  transform,
  applyTransform,
  window,
  trainMlp,
  trainSequence,
  trainXgboost,
  trainLightgbm,
  trainGbdtForecast,
  trainEts,
  trainForecastCombine,
  evaluateModel,
  evaluateSelect,
  evaluateForecast,
  monitorDrift,
  exportOnnx,
  mlflowRegister,
  vertexEndpoint,
];

export function createDefaultRegistry(extra: AnyPlugin[] = []): Registry {
  return createRegistry([...builtinPlugins, ...extra]);
}

export { createRegistry, type Registry } from './registry.js';
export { definePlugin } from './sdk.js';
