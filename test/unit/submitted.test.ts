/**
 * Pipelines submitted with the run: what the client sends (prepareRun), and what a worker in another
 * folder accepts and refuses (compileSubmittedPipeline): limits, path escapes, code-running steps,
 * plugin versions, the worker's own copy.
 */
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileSubmittedPipeline } from '../../app/load-pipeline.js';
import { prepareRun } from '../../app/runs.js';
import type { SubmittedPipeline } from '../../engine/contracts.js';
import { PipelineError, SpecErrors } from '../../engine/errors.js';
import { checkInput, LIMITS } from '../../engine/limits.js';
import { createDefaultRegistry } from '../../plugins/index.js';
import { createRegistry } from '../../plugins/registry.js';
import { definePlugin } from '../../plugins/sdk.js';
import { z } from 'zod';

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-submitted-'));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

const SPEC = `name: ingest-echo
config: exp
params:
  data: pipelines/data/rows.csv
steps:
  ingest:
    uses: ingest.file
    with: { path: '\${params.data}' }
  report:
    uses: util.echo
    needs: ingest
    with:
      values: { rows: '\${steps.ingest.outputs.rows}', width: '\${conf.model.width}' }
`;
const CLIENT = {
  'pipelines/ingest-echo.yaml': SPEC,
  'pipelines/data/rows.csv': 'a,b\n1,2\n3,4\n',
  'conf/exp/config.yaml': 'defaults:\n  - model: small\n  - _self_\nseed: 1\n',
  'conf/exp/model/small.yaml': 'width: 4\n',
  'conf/exp/model/wide.yaml': 'width: 64\n',
};

const registry = createDefaultRegistry();
const worker = (trusted = false) => ({ trusted, taskQueue: 'team-a' });

/** A submitted pipeline as prepareRun would send it, for a spec given as text. */
function submittedOf(text: string, extra: Partial<SubmittedPipeline> = {}): SubmittedPipeline {
  return { file: 'pipelines/p.yaml', text, plugins: {}, ...extra };
}

function problemsOf(fn: () => unknown): PipelineError[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof SpecErrors) return e.problems;
    if (e instanceof PipelineError) return [e];
    throw e;
  }
  throw new Error('expected a PipelineError');
}

