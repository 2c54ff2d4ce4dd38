import { describe, expect, it } from 'vitest';
import { compilePipeline, pruneUntil } from '../../engine/compile.js';
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
    return list.map((p) => ({
      code: p.code,
      line: p.where?.line,
      column: p.where?.column,
      path: p.where?.path?.join('.'),
      message: p.message,
      hint: p.hint,
    }));
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
    const [p] = problems(
      'name: x\nsteps:\n  a: { uses: util.echo, needs: c }\n  b: { uses: util.echo, needs: a }\n  c: { uses: util.echo, needs: b }\n',
    );
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
    const list = problems(
      'name: x\nsteps:\n  a:\n    uses: util.echo\n    with: { values: { x: 1 } }\n  b:\n    uses: util.echo\n    needs: a\n    with: { values: { y: "${steps.a.outputs.z}" } }\n  c:\n    uses: util.echo\n    with: { values: { y: "${steps.a.outputs.x}" } }\n',
    );
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

describe('compilePipeline reports every problem in one pass', () => {
  it('lists DAG, expression, plugin and params problems together, each with its line', () => {
    const list = problems(
      [
        'name: x',
        'steps:',
        '  a: { uses: util.ecko }',
        '  b: { uses: util.echo, needs: [c, nope] }',
        '  c: { uses: util.echo, needs: b }',
        '  d:',
        '    uses: util.sleep',
        '    with: { ticks: -1, tickMs: "${params.missing}" }',
        '',
      ].join('\n'),
    );
    expect(list.map((p) => [p.code, p.line])).toEqual([
      ['PLUGIN_UNKNOWN', 3],
      ['DAG_MISSING_NEED', 4],
      ['DAG_CYCLE', 4],
      ['EXPR_REFERENCE', 8],
    ]);
    const params = problems('name: x\nsteps:\n  a: { uses: util.echo, needs: zz }\n  d:\n    uses: util.sleep\n    with: { ticks: -1 }\n');
    expect(params.map((p) => p.code)).toEqual(['DAG_MISSING_NEED', 'PLUGIN_PARAMS']);
  });

  it('lists every bad override and config problem, not just the first', () => {
    const list = problems(GOOD, ['lr 0.1', 'model.hiden=1', 'params.nope=1', 'epochz=2']);
    expect(list.map((p) => p.code).sort()).toEqual([
      'OVERRIDE_MALFORMED',
      'OVERRIDE_UNKNOWN_KEY',
      'OVERRIDE_UNKNOWN_KEY',
      'OVERRIDE_UNKNOWN_KEY',
    ]);
  });
});

