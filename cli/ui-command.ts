/**
 * `mlpipe ui`: the web UI over the project's Temporal server and artifact store (ui/server.ts),
 * and the same server for `mlpipe dev`.
 */
import { Client, Connection } from '@temporalio/client';
import { parseArgs } from 'node:util';
import type { Settings } from '../app/project.js';
import { authFromEnv, MlflowRestClient, redact } from '../adapters/mlflow/rest.js';
import { PipelineError } from '../engine/errors.js';
import { startUiServer, type UiServer } from '../ui/server.js';
import { openStore } from './store-commands.js';

const out = (s: string): boolean => process.stdout.write(`${s}\n`);

import { DEFAULT_UI_PORT } from '../ui/port.js';

export { DEFAULT_UI_PORT };

/** Starts the UI server; Temporal is connected on the first request that needs it (and again after a failure). */
export async function startUi(settings: Settings, options: { port?: number; host?: string } = {}): Promise<UiServer> {
  const connect = async (): Promise<Client> => {
    const connection = await Connection.connect({ address: settings.temporalAddress, connectTimeout: 3000 });
    return new Client({ connection, namespace: settings.namespace });
  };
  try {
    return await startUiServer({
      connect,
      temporalAddress: settings.temporalAddress,
      store: openStore(settings),
      // The registry of a tracking server (a file store has none): few attempts, so an unreachable one is said soon.
      ...(settings.trackingUri && /^https?:\/\//.test(settings.trackingUri)
        ? { mlflow: new MlflowRestClient({ uri: settings.trackingUri, auth: authFromEnv(), maxAttempts: 2, timeoutMs: 5000 }) }
        : {}),
      host: options.host ?? '127.0.0.1',
      port: options.port ?? DEFAULT_UI_PORT,
    });
  } catch (e) {
    if ((e as { code?: string }).code === 'EADDRINUSE')
      throw new PipelineError(
        'PORT_IN_USE',
        `Port ${options.port ?? DEFAULT_UI_PORT} is already in use, so the mlpipe UI cannot listen on it.`,
        {
          hint: 'Pick another with --port N (mlpipe dev: --web-port N).',
        },
      );
    throw e;
  }
}

export async function cmdUi(argv: string[], settings: Settings): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { port: { type: 'string', default: String(DEFAULT_UI_PORT) }, host: { type: 'string', default: '127.0.0.1' } },
  });
  const port = Number(values.port);
  if (!/^\d+$/.test(values.port) || port < 0 || port > 65535)
    throw new PipelineError('INPUT_INVALID', `--port '${values.port}' is not a port number (0-65535).`);
  const ui = await startUi(settings, { port, host: values.host });
  const registry = settings.trackingUri && /^https?:\/\//.test(settings.trackingUri) ? `, registry ${redact(settings.trackingUri)}` : '';
  out(`mlpipe UI: ${ui.url} (Temporal ${settings.temporalAddress}, artifacts ${settings.artifactsDir}${registry}). Ctrl-C stops it.`);
  if (values.host !== '127.0.0.1' && values.host !== 'localhost')
    out('note: the UI has no login; anyone who reaches this address can see runs and artifacts and cancel runs.');
  await new Promise<void>((resolve) => {
    const stop = (): void => void ui.stop().then(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}
