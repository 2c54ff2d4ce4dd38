/**
 * The local Temporal dev server (`temporal server start-dev`): finding the CLI binary and running
 * it with a persistent SQLite file. Used by `mlpipe dev`, `mlpipe demo`, the tests and the bench.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, openSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { SEARCH_ATTRIBUTES } from '../engine/contracts.js';
import { PipelineError } from '../engine/errors.js';

export const TEMPORAL_CLI_VERSION = '1.5.1';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Temporal CLI: $TEMPORAL_CLI, else `temporal` on PATH, else the copy deploy/provision.sh built
 * into the cache (<cacheDir>/tools/bin/temporal).
 */
export function findTemporalCli(cacheDir: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const named = env['TEMPORAL_CLI'];
  if (named) return executable(named) ? named : undefined;
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (dir && executable(join(dir, 'temporal'))) return join(dir, 'temporal');
  }
  const cached = join(cacheDir, 'tools', 'bin', 'temporal');
  return executable(cached) ? cached : undefined;
}

export function requireTemporalCli(cacheDir: string): string {
  const bin = findTemporalCli(cacheDir);
  if (bin) return bin;
  throw new PipelineError(
    'TOOL_MISSING',
    'The Temporal CLI was not found (checked $TEMPORAL_CLI, PATH and ' + join(cacheDir, 'tools/bin/temporal') + ').',
    {
      hint: `Install it (https://docs.temporal.io/cli, or: go install github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_CLI_VERSION}) and put it on PATH or set TEMPORAL_CLI=/path/to/temporal; in a checkout of mlpipe, 'npm run setup' builds it.`,
    },
  );
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** True when something accepts TCP connections at host:port. */
export function isListening(address: string, timeoutMs = 1000): Promise<boolean> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('error', () => done(false));
    s.connect(port, host, () => done(true));
  });
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i) || 'localhost', Number(address.slice(i + 1))];
}

export interface DevServerOptions {
  bin: string;
  port?: number;
  uiPort?: number;
  /** SQLite file; without it the server keeps everything in memory. */
  dbFile?: string;
  headless?: boolean;
  logFile?: string;
  namespace?: string;
  /** How long to wait for the server to accept connections. */
  startTimeoutMs?: number;
}

export interface DevServer {
  address: string;
  uiUrl?: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Dynamic config for a one-machine server, each measured with bench/ (see the README):
 * - one task-queue partition, so a poller always finds its task without forwarding;
 * - eager activity dispatch: a step scheduled by a workflow task goes straight back to the worker
 *   that completed it, without a poll round trip;
 * - a higher poll rate for the history service's transfer queue: at the default (20/s after a
 *   short burst) every workflow task of a sequential pipeline waited ~30 ms to be dispatched.
 * Extra KEY=JSON pairs can be added with MLPIPE_TEMPORAL_DYNAMIC_CONFIG (comma-separated).
 */
export const DEV_DYNAMIC_CONFIG = [
  'matching.numTaskqueueReadPartitions=1',
  'matching.numTaskqueueWritePartitions=1',
  'system.enableActivityEagerExecution=true',
  'history.transferProcessorMaxPollRPS=1000',
];

/** A PORT_IN_USE error for a port this process wanted to listen on. */
export function portInUse(port: number, what: string, option: string): PipelineError {
  return new PipelineError('PORT_IN_USE', `Port ${port} (${what}) is already in use.`, {
    hint: `Pick another with ${option} <port>, or stop the process listening on ${port} (e.g. 'lsof -i :${port}').`,
  });
}

/**
 * Starts a dev server on `port` (default a free one). A port something else listens on is refused
 * before anything starts: the server there is not ours, so it is never mistaken for the one started.
 */
export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const port = opts.port ?? (await freePort());
  const uiPort = opts.headless ? undefined : (opts.uiPort ?? port + 1000);
  if (await isListening(`127.0.0.1:${port}`, 500)) throw portInUse(port, 'Temporal frontend', '--port');
  if (uiPort !== undefined && (await isListening(`127.0.0.1:${uiPort}`, 500))) throw portInUse(uiPort, 'Temporal Web UI', '--ui-port');
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'warn'];
  if (opts.namespace && opts.namespace !== 'default') args.push('--namespace', opts.namespace);
  if (opts.dbFile) {
    mkdirSync(dirname(opts.dbFile), { recursive: true });
    // WAL with synchronous=NORMAL: durable across a crash of the server process (what crash-resume
    // needs); only an OS crash or power loss can drop the last commits. Measured in bench/.
    args.push('--db-filename', opts.dbFile, '--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal');
  }
  if (uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  const extra = (process.env['MLPIPE_TEMPORAL_DYNAMIC_CONFIG'] ?? '').split(/[\s,]+/).filter(Boolean);
  for (const kv of [...DEV_DYNAMIC_CONFIG, ...extra]) args.push('--dynamic-config-value', kv);
  // mlpipe's search attributes, so runs can be found by pipeline and label (`temporal workflow list --query`).
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${name}=${type}`);
  let stdio: ('ignore' | number)[] = ['ignore', 'ignore', 'ignore'];
  if (opts.logFile) {
    mkdirSync(dirname(opts.logFile), { recursive: true });
    const fd = openSync(opts.logFile, 'a');
    stdio = ['ignore', fd, fd];
  }
  const child = spawn(opts.bin, args, { stdio });
  const address = `127.0.0.1:${port}`;
  let exited: number | null = null;
  child.once('exit', (code) => {
    exited = code ?? -1;
  });
  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  // Listening is ours only while our child lives (another process may have taken the port meanwhile).
  while (!(await isListening(address, 500)) || exited !== null) {
    if (exited !== null) {
      throw new PipelineError('TOOL_MISSING', `The Temporal dev server exited with code ${exited} before accepting connections.`, {
        hint: opts.logFile ? `See ${opts.logFile}. Is port ${port} already in use?` : `Is port ${port} already in use?`,
      });
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new PipelineError(
        'TOOL_MISSING',
        `The Temporal dev server did not accept connections on ${address} within ${opts.startTimeoutMs ?? 60_000} ms.`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    address,
    uiUrl: uiPort === undefined ? undefined : `http://127.0.0.1:${uiPort}`,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited !== null) return resolve();
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

export function temporalCliVersion(bin: string): string {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').trim();
}
