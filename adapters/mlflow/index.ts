/** Picks the MLflow backend for a tracking URI: a tracking server over REST, or the file store. */
import { PipelineError } from '../../engine/errors.js';
import type { TrackingBackend } from '../../engine/ports.js';
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
