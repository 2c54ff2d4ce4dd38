/** Every example pipeline in pipelines/ compiles against the built-in plugins and its conf/ (app/load-pipeline.ts). */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPipeline } from '../../app/load-pipeline.js';
import { DEFAULT_TASK_QUEUE } from '../../engine/contracts.js';
import { createDefaultRegistry } from '../../plugins/index.js';

const REPO = join(import.meta.dirname, '..', '..');
const registry = createDefaultRegistry();
const examples = readdirSync(join(REPO, 'pipelines')).filter((f) => f.endsWith('.yaml'));

describe('example pipelines', () => {
  it.each(examples)('%s compiles', (file) => {
    const compiled = loadPipeline(REPO, file.replace(/\.yaml$/, ''), registry);
    expect(Object.keys(compiled.steps).length).toBeGreaterThan(0);
  });

  it('housing-gpu sends train, and only train, to the gpu task queue; overrides still apply', () => {
    const compiled = loadPipeline(REPO, 'housing-gpu', registry, ['training.epochs=3']);
    const queues = Object.fromEntries(Object.entries(compiled.steps).map(([id, s]) => [id, s.taskQueue ?? DEFAULT_TASK_QUEUE]));
    expect(queues).toEqual({
      ingest: DEFAULT_TASK_QUEUE,
      split: DEFAULT_TASK_QUEUE,
      transform: DEFAULT_TASK_QUEUE,
      train: 'gpu',
      evaluate: DEFAULT_TASK_QUEUE,
    });
    expect(compiled.steps['train']!.with).toMatchObject({ epochs: 3, backend: 'auto' });
  });
});
