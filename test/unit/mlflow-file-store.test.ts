/**
 * MLflow's file store as mlpipe writes it: lookup of a run by its idempotency tag through the index
 * (no run folder read, however many runs), of an experiment by name from memory while its meta.yaml
 * is unchanged, one experiment when several stores create it at once, the index through a crash mid-write, meta.yaml with
 * multi-line values, and file: URIs with spaces.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type * as FsPromises from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it, vi } from 'vitest';
import { MlflowFileStore } from '../../adapters/mlflow/file-store.js';

/** Counts the store's directory listings, and can make a rename fail as a crash would. */
const fsSpy = vi.hoisted(() => ({ readdir: 0, failRenameTo: undefined as RegExp | undefined }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof FsPromises>();
  return {
    ...real,
    readdir: ((...args: Parameters<typeof real.readdir>) => {
      fsSpy.readdir++;
      return real.readdir(...args);
    }) as typeof real.readdir,
    rename: async (from: string, to: string) => {
      if (fsSpy.failRenameTo?.test(to)) throw Object.assign(new Error('simulated crash before rename'), { code: 'EIO' });
      return real.rename(from, to);
    },
  };
});

const newRoot = (): string => join(mkdtempSync(join(tmpdir(), 'mlpipe-mlruns-unit-')), 'mlruns');
const create = (s: MlflowFileStore, experimentId: string, key: string) =>
  s.createRun({
    experimentId,
    runName: key,
    startTime: 1_700_000_000_000,
    tags: [
      { key: 'mlpipe.run_key', value: key },
      { key: 'mlpipe.pipeline', value: 'wide' },
    ],
  });

