/**
 * `mlpipe artifacts get` / `mlpipe show` on untrusted arguments: what names an artifact (a digest,
 * a run's step output), what is refused, and the previews of JSON, evaluations and datasets,
 * against a real local store with lineage records.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatOf, parseArtifactArg, preview, previewJson, resolveArtifact } from '../../cli/artifact-commands.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { withDuckDB, sqlString } from '../../adapters/duckdb.js';
import { writeStepManifest } from '../../engine/lineage.js';
import { PipelineError } from '../../engine/errors.js';

describe('artifact arguments', () => {
  it('reads digests and step outputs', () => {
    expect(parseArtifactArg('sha256:3F9A1C0b')).toEqual({ kind: 'digest', prefix: '3f9a1c0b' });
    expect(parseArtifactArg('3f9a1c')).toEqual({ kind: 'digest', prefix: '3f9a1c' });
    expect(parseArtifactArg('california-housing-2c896c09/train.model')).toEqual({
      kind: 'output',
      workflowId: 'california-housing-2c896c09',
      stepId: 'train',
      output: 'model',
    });
    // HPO trial workflow IDs hold slashes: the last one separates the step output.
    expect(parseArtifactArg('hpo-x-1/final/evaluate.metrics')).toMatchObject({ workflowId: 'hpo-x-1/final', stepId: 'evaluate' });
  });

  it('refuses what names no artifact: short or non-hex digests, paths, SQL, control characters', () => {
    for (const bad of [
      '3f9a1',
      'sha256:xyz123',
      '../../etc/passwd',
      '/etc/passwd',
      'wf/train',
      'wf/train.model.extra',
      "wf/train.model'; DROP TABLE x; --",
      'wf\n/train.model',
      '/train.model',
      '',
    ]) {
      expect(() => parseArtifactArg(bad), bad).toThrow(PipelineError);
    }
  });
});

describe('resolving and previewing', () => {
  const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-show-')));

  async function recordStep(outputs: Record<string, unknown>): Promise<void> {
    const now = new Date().toISOString();
    await writeStepManifest(store, {
      workflowId: 'wf-1',
      runId: 'run-1',
      stepId: 'evaluate',
      uses: 'evaluate.model',
      pluginVersion: '1',
      status: 'succeeded',
      params: {},
      paramsHash: 'h',
      cacheKey: 'k',
      inputs: {},
      outputs,
      attempt: 1,
      startedAt: now,
      endedAt: now,
      durationMs: 1,
    });
  }

  it('finds an artifact by digest prefix and by step output, and a JSON output as its value', async () => {
    const report = await store.put(
      JSON.stringify({ metrics: { rmse: 45825.4, r2: 0.84 }, baseline: { rmse: 114713, r2: 0 }, passed: true, misses: [] }),
      {
        name: 'evaluation.json',
        mediaType: 'application/json',
      },
    );
    await recordStep({ report, passed: true });
    const byDigest = await resolveArtifact(store, parseArtifactArg(report.sha256.slice(0, 8)));
    expect(byDigest).toMatchObject({ ref: { sha256: report.sha256, name: 'evaluation.json' }, from: 'wf-1/evaluate' });
    const byOutput = await resolveArtifact(store, parseArtifactArg('wf-1/evaluate.report'));
    expect(byOutput).toMatchObject({ ref: { sha256: report.sha256 } });
    expect(await resolveArtifact(store, parseArtifactArg('wf-1/evaluate.passed'))).toMatchObject({ value: true });
    await expect(resolveArtifact(store, parseArtifactArg('wf-1/evaluate.nope'))).rejects.toMatchObject({
      message: "Step 'evaluate' of 'wf-1' has no output 'nope'.",
      hint: 'Its outputs: report, passed.',
    });
    // A workflow ID is only ever a key segment of the store's records, never a path.
    await expect(resolveArtifact(store, parseArtifactArg('../../wf-1/evaluate.report'))).rejects.toThrow(/No run of '\.\.\/\.\.\/wf-1'/);
    await expect(resolveArtifact(store, parseArtifactArg('wf-1/train.model'))).rejects.toThrow(/no step 'train'/);
    await expect(resolveArtifact(store, parseArtifactArg('other/train.model'))).rejects.toThrow(/No run of 'other'/);
    await expect(resolveArtifact(store, parseArtifactArg('abcdef'))).rejects.toThrow(/No artifact sha256:abcdef/);

    const lines = await preview(store, (byDigest as unknown as { ref: never }).ref);
    expect(lines[0]).toBe('evaluation: model metrics against the baseline');
    expect(lines.join('\n')).toMatch(/rmse +45,825 +114,713 +0\.399/);
    expect(lines).toContain('quality gate: passed');
  });

  it('pretty-prints JSON, and previews a Parquet dataset: schema, row count, first rows', async () => {
    expect(previewJson({ a: [1, 2] })).toEqual(['{', '  "a": [', '    1,', '    2', '  ]', '}']);
    const dir = mkdtempSync(join(tmpdir(), 'mlpipe-show-pq-'));
    const file = join(dir, 'd.parquet');
    await withDuckDB((db) =>
      db.run(`COPY (SELECT i AS id, 'name ' || i AS label, i * 0.5 AS score FROM range(25) t(i)) TO ${sqlString(file)} (FORMAT parquet)`),
    );
    const ref = await store.putFile(file, { name: 'train.parquet', mediaType: 'application/vnd.apache.parquet' });
    expect(formatOf(ref)).toBe('parquet');
    const lines = await preview(store, ref, 3);
    expect(lines[0]).toBe('Parquet: 25 rows, 3 columns');
    expect(lines[1]).toMatch(/^ {2}id +BIGINT$/);
    expect(lines.slice(-4)).toEqual(['  id  label   score', '  0   name 0  0', '  1   name 1  0.5', '  2   name 2  1']);
    writeFileSync(join(dir, 'x.bin'), Buffer.from([0, 1, 2]));
    const bin = await store.putFile(join(dir, 'x.bin'), { name: 'x.bin' });
    expect((await preview(store, bin))[0]).toMatch(/^\(binary; 'mlpipe artifacts get sha256:/);
  });
});