describe('prototype keys', () => {
  const steps = (ids: string[]) =>
    `name: x\nsteps:\n${ids.map((id) => `  ${id}: { uses: util.echo, with: { values: { v: 1 } } }`).join('\n')}\n`;

  it('compiles constructor, toString and hasOwnProperty as ordinary step ids', () => {
    const p = compile(
      `${steps(['constructor', 'toString'])}  hasOwnProperty:\n    uses: util.echo\n    needs: [constructor, toString]\n    with: { values: { v: "\${steps.constructor.outputs.v}" } }\n`,
    );
    expect(p.order).toEqual(['constructor', 'toString', 'hasOwnProperty']);
    expect(p.steps['hasOwnProperty']!.needs).toEqual(['constructor', 'toString']);
    expect(Object.keys(p.steps)).toEqual(['constructor', 'toString', 'hasOwnProperty']);
  });

  it('refuses __proto__ as a step id, a param or a config key, at its line', () => {
    expect(problems(steps(['a', '__proto__']))[0]).toMatchObject({ code: 'SPEC_INVALID', path: 'steps.__proto__', line: 4 });
    expect(problems('name: x\nparams:\n  __proto__: { polluted: 1 }\nsteps:\n  a: { uses: util.echo }\n')[0]).toMatchObject({
      code: 'SPEC_INVALID',
      line: 3,
    });
    const conf2 = memoryConf({ 'c.yaml': 'a:\n  __proto__: { polluted: 1 }\n' });
    expect(() =>
      compilePipeline({ file: 'p.yaml', text: 'name: x\nconfig: c\nsteps:\n  a: { uses: util.echo }\n', conf: conf2, catalog: registry }),
    ).toThrow(/__proto__/);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('does not find inherited names: needs, step references and params lookups', () => {
    expect(problems(`${steps(['a'])}  b: { uses: util.echo, needs: toString }\n`)[0]).toMatchObject({ code: 'DAG_MISSING_NEED' });
    const refs = problems(
      'name: x\nparams: { p: 1 }\nsteps:\n  a:\n    uses: util.echo\n    with: { values: { a: "${steps.constructor.outputs}", b: "${params.__proto__}", c: "${params.toString}", d: "${conf.constructor}" } }\n',
    );
    expect(refs.map((p) => p.code)).toEqual(['EXPR_REFERENCE', 'EXPR_REFERENCE', 'EXPR_REFERENCE', 'EXPR_REFERENCE']);
    expect(refs[0]!.message).toContain("there is no step 'constructor'");
    expect(refs[2]!.message).toContain("no param 'toString'");
  });

  it('treats params named constructor or toString as ordinary, and refuses __proto__ and inherited names in overrides', () => {
    const text =
      'name: x\nparams: { constructor: 1, toString: two }\nsteps:\n  a:\n    uses: util.echo\n    with: { values: { c: "${params.constructor}", t: "${params.toString}" } }\n';
    expect(compile(text, ['params.constructor=5']).steps['a']!.with).toEqual({ values: { c: 5, t: 'two' } });
    expect(problems(GOOD, ['__proto__.x=1'])[0]).toMatchObject({ code: 'OVERRIDE_MALFORMED' });
    expect(problems(GOOD, ['params.__proto__.x=1'])[0]).toMatchObject({ code: 'OVERRIDE_MALFORMED' });
    expect(problems(GOOD, ['params.constructor=1'])[0]).toMatchObject({ code: 'OVERRIDE_UNKNOWN_KEY' });
    expect(problems(GOOD, ['model.toString=1'])[0]).toMatchObject({ code: 'OVERRIDE_UNKNOWN_KEY' });
    expect(problems(GOOD, ['+x={__proto__: {polluted: 1}}'])[0]).toMatchObject({ code: 'OVERRIDE_MALFORMED' });
  });
});

describe('compile limits', () => {
  it('refuses a billion-laughs file, deep nesting and an oversized file', () => {
    const laughs = [
      'a: &a [x, x, x, x, x, x, x, x, x]',
      ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefg'[i]}`).join(', ')}]`),
    ].join('\n');
    const p = problems(`${laughs}\nname: x\nsteps:\n  a: { uses: util.echo }\n`);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ code: 'SPEC_YAML' });
    expect(p[0]!.message).toContain('aliases');
    const deep = `name: x\nparams:\n  p: ${'['.repeat(100)}${']'.repeat(100)}\nsteps:\n  a: { uses: util.echo }\n`;
    expect(problems(deep)[0]).toMatchObject({ code: 'SPEC_INVALID', line: 3 });
    expect(problems(deep)[0]!.message).toContain('nested deeper than 64');
    expect(problems(`name: x\nparams: { p: "${'x'.repeat(1_100_000)}" }\nsteps:\n  a: { uses: util.echo }\n`)[0]).toMatchObject({
      code: 'SPEC_INVALID',
    });
    expect(problems(GOOD, [`+deep=${'['.repeat(80)}${']'.repeat(80)}`])[0]).toMatchObject({ code: 'OVERRIDE_MALFORMED' });
  });

  it('refuses a huge fan-out and a compiled pipeline over the payload bound', () => {
    const many = `name: x\nsteps:\n${Array.from({ length: 1001 }, (_, i) => `  s${i}: { uses: util.echo }`).join('\n')}\n`;
    expect(problems(many)[0]!.message).toContain('1001 steps');
    // Within the file bound, but aliases repeat a 200 KB value six times in the compiled steps.
    const big = `name: x\nparams: { blob: &b "${'x'.repeat(200_000)}" }\nsteps:\n${Array.from({ length: 6 }, (_, i) => `  s${i}: { uses: util.echo, with: { values: { v: *b } } }`).join('\n')}\n`;
    expect(problems(big)[0]!.message).toMatch(/compiled pipeline is \d+ bytes/);
  });

  it('refuses durations and retry policies Temporal would reject, at their lines', () => {
    const step = (extra: string) => `name: x\nsteps:\n  a:\n    uses: util.echo\n${extra}`;
    expect(problems(step('    timeout: 0s\n'))[0]).toMatchObject({ code: 'SPEC_INVALID', line: 5, path: 'steps.a.timeout' });
    expect(problems(step('    heartbeat: 0\n'))[0]).toMatchObject({ code: 'SPEC_INVALID', line: 5 });
    expect(problems(step('    timeout: -5\n'))[0]).toMatchObject({ code: 'SPEC_INVALID', line: 5 });
    expect(problems(step('    timeout: 200000d\n'))[0]!.message).toContain("Temporal's limit");
    expect(problems(step('    timeout: 1m\n    heartbeat: 1m\n'))[0]).toMatchObject({
      code: 'SPEC_INVALID',
      line: 6,
      path: 'steps.a.heartbeat',
    });
    expect(problems(step('    heartbeat: 2h\n'))[0]!.message).toContain('shorter than the timeout');
    expect(problems(step('    retry: { initialInterval: 2m }\n'))[0]).toMatchObject({
      code: 'SPEC_INVALID',
      path: 'steps.a.retry.initialInterval',
    });
    expect(problems(step('    retry: { maximumAttempts: 100000000000 }\n'))[0]).toMatchObject({
      code: 'SPEC_INVALID',
      path: 'steps.a.retry.maximumAttempts',
    });
    expect(problems('name: x\nmaxParallel: 5000\nsteps:\n  a: { uses: util.echo }\n')[0]).toMatchObject({ code: 'SPEC_INVALID', line: 2 });
    const fromDefaults = problems('name: x\nstepDefaults: { timeout: 10s, heartbeat: 30s }\nsteps:\n  a: { uses: util.echo }\n');
    expect(fromDefaults[0]).toMatchObject({ code: 'SPEC_INVALID', line: 2, path: 'stepDefaults.heartbeat' });
    expect(
      compile(step('    timeout: 1m\n    heartbeat: 59s\n    retry: { initialInterval: 2m, maximumInterval: 5m }\n')).steps['a']!,
    ).toMatchObject({ timeoutMs: 60_000, heartbeatMs: 59_000 });
  });
});

