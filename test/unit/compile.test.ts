import { describe, expect, it } from 'vitest';
import { compilePipeline } from '../../engine/compile.js';
import { PipelineError, SpecErrors } from '../../engine/errors.js';
import { memoryConf, registry } from './fakes.js';

const conf = memoryConf({
  'demo/config.yaml': 'defaults:\n  - model: small\n  - _self_\nepochs: 5\n',
  'demo/model/small.yaml': 'hidden: [16]\nname: small\n',
  'demo/model/wide.yaml': 'hidden: [64, 64]\nname: wide\n',
});

function compile(text: string, overrides: string[] = []) {
  return compilePipeline({ file: 'pipelines/t.yaml', text, conf, catalog: registry, overrides });
}

/** All problems of a failed compile as { code, line, column, path }. */
function problems(text: string, overrides: string[] = []) {
  try {
    compile(text, overrides);
  } catch (e) {
    const list = e instanceof SpecErrors ? e.problems : [e as PipelineError];
    return list.map((p) => ({ code: p.code, line: p.where?.line, column: p.where?.column, path: p.where?.path?.join('.'), message: p.message, hint: p.hint }));
  }
  throw new Error('expected the compile to fail');
}

const GOOD = `
name: good
config: demo
params:
  greeting: hi
steps:
  a:
    uses: util.write
    with: { content: "\${params.greeting}" }
  b:
    uses: util.read
    needs: a
  c:
    uses: util.echo
    needs: [b]
    when: \${steps.b.outputs.size > 0}
    retry: { maximumAttempts: 4, initialInterval: 500ms }
    timeout: 10m
    heartbeat: 30s
    with:
      values:
        hidden: \${conf.model.hidden}
        lines: \${steps.b.outputs.lines}
`;

describe('compilePipeline', () => {
  it('resolves params and config now, keeps step outputs for run time, binds inputs by name', () => {
    const p = compile(GOOD, ['model=wide', 'params.greeting=hello']);
    expect(p.order).toEqual(['a', 'b', 'c']);
    expect(p.steps['a']!.with).toEqual({ content: 'hello' });
    expect(p.steps['b']!.inputs).toEqual({ artifact: '${steps.a.outputs.artifact}' });
    expect(p.steps['c']!.with).toEqual({ values: { hidden: [64, 64], lines: '${steps.b.outputs.lines}' } });
    expect(p.steps['c']!.when).toBe('${steps.b.outputs.size > 0}');
    expect(p.steps['c']!).toMatchObject({ timeoutMs: 600_000, heartbeatMs: 30_000, retry: { maximumAttempts: 4, initialIntervalMs: 500 } });
    expect(p.configChoices).toEqual({ model: 'wide' });
    expect(JSON.parse(JSON.stringify(p))).toEqual(p);
  });

  it('evaluates a static when at compile time', () => {
    const p = compile('name: w\nparams: { on: false }\nsteps:\n  a:\n    uses: util.echo\n    when: ${params.on}\n');
    expect(p.steps['a']!.when).toBe(false);
  });

  it('reports an unknown plugin with the closest name, file, line and column', () => {
    const [p] = problems('name: x\nsteps:\n  a:\n    uses: util.ecko\n');
    expect(p).toMatchObject({ code: 'PLUGIN_UNKNOWN', line: 4, column: 5, path: 'steps.a.uses' });
    expect(p!.message).toContain("Did you mean 'util.echo'");
  });

  it('reports a cycle with its path', () => {
    const [p] = problems('name: x\nsteps:\n  a: { uses: util.echo, needs: c }\n  b: { uses: util.echo, needs: a }\n  c: { uses: util.echo, needs: b }\n');
    expect(p!.code).toBe('DAG_CYCLE');
    expect(p!.message).toMatch(/a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c/);
  });

  it('reports needs naming a missing step, with a suggestion', () => {
    const [p] = problems('name: x\nsteps:\n  train: { uses: util.echo }\n  eval:\n    uses: util.echo\n    needs: [trian]\n');
    expect(p).toMatchObject({ code: 'DAG_MISSING_NEED', line: 6, path: 'steps.eval.needs.0' });
    expect(p!.message).toContain("Did you mean 'train'");
  });

  it('reports unknown keys (typos) with a suggestion', () => {
    const list = problems('name: x\nstepz: {}\nsteps:\n  a:\n    uses: util.echo\n    retry: { maxAttempts: 2 }\n    timout: 5m\n');
    expect(list.map((p) => [p.code, p.path, p.line])).toEqual([
      ['SPEC_UNKNOWN_KEY', 'stepz', 2],
      ['SPEC_UNKNOWN_KEY', 'steps.a.retry.maxAttempts', 6],
      ['SPEC_UNKNOWN_KEY', 'steps.a.timout', 7],
    ]);
    expect(list[2]!.message).toContain("Did you mean 'timeout'");
  });

  it('reports references to outputs that do not exist, and to steps not needed', () => {
    const list = problems('name: x\nsteps:\n  a:\n    uses: util.echo\n    with: { values: { x: 1 } }\n  b:\n    uses: util.echo\n    needs: a\n    with: { values: { y: "${steps.a.outputs.z}" } }\n  c:\n    uses: util.echo\n    with: { values: { y: "${steps.a.outputs.x}" } }\n');
    expect(list.map((p) => [p.code, p.line])).toEqual([
      ['EXPR_REFERENCE', 9],
      ['EXPR_REFERENCE', 12],
    ]);
    expect(list[0]!.message).toContain("has no output 'z'");
    expect(list[1]!.hint).toContain("Add 'a' to the needs of 'c'");
  });

  it('reports params the plugin schema rejects, at the param', () => {
    const [p] = problems('name: x\nsteps:\n  a:\n    uses: util.sleep\n    with:\n      ticks: -1\n      tickz: 3\n');
    expect(p).toMatchObject({ code: 'PLUGIN_PARAMS', line: 6, path: 'steps.a.with.ticks' });
    const list = problems('name: x\nsteps:\n  a:\n    uses: util.sleep\n    with:\n      ticks: 2\n      tickz: 3\n');
    expect(list[0]).toMatchObject({ code: 'PLUGIN_PARAMS', path: 'steps.a.with.tickz' });
  });

  it('reports malformed overrides and unknown config keys', () => {
    expect(problems(GOOD, ['model.hiden=[1]'])[0]).toMatchObject({ code: 'OVERRIDE_UNKNOWN_KEY' });
    expect(problems(GOOD, ['lr 0.1'])[0]).toMatchObject({ code: 'OVERRIDE_MALFORMED' });
    expect(problems(GOOD, ['params.nope=1'])[0]).toMatchObject({ code: 'OVERRIDE_UNKNOWN_KEY' });
    expect(problems(GOOD, ['${conf.x}'.replace('$', '') + '=1'])[0]!.code).toBe('OVERRIDE_MALFORMED');
  });

  it('reports YAML syntax errors with a position', () => {
    const [p] = problems('name: x\nsteps:\n  a:\n    uses: [util.echo\n');
    expect(p!.code).toBe('SPEC_YAML');
    expect(p!.line).toBeGreaterThan(0);
  });

  it('reports a missing required key and an unbound input', () => {
    expect(problems('steps:\n  a: { uses: util.echo }\n')[0]).toMatchObject({ code: 'SPEC_INVALID', message: "'name' is required." });
    expect(problems('name: x\nsteps:\n  r: { uses: util.read }\n')[0]).toMatchObject({ code: 'PLUGIN_INPUT', path: 'steps.r' });
  });
});