describe('MlflowFileStore', () => {
  it('creates an experiment once when stores in parallel (a live run, a tracking delivery) ask for it on a fresh root', async () => {
    const root = newRoot();
    // Separate instances: nothing is shared but the folder, as between processes.
    const ids = await Promise.all(Array.from({ length: 8 }, () => new MlflowFileStore(root).getOrCreateExperiment('fresh')));
    expect(new Set(ids).size).toBe(1);
    const named = readdirSync(root).filter((d) => {
      const meta = join(root, d, 'meta.yaml');
      return existsSync(meta) && (parse(readFileSync(meta, 'utf8')) as { name: string }).name === 'fresh';
    });
    expect(named).toEqual([ids[0]]);
    // MLflow lists every folder of the root as an experiment: the claims are plain files.
    for (const d of readdirSync(root, { withFileTypes: true })) if (d.name.startsWith('.')) expect(d.isFile(), d.name).toBe(true);
    expect(await new MlflowFileStore(root).getOrCreateExperiment('fresh')).toBe(ids[0]);
  });

  it('creates the experiment anew when the one that claimed its name was renamed since', async () => {
    const root = newRoot();
    const first = await new MlflowFileStore(root).getOrCreateExperiment('old');
    const meta = join(root, first, 'meta.yaml');
    writeFileSync(meta, readFileSync(meta, 'utf8').replace('name: old', 'name: renamed'));
    const again = await new MlflowFileStore(root).getOrCreateExperiment('old');
    expect(again).not.toBe(first);
    expect((parse(readFileSync(join(root, again, 'meta.yaml'), 'utf8')) as { name: string }).name).toBe('old');
    expect((parse(readFileSync(meta, 'utf8')) as { name: string }).name).toBe('renamed');
  });

  it('finds a run by its idempotency tag through the index, without reading run folders, after 1,000 runs', async () => {
    const root = newRoot();
    const s = new MlflowFileStore(root);
    const exp = await s.getOrCreateExperiment('wide');
    const ids: string[] = [];
    for (let i = 0; i < 1000; i++) ids.push((await create(s, exp, `wf-${i}/run`)).mlflowRunId);
    // A fresh instance (another worker process) with nothing cached.
    const other = new MlflowFileStore(root);
    fsSpy.readdir = 0;
    for (const i of [0, 499, 999]) expect((await other.findRunByTag(exp, 'mlpipe.run_key', `wf-${i}/run`))?.mlflowRunId).toBe(ids[i]);
    expect(await other.findRunByTag(exp, 'mlpipe.run_key', 'wf-1000/run')).toBeUndefined();
    expect(fsSpy.readdir).toBe(0);
    // Logging to a run looks its folder up once, then from memory.
    await other.logBatch(ids[7]!, { metrics: [{ key: 'm', value: 1, timestamp: 1, step: 0 }], params: [], tags: [] });
    const afterFirst = fsSpy.readdir;
    for (let i = 0; i < 20; i++)
      await other.logBatch(ids[7]!, { metrics: [{ key: 'm', value: i, timestamp: 2 + i, step: 0 }], params: [], tags: [] });
    expect(fsSpy.readdir).toBe(afterFirst);
    expect(await other.metricHistory(ids[7]!, 'm')).toHaveLength(21);
    // A tag the index does not hold is still found, by scanning.
    expect((await other.findRunByTag(exp, 'mlpipe.pipeline', 'wide'))?.mlflowRunId).toBeDefined();
  }, 60_000);

  it('knows an experiment by name without listing the store again, until its meta.yaml changes', async () => {
    const root = newRoot();
    const s = new MlflowFileStore(root);
    const exp = await s.getOrCreateExperiment('known');
    await s.getOrCreateExperiment('another');
    fsSpy.readdir = 0;
    for (let i = 0; i < 5; i++) expect(await s.getOrCreateExperiment('known')).toBe(exp);
    expect(fsSpy.readdir).toBe(0);
    // Deleted meanwhile (MLflow rewrites meta.yaml): the next lookup reads it again and refuses it.
    const meta = join(root, exp, 'meta.yaml');
    writeFileSync(meta, readFileSync(meta, 'utf8').replace('lifecycle_stage: active', 'lifecycle_stage: deleted'));
    await expect(s.getOrCreateExperiment('known')).rejects.toThrow(/is deleted/);
  });

  it('keeps the index through a crash mid-write, and indexes an experiment written before the index existed', async () => {
    const root = newRoot();
    const s = new MlflowFileStore(root);
    const exp = await s.getOrCreateExperiment('crashy');
    const a = await create(s, exp, 'a');
    fsSpy.failRenameTo = /\.mlpipe-tag-/;
    try {
      await expect(create(s, exp, 'b')).rejects.toThrow('simulated crash before rename');
    } finally {
      fsSpy.failRenameTo = undefined;
    }
    const fresh = new MlflowFileStore(root);
    // The cut write left only a temporary file: the old entry reads whole, the cut run is not found.
    expect(readdirSync(join(root, exp)).some((f) => f.startsWith('.mlpipe-tag-') && f.endsWith('.tmp'))).toBe(true);
    expect((await fresh.findRunByTag(exp, 'mlpipe.run_key', 'a'))?.mlflowRunId).toBe(a.mlflowRunId);
    expect(await fresh.findRunByTag(exp, 'mlpipe.run_key', 'b')).toBeUndefined();
    const b = await create(fresh, exp, 'b');
    expect((await new MlflowFileStore(root).findRunByTag(exp, 'mlpipe.run_key', 'b'))?.mlflowRunId).toBe(b.mlflowRunId);

    // An experiment from before the index: no marker, no entries. The first lookup indexes it once.
    for (const f of readdirSync(join(root, exp))) if (f.startsWith('.mlpipe-tag-')) rmSync(join(root, exp, f));
    const legacy = new MlflowFileStore(root);
    expect((await legacy.findRunByTag(exp, 'mlpipe.run_key', 'a'))?.mlflowRunId).toBe(a.mlflowRunId);
    expect(existsSync(join(root, exp, '.mlpipe-tag-index'))).toBe(true);
    fsSpy.readdir = 0;
    expect((await new MlflowFileStore(root).findRunByTag(exp, 'mlpipe.run_key', 'b'))?.mlflowRunId).toBe(b.mlflowRunId);
    expect(fsSpy.readdir).toBe(0);
    // A damaged entry falls back to the tag files and is rewritten.
    const isEntryOfB = (f: string): boolean =>
      f.startsWith('.mlpipe-tag-') &&
      f !== '.mlpipe-tag-index' &&
      !f.endsWith('.tmp') &&
      readFileSync(join(root, exp, f), 'utf8').includes(b.mlflowRunId);
    const entry = readdirSync(join(root, exp)).find(isEntryOfB)!;
    writeFileSync(join(root, exp, entry), '{"runId":');
    expect((await new MlflowFileStore(root).findRunByTag(exp, 'mlpipe.run_key', 'b'))?.mlflowRunId).toBe(b.mlflowRunId);
    expect(JSON.parse(readFileSync(join(root, exp, entry), 'utf8'))).toEqual({ runId: b.mlflowRunId, key: 'mlpipe.run_key', value: 'b' });
  });

  it('reads meta.yaml with multi-line values as PyYAML writes them, and keeps them when it updates a run', async () => {
    const root = newRoot();
    const s = new MlflowFileStore(root);
    await s.getOrCreateExperiment('Default');
    // PyYAML folds long plain scalars onto continuation lines, and writes block scalars for newlines.
    const long = 'an experiment whose name is long enough that PyYAML folds it onto a second line when it dumps meta.yaml';
    mkdirSync(join(root, '42'), { recursive: true });
    writeFileSync(
      join(root, '42', 'meta.yaml'),
      "artifact_location: file:///tmp/somewhere/42\ncreation_time: 1700000000000\nexperiment_id: '42'\n" +
        'last_update_time: 1700000000000\nlifecycle_stage: active\n' +
        'name: an experiment whose name is long enough that PyYAML folds it onto a second\n  line when it dumps meta.yaml\n',
    );
    expect(await s.getOrCreateExperiment(long)).toBe('42');
    const run = await s.createRun({
      experimentId: '42',
      runName: 'two\nlines',
      startTime: 1_700_000_000_000,
      tags: [{ key: 'mlpipe.run_key', value: 'k' }],
    });
    await s.updateRun(run.mlflowRunId, 'FINISHED', 1_700_000_000_500);
    const meta = parse(readFileSync(join(root, '42', run.mlflowRunId, 'meta.yaml'), 'utf8'), { version: '1.1' }) as Record<string, unknown>;
    const expected = {
      run_name: 'two\nlines',
      status: 3,
      end_time: 1_700_000_000_500,
      start_time: 1_700_000_000_000,
      run_id: run.mlflowRunId,
      experiment_id: '42',
    };
    expect(meta).toMatchObject(expected);
    // Strings YAML 1.1 would read as booleans or numbers stay strings for MLflow's reader.
    const odd = await s.createRun({ experimentId: '42', runName: 'yes', startTime: 1, tags: [] });
    expect(readFileSync(join(root, '42', odd.mlflowRunId, 'meta.yaml'), 'utf8')).toMatch(/^run_name: "yes"$/m);
  });

  it('takes file: URIs with spaces and percent-encoding, and writes artifacts under the right folder', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'mlpipe mlruns ')), 'my runs');
    const s = new MlflowFileStore(pathToFileURL(dir).href);
    expect(s.root).toBe(dir);
    const exp = await s.getOrCreateExperiment('spaces');
    const run = await create(s, exp, 'k');
    await s.uploadArtifact(run, 'model/model.json', Buffer.from('{}'));
    expect(readFileSync(join(dir, exp, run.mlflowRunId, 'artifacts', 'model', 'model.json'), 'utf8')).toBe('{}');
    expect(existsSync(join(dir.replace(/ /g, '%20')))).toBe(false);
    await expect(s.uploadArtifact(run, '../../escape', Buffer.from('x'))).resolves.toBeUndefined();
    expect(existsSync(join(dir, exp, 'escape'))).toBe(false);
  });
});