describe('paths set by overrides', () => {
  const PIPE = `name: x
params: { data: in/a.csv, other: in/b.csv }
overridablePaths: [params.other]
monitor: { current: "\${params.data}", reference: { step: ingest } }
steps:
  ingest: { uses: ingest.file, with: { path: "\${params.data}" } }
  second: { uses: ingest.file, with: { path: "\${params.other}" } }
  fixed: { uses: ingest.file, with: { path: /mnt/anywhere.csv } }
`;
  const checked = (overrides: string[]) => {
    const seen: string[] = [];
    compilePipeline({
      file: 'p.yaml',
      text: PIPE,
      conf,
      catalog: registry,
      overrides,
      confinePath: (value, what) => void seen.push(`${what}=${value}`),
    });
    return seen;
  };

  it('checks the paths an override sets, not the ones the author wrote or marked overridable', () => {
    expect(checked([])).toEqual([]);
    expect(checked(['params.other=/elsewhere.csv'])).toEqual([]);
    expect(checked(['params.data=x.csv'])).toEqual([
      "step 'ingest' param 'path' (set by override params.data)=x.csv",
      'monitor.current (set by override params.data)=x.csv',
    ]);
  });

  it('reports a refused path as INPUT_INVALID at the step param', () => {
    const refuse = (): void => {
      throw new PipelineError('INPUT_INVALID', 'outside');
    };
    try {
      compilePipeline({ file: 'p.yaml', text: PIPE, conf, catalog: registry, overrides: ['params.data=/etc/passwd'], confinePath: refuse });
      expect.unreachable();
    } catch (e) {
      const list = (e as SpecErrors).problems;
      expect(list.map((p) => [p.code, p.where?.path?.join('.')])).toEqual([
        ['INPUT_INVALID', 'steps.ingest.with.path'],
        ['INPUT_INVALID', 'monitor.current'],
      ]);
    }
  });
});