describe('what mlpipe run sends', () => {
  it('the spec, the config files it composed, the plugin versions and the digests of the project files it reads', async () => {
    const client = folder(CLIENT);
    const { input, files, compiled } = await prepareRun({ projectDir: client }, 'ingest-echo', { overrides: ['model=wide'] });
    expect(compiled.name).toBe('ingest-echo');
    expect(input.pipeline).toBe('ingest-echo');
    expect(input.submitted?.file).toBe('pipelines/ingest-echo.yaml');
    expect(input.submitted?.text).toBe(SPEC);
    // Only what the compile read: the chosen option, not the other one.
    expect(Object.keys(input.submitted?.conf ?? {}).sort()).toEqual(['exp/config.yaml', 'exp/model/wide.yaml']);
    expect(input.submitted?.plugins).toEqual({ 'ingest.file': '1', 'util.echo': '1' });
    expect(files).toHaveLength(1);
    expect(files[0]).toMatchObject({ path: 'pipelines/data/rows.csv', size: 12 });
    expect(input.submitted?.files).toEqual({ 'pipelines/data/rows.csv': { sha256: files[0]!.sha256, size: 12 } });
    // --by-name sends the name only.
    const byName = await prepareRun({ projectDir: client }, 'ingest-echo', { submit: false });
    expect(byName.input).toEqual({ pipeline: 'ingest-echo', overrides: [] });
  });

  it('refuses an input past the limit before anything is uploaded or started, and says what to do', async () => {
    const big = `# ${'x'.repeat(150 * 1024)}\n`;
    const client = folder({
      ...CLIENT,
      'pipelines/ingest-echo.yaml': big + SPEC,
      'conf/exp/model/wide.yaml': `${big}width: 64\n`,
    });
    const err = await prepareRun({ projectDir: client }, 'ingest-echo', { overrides: ['model=wide'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PipelineError);
    expect((err as PipelineError).code).toBe('INPUT_INVALID');
    expect((err as PipelineError).message).toMatch(/The workflow input is \d+ bytes \(the submitted pipeline.*limited to 262144/);
    expect((err as PipelineError).hint).toMatch(/--by-name/);
  });

  it('checks the counts and names of what a submitted pipeline carries (the worker applies the same check)', () => {
    const base = { pipeline: 'p', submitted: submittedOf('name: p\nsteps: {}\n') };
    const manyConf = Object.fromEntries(Array.from({ length: LIMITS.submittedConfigFiles + 1 }, (_, i) => [`g/o${i}.yaml`, 'a: 1\n']));
    expect(() => checkInput({ ...base, submitted: { ...base.submitted, conf: manyConf } })).toThrow(/carries 101 config files/);
    const manyFiles = Object.fromEntries(
      Array.from({ length: LIMITS.submittedDataFiles + 1 }, (_, i) => [`d/${i}.csv`, { sha256: '0'.repeat(64), size: 1 }]),
    );
    expect(() => checkInput({ ...base, submitted: { ...base.submitted, files: manyFiles } })).toThrow(/names 101 data files/);
    for (const name of ['../../etc/passwd', '/etc/passwd', 'exp/../../x.yaml', 'exp\\x.yaml', './x.yaml'])
      expect(() => checkInput({ ...base, submitted: { ...base.submitted, conf: { [name]: 'a: 1\n' } } }), name).toThrow(
        /is not a path inside conf/,
      );
    expect(() => checkInput({ ...base, submitted: { ...base.submitted, text: 'name: p\uFFFD\n' } })).toThrow(/not valid UTF-8/);
  });
});

describe('a worker in another folder', () => {
  it('compiles the submitted pipeline from the input alone, and binds the client file to its digest', async () => {
    const client = folder(CLIENT);
    const { input } = await prepareRun({ projectDir: client }, 'ingest-echo', { overrides: ['model=wide'] });
    const elsewhere = folder({});
    const compiled = compileSubmittedPipeline(elsewhere, input.submitted!, registry, input.overrides ?? [], worker());
    expect(compiled.submitted).toBe(true);
    expect(compiled.config).toMatchObject({ model: { width: 64 }, seed: 1 });
    expect(compiled.steps['ingest']!.files).toEqual({
      path: { ...input.submitted!.files!['pipelines/data/rows.csv']!, path: 'pipelines/data/rows.csv' },
    });
    expect(compiled.steps['report']!.files).toBeUndefined();
  });

  it('refuses paths that leave its project, whoever set them, and overridablePaths opens nothing', () => {
    const elsewhere = folder({ 'inside.csv': 'a\n1\n' });
    symlinkSync('/etc', join(elsewhere, 'etc-link'));
    for (const path of ['/etc/passwd', '../outside.csv', 'file:///etc/passwd', 'etc-link/passwd', '%2e%2e/x.csv']) {
      const spec = `name: p\noverridablePaths: [params.data]\nparams: { data: '${path}' }\nsteps:\n  ingest: { uses: ingest.file, with: { path: '\${params.data}' } }\n`;
      const [p, ...rest] = problemsOf(() => compileSubmittedPipeline(elsewhere, submittedOf(spec), registry, [], worker()));
      expect(rest, path).toEqual([]);
      expect(p!.code, path).toBe('INPUT_INVALID');
      expect(p!.message, path).toContain("Step 'ingest' param 'path'");
      expect(p!.where?.path).toEqual(['steps', 'ingest', 'with', 'path']);
    }
    // Set by an override, too.
    const spec = `name: p\nparams: { data: inside.csv }\nsteps:\n  ingest: { uses: ingest.file, with: { path: '\${params.data}' } }\n`;
    expect(compileSubmittedPipeline(elsewhere, submittedOf(spec), registry, [], worker()).steps['ingest']!.with['path']).toBe('inside.csv');
    expect(
      problemsOf(() => compileSubmittedPipeline(elsewhere, submittedOf(spec), registry, ['params.data=/etc/passwd'], worker()))[0]!.code,
    ).toBe('INPUT_INVALID');
    // A path computed when the step runs cannot be checked now: refused.
    const late = `name: p\nsteps:\n  a: { uses: util.echo, with: { values: { f: x } } }\n  b: { uses: util.echo, needs: a, with: { journal: '\${steps.a.outputs.f}' } }\n`;
    expect(problemsOf(() => compileSubmittedPipeline(elsewhere, submittedOf(late), registry, [], worker()))[0]!.message).toMatch(
      /param 'journal'.*is computed when the step runs/,
    );
  });

  it('refuses steps that run code or ask for worker variables, unless it trusts submitted pipelines', () => {
    const elsewhere = folder({});
    const spec = `name: p\nsteps:\n  sh: { uses: util.shell, with: { command: 'cat /etc/passwd' } }\n  e: { uses: util.echo, env: [AWS_SECRET_ACCESS_KEY] }\n`;
    const problems = problemsOf(() => compileSubmittedPipeline(elsewhere, submittedOf(spec), registry, [], worker()));
    expect(problems.map((p) => p.code)).toEqual(['SUBMITTED_CODE_REFUSED', 'SUBMITTED_CODE_REFUSED']);
    expect(problems[0]!.message).toBe(
      "Step 'sh' uses util.shell, which runs commands or code from its params; this worker (task queue 'team-a') does not run them from a pipeline submitted with the run.",
    );
    expect(problems[0]!.hint).toMatch(/MLPIPE_TRUST_SUBMITTED_PIPELINES=1/);
    expect(problems[0]!.retryable).toBe(false);
    expect(problems[1]!.message).toMatch(/Step 'e' asks for the worker's environment variables AWS_SECRET_ACCESS_KEY/);
    // A project plugin that says it runs code is refused the same way.
    const script = definePlugin({
      name: 'acme.script',
      version: '1',
      description: 'runs a script',
      params: z.object({ code: z.string() }),
      outputs: {},
      runsCode: true,
      run: async () => ({}),
    });
    const own = createRegistry([...registry.list(), script]);
    const acme = `name: p\nsteps:\n  s: { uses: acme.script, with: { code: 'x' } }\n`;
    expect(problemsOf(() => compileSubmittedPipeline(elsewhere, submittedOf(acme), own, [], worker()))[0]!.message).toContain(
      'uses acme.script',
    );
    // Opted in: compiled (still marked submitted, so every worker of its steps decides for itself).
    const trusted = compileSubmittedPipeline(elsewhere, submittedOf(spec), registry, [], worker(true));
    expect(trusted.submitted).toBe(true);
    expect(trusted.steps['sh']!.uses).toBe('util.shell');
  });

  it('names the plugin, the wanted and found versions and its task queue when its plugins differ', () => {
    const elsewhere = folder({});
    const spec = `name: p\nsteps:\n  e: { uses: util.echo }\n`;
    const [mismatch] = problemsOf(() =>
      compileSubmittedPipeline(elsewhere, submittedOf(spec, { plugins: { 'util.echo': '7' } }), registry, [], worker()),
    );
    expect(mismatch).toMatchObject({ code: 'PLUGIN_VERSION_MISMATCH', retryable: false });
    expect(mismatch!.message).toBe(
      "The run was compiled with plugin 'util.echo' version 7; this worker (task queue 'team-a') has version 1.",
    );
    expect(mismatch!.details).toEqual({ plugin: 'util.echo', wanted: '7', found: '1', taskQueue: 'team-a' });
    const [missing] = problemsOf(() =>
      compileSubmittedPipeline(elsewhere, submittedOf(spec, { plugins: { 'acme.forecast': '2' } }), registry, [], worker()),
    );
    expect(missing).toMatchObject({ code: 'PLUGIN_UNKNOWN', retryable: false });
    expect(missing!.message).toBe(
      "The run needs plugin 'acme.forecast' version 2; this worker (task queue 'team-a') has no plugin of that name.",
    );
  });

  it('runs its own copy as its own: the same file with the same text is trusted, as a run by name', async () => {
    const spec = `name: sh\nsteps:\n  sh: { uses: util.shell, with: { command: 'true' } }\n`;
    const project = folder({ 'pipelines/sh.yaml': spec });
    const { input } = await prepareRun({ projectDir: project }, 'sh');
    const own = compileSubmittedPipeline(project, input.submitted!, registry, [], worker());
    expect(own.submitted).toBeUndefined();
    // One byte different: not its own, so refused.
    const changed = { ...input.submitted!, text: `${spec}# changed\n` };
    expect(problemsOf(() => compileSubmittedPipeline(project, changed, registry, [], worker()))[0]!.code).toBe('SUBMITTED_CODE_REFUSED');
  });
});
