/** fake-gcs-server for tests and benches: in memory, plain HTTP on loopback. Not used in production. */
import { Storage } from '@google-cloud/storage';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PipelineError } from '../engine/errors.js';
import { freePort } from './temporal-server.js';
import { mlpipeCacheDir } from '../engine/cache-dir.js';

export function findFakeGcs(): string {
  const cache = mlpipeCacheDir();
  const bin = process.env['FAKE_GCS_SERVER'] ?? join(cache, 'tools', 'bin', 'fake-gcs-server');
  if (!existsSync(bin))
    throw new PipelineError('TOOL_MISSING', `fake-gcs-server not found at ${bin}.`, {
      hint: "Run 'bash deploy/provision.sh --with-gcs-emulator'.",
    });
  return bin;
}

export interface Emulator {
  endpoint: string;
  port: number;
  storage: Storage;
  process: ChildProcess;
  stop(): Promise<void>;
  /** Kills it and starts a new one on the same port (empty with the memory backend; with a `dataDir`, with what it held). */
  restart(): Promise<void>;
}

/**
 * `externalUrl`: the address the emulator puts in upload-session URIs (a proxy in front of it).
 * `dataDir`: keep objects in this folder (filesystem backend) instead of memory, so that a restart
 * finds them again.
 */
export async function startEmulator(
  buckets: string[],
  options: { port?: number; externalUrl?: string; dataDir?: string } = {},
): Promise<Emulator> {
  const p = options.port ?? (await freePort());
  const endpoint = `http://127.0.0.1:${p}`;
  const launch = async (): Promise<ChildProcess> => {
    const child = spawn(
      findFakeGcs(),
      [
        ...(options.dataDir ? ['-backend', 'filesystem', '-filesystem-root', options.dataDir] : ['-backend', 'memory']),
        '-scheme',
        'http',
        '-host',
        '127.0.0.1',
        '-port',
        String(p),
        '-external-url',
        options.externalUrl ?? endpoint,
        '-log-level',
        'error',
      ],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        if ((await fetch(`${endpoint}/_internal/healthcheck`)).ok) break;
      } catch {
        /* starting */
      }
      if (child.exitCode !== null || Date.now() > deadline)
        throw new PipelineError('TOOL_MISSING', `fake-gcs-server did not start on ${endpoint}.`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return child;
  };
  const storage = new Storage({ apiEndpoint: endpoint, projectId: 'test' });
  const emu: Emulator = {
    endpoint,
    port: p,
    storage,
    process: await launch(),
    async stop() {
      if (emu.process.exitCode !== null || emu.process.signalCode !== null) return;
      const exited = new Promise((r) => emu.process.once('exit', r));
      emu.process.kill('SIGKILL');
      await exited;
    },
    async restart() {
      await emu.stop();
      emu.process = await launch();
      for (const b of buckets) await storage.createBucket(b).catch(() => undefined);
    },
  };
  for (const b of buckets) await storage.createBucket(b);
  return emu;
}
