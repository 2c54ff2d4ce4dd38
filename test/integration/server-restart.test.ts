/**
 * Server restart: the Temporal dev server (its own, with a SQLite file) is SIGKILLed mid-run and a
 * new one started on the same file and port. The run, its finished steps and the running step's
 * progress survive; nothing finished runs twice.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createPipelineWorker } from '../../app/worker.js';
import { freePort, isListening, startDevServer, type DevServer } from '../../dev/temporal-server.js';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import { createTestProject, uniqueId, waitFor } from './helpers.js';

const servers: DevServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

describe('server restart', () => {
  it('finishes a run after the server is killed and restarted on the same database', async () => {
    const project = createTestProject('restart');
    project.write(
      'pipelines/restart.yaml',
      'name: restart\nsteps:\n  before: { uses: util.echo, with: { journal: journal.jsonl, values: { a: 1 } } }\n  train:\n    uses: util.sleep\n    needs: before\n    heartbeat: 10s\n    with: { ticks: 25, tickMs: 200, journal: journal.jsonl }\n  after: { uses: util.echo, needs: train, with: { journal: journal.jsonl } }\n',
    );
    const dbFile = join(mkdtempSync(join(tmpdir(), 'mlpipe-restart-db-')), 'temporal.db');
    const port = await freePort();
    const start = async (): Promise<DevServer> => {
      const s = await startDevServer({ bin: inject('temporalBin'), port, headless: true, dbFile, logFile: `${dbFile}.log` });
      servers.push(s);
      return s;
    };
    const first = await start();
    const settings = { ...project.settings, temporalAddress: first.address };
    const nativeConnection = await NativeConnection.connect({ address: first.address });
    const { worker } = await createPipelineWorker({ settings, connection: nativeConnection });
    const running = worker.run();
    const connection = await Connection.connect({ address: first.address });
    const client = new Client({ connection });
    try {
      const workflowId = uniqueId('restart');
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId,
        args: [{ pipeline: 'restart', cache: false }],
      });
      const { runId } = await handle.describe();
      const lines = () => project.journal().filter((l) => l.runId === runId);
      await waitFor(() => lines().filter((l) => l.event === 'tick').length >= 3, 'three ticks');

      first.process.kill('SIGKILL');
      await waitFor(async () => !(await isListening(first.address, 200)), 'the server to go away');
      await new Promise((r) => setTimeout(r, 1000));
      await start();

      const result = (await client.workflow.getHandle(workflowId).result()) as PipelineResult;
      expect(result.state).toBe('succeeded');
      expect(result.outputs['train']).toMatchObject({ ticks: 25 });
      const log = lines();
      expect(log.filter((l) => l.step === 'before' && l.event === 'start')).toHaveLength(1);
      expect(log.filter((l) => l.step === 'after' && l.event === 'start')).toHaveLength(1);
      expect(log.filter((l) => l.step === 'train' && l.event === 'finish')).toHaveLength(1);
      const ticks = new Set(log.filter((l) => l.step === 'train' && l.event === 'tick').map((l) => l['tick']));
      expect(ticks.size).toBe(25);
    } finally {
      worker.shutdown();
      await running;
      await nativeConnection.close();
      await connection.close();
    }
  });
});
