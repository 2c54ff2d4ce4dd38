/** Picks the MLflow backend for a tracking URI: a tracking server over REST, or the file store. */
import { PipelineError } from '../../engine/errors.js';
import type { ModelRegistry, TrackingBackend } from '../../engine/ports.js';
import { MlflowModelRegistry } from './registry.js';
import { MlflowFileStore } from './file-store.js';
import { authFromEnv, MlflowRestClient, redact } from './rest.js';

export { MlflowFileStore } from './file-store.js';
export { MlflowRestClient, MlflowError, redact } from './rest.js';

export function createTrackingBackend(uri: string, env: NodeJS.ProcessEnv = process.env): TrackingBackend {
  if (/^https?:\/\//i.test(uri)) return new MlflowRestClient({ uri, auth: authFromEnv(env) });
  if (uri.startsWith('file:') || uri.startsWith('/') || uri.startsWith('.')) return new MlflowFileStore(uri);
  throw new PipelineError('CONFIG_INVALID', `MLFLOW_TRACKING_URI '${redact(uri)}' is not supported.`, {
    hint: 'Use http(s)://host:port for a tracking server, or file:/path/to/mlruns for the file store; MLPIPE_TRACKING=off turns tracking off.',
  });
}

/** The model registry behind a tracking backend: a tracking server has one, the file store none. */
export function modelRegistryOf(backend: TrackingBackend | undefined): ModelRegistry | undefined {
  return backend instanceof MlflowRestClient ? new MlflowModelRegistry(backend) : undefined;
}
