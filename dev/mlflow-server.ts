/**
 * A local `mlflow server` process: for `mlpipe dev` (the MLflow UI over the project's tracking
 * data) and for the tests (a real tracking server with a sqlite backend and served artifacts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { PipelineError } from '../engine/errors.js';

/** `mlflow` from MLPIPE_MLFLOW, else the provisioned virtualenv in the cache, else PATH. */
export function findMlflow(cacheDir: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env['MLPIPE_MLFLOW']) return existsSync(env['MLPIPE_MLFLOW']) ? env['MLPIPE_MLFLOW'] : undefined;
  const cached = join(cacheDir, 'mlflow-venv', 'bin', 'mlflow');
  if (existsSync(cached)) return cached;
  for (const dir of (env['PATH'] ?? '').split(delimiter)) if (dir && existsSync(join(dir, 'mlflow'))) return join(dir, 'mlflow');
  return undefined;
}

export interface MlflowServer {
  url: string;
  port: number;
  process: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface MlflowServerOptions {
  mlflow: string;
  /** sqlite:///abs/path.db, file:/abs/mlruns, ... */
  backendStoreUri: string;
  /** Served artifacts (mlflow-artifacts:/ URIs for new runs). */
  artifactsDir?: string;
  host?: string;
  port: number;
  /** Server output goes here (appended). */
  logFile?: string;
  /** How long to wait for /health (default 120 s: a fresh sqlite database runs its migrations). */
  readyTimeoutMs?: number;
}

export async function startMlflowServer(o: MlflowServerOptions): Promise<MlflowServer> {
  const host = o.host ?? '127.0.0.1';
  const args = ['server', '--backend-store-uri', o.backendStoreUri, '--host', host, '--port', String(o.port), '--workers', '1'];
  if (o.artifactsDir) {
    mkdirSync(o.artifactsDir, { recursive: true });
    args.push('--artifacts-destination', o.artifactsDir, '--serve-artifacts');
  }
  const out = o.logFile ? openSync(o.logFile, 'a') : 'ignore';
  const child = spawn(o.mlflow, args, {
    stdio: ['ignore', out, out],
    // Its own process group, so stop() also ends the gunicorn/uvicorn workers it forks.
    detached: true,
    env: { ...process.env, MLFLOW_ALLOW_FILE_STORE: 'true', PYTHONUNBUFFERED: '1' },
  });
  const url = `http://${host}:${o.port}`;
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      process.kill(-child.pid!, signal);
    } catch {
      child.kill(signal);
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + (o.readyTimeoutMs ?? 120_000);
  for (;;) {
    if (child.exitCode !== null)
      throw new PipelineError('TOOL_MISSING', `mlflow server exited with code ${child.exitCode}${o.logFile ? ` (log: ${o.logFile})` : ''}`);
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      await stop('SIGKILL');
      throw new PipelineError(
        'TOOL_MISSING',
        `mlflow server did not answer ${url}/health within ${(o.readyTimeoutMs ?? 120_000) / 1000}s${o.logFile ? ` (log: ${o.logFile})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  return { url, port: o.port, process: child, stop };
}