describe('unknown keys do not hide other problems', () => {
  it('reports a typo together with a missing need and a bad reference', () => {
    const list = problems(
      'name: x\nsteps:\n  a:\n    uses: util.echo\n    timout: 5m\n  b:\n    uses: util.echo\n    needs: nope\n    with: { values: { v: "${params.none}" } }\n',
    );
    expect(list.map((p) => [p.code, p.line])).toEqual([
      ['SPEC_UNKNOWN_KEY', 5],
      ['DAG_MISSING_NEED', 8],
      ['EXPR_REFERENCE', 9],
    ]);
  });
});

describe('a pipeline with very many problems', () => {
  it('stops looking after 100 and says so', () => {
    const text = `name: x\nsteps:\n${Array.from({ length: 300 }, (_, i) => `  s${i}: { uses: util.echo, with: { values: { v: "\${params.p${i}}" } } }`).join('\n')}\n`;
    const list = problems(text);
    expect(list).toHaveLength(101);
    expect(list.slice(0, 100).every((p) => p.code === 'EXPR_REFERENCE')).toBe(true);
    expect(list[100]!.message).toBe('Stopped looking after 100 problems.');
  });
});

describe('pruneUntil', () => {
  const DAG = `
name: dag
steps:
  a: { uses: util.echo, with: { values: { n: 1 } } }
  b: { uses: util.echo, needs: a, with: { values: { n: 2 } } }
  side: { uses: util.echo, needs: a, with: { values: { n: 3 } } }
  c: { uses: util.echo, needs: [b], with: { values: { n: 4 } } }
  d: { uses: util.echo, needs: [c, side], with: { values: { n: 5 } } }
  other: { uses: util.echo, with: { values: { n: 6 } } }
`;

  it('keeps the step and everything it needs, transitively, in declaration order', () => {
    const full = compile(DAG);
    const c = pruneUntil(full, 'c');
    expect(c.order).toEqual(['a', 'b', 'c']);
    expect(Object.keys(c.steps).sort()).toEqual(['a', 'b', 'c']);
    expect(c.steps['c']).toEqual(full.steps['c']);
    expect(pruneUntil(full, 'd').order).toEqual(['a', 'b', 'side', 'c', 'd']);
    expect(pruneUntil(full, 'other').order).toEqual(['other']);
    // The compiled pipeline it was given stays whole.
    expect(full.order).toEqual(['a', 'b', 'side', 'c', 'd', 'other']);
    expect(Object.keys(full.steps)).toHaveLength(6);
  });

  it('refuses a step the pipeline does not have, naming the steps it has', () => {
    const full = compile(DAG);
    expect(() => pruneUntil(full, 'nope')).toThrow(PipelineError);
    try {
      pruneUntil(full, 'toString');
    } catch (e) {
      expect(e).toMatchObject({
        code: 'INPUT_INVALID',
        message: "until: pipeline 'dag' has no step 'toString'.",
        hint: 'Steps: a, b, side, c, d, other.',
      });
      return;
    }
    throw new Error('expected pruneUntil to throw');
  });
});
