import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPipeline } from '../../app/load-pipeline.js';
import { resolveInside } from '../../app/project.js';
import { composeConfig, parseOverride } from '../../engine/config.js';
import { PipelineError, SpecErrors } from '../../engine/errors.js';
import { checkInput, checkLabels, checkOverrides, decodeUtf8 } from '../../engine/limits.js';
import { memoryConf, registry } from './fakes.js';

const files = memoryConf({
  'housing/config.yaml': 'defaults:\n  - model: small\n  - training: default\n  - _self_\nseed: 1\ntraining:\n  epochs: 30\n',
  'housing/model/small.yaml': 'hidden: [32]\nactivation: relu\n',
  'housing/model/wide.yaml': 'hidden: [128, 64]\nactivation: relu\n',
  'housing/training/default.yaml': 'lr: 0.001\nepochs: 10\n',
  'housing/extra/fast.yaml': '# @package _global_\nfast: true\n',
  'flat.yaml': 'a: 1\n',
});

function compose(overrides: string[] = []) {
  return composeConfig(
    'housing',
    files,
    overrides.map((o, i) => parseOverride(o, i)),
  );
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof SpecErrors) return e.problems[0]!.code;
    if (e instanceof PipelineError) return e.code;
    throw e;
  }
  return undefined;
}

describe('config composition', () => {
  it('merges the defaults list in order with _self_ last winning', () => {
    const c = compose();
    expect(c.config).toEqual({ model: { hidden: [32], activation: 'relu' }, training: { lr: 0.001, epochs: 30 }, seed: 1 });
    expect(c.choices).toEqual({ model: 'small', training: 'default' });
    expect(c.sources).toEqual(['conf/housing/model/small.yaml', 'conf/housing/training/default.yaml', 'conf/housing/config.yaml']);
  });

  it('selects group options and sets, adds, upserts and deletes values', () => {
    const c = compose(['model=wide', 'training.lr=0.01', '+new.key=[1, 2]', '++seed=7', '~model.activation']);
    expect(c.config).toEqual({ model: { hidden: [128, 64] }, training: { lr: 0.01, epochs: 30 }, seed: 7, new: { key: [1, 2] } });
    expect(c.choices.model).toBe('wide');
  });

  it('adds a group that is not in the defaults list, honouring @package _global_', () => {
    expect(compose(['+extra=fast']).config['fast']).toBe(true);
  });

  it('reads a flat conf/<name>.yaml', () => {
    expect(composeConfig('flat', files).config).toEqual({ a: 1 });
  });

  it('rejects typos, existing keys on +, unknown options and missing configs with stable codes', () => {
    expect(code(() => compose(['training.lrr=1']))).toBe('OVERRIDE_UNKNOWN_KEY');
    expect(code(() => compose(['+seed=2']))).toBe('OVERRIDE_KEY_EXISTS');
    expect(code(() => compose(['model=huge']))).toBe('CONFIG_NOT_FOUND');
    expect(code(() => composeConfig('nope', files))).toBe('CONFIG_NOT_FOUND');
    expect(code(() => compose(['~nothing.here']))).toBe('OVERRIDE_UNKNOWN_KEY');
  });

  it('suggests the closest key for a typo', () => {
    expect(() => compose(['training.lrr=1'])).toThrow(/Did you mean 'training.lr'/);
  });

  it('parses override values as YAML and rejects malformed overrides', () => {
    expect(parseOverride('a.b=0.01')).toMatchObject({ kind: 'set', path: ['a', 'b'], value: 0.01 });
    expect(parseOverride('+a=[1,2]')).toMatchObject({ kind: 'add', value: [1, 2] });
    expect(parseOverride("a='x: y'")).toMatchObject({ value: 'x: y' });
    expect(parseOverride('~a.b')).toMatchObject({ kind: 'delete', path: ['a', 'b'] });
    for (const bad of ['=1', 'a', 'a b=1', 'a=[1,', '+=2', '.a=1']) {
      expect(
        code(() => parseOverride(bad)),
        bad,
      ).toBe('OVERRIDE_MALFORMED');
    }
  });
});

describe('config options and keys from overrides', () => {
  it('refuses option names that are paths, naming the value', () => {
    for (const bad of ['training=../../x', 'model=../model/wide', '+extra=../../etc/passwd', 'model=/etc/passwd', 'model=a/b']) {
      expect(
        code(() => compose([bad])),
        bad,
      ).toBe('INPUT_INVALID');
    }
    expect(() => compose(['training=../../x'])).toThrow(/'\.\.\/\.\.\/x' is not a config option name/);
  });

  it('finds own keys only: constructor and toString are unknown keys, not inherited ones', () => {
    expect(code(() => compose(['training.constructor=1']))).toBe('OVERRIDE_UNKNOWN_KEY');
    expect(code(() => compose(['~model.toString']))).toBe('OVERRIDE_UNKNOWN_KEY');
    expect(compose(['+training.constructor=1']).config['training']).toEqual({ lr: 0.001, epochs: 30, constructor: 1 });
  });

  it('reports every bad override of a config together', () => {
    try {
      compose(['training.lrr=1', 'model=../x', '+seed=3']);
      expect.unreachable();
    } catch (e) {
      expect((e as SpecErrors).problems.map((p) => p.code)).toEqual(['INPUT_INVALID', 'OVERRIDE_UNKNOWN_KEY', 'OVERRIDE_KEY_EXISTS']);
    }
  });
});

describe('paths from a run stay inside the project', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-confine-'));
  const outside = mkdtempSync(join(tmpdir(), 'mlpipe-outside-'));
  writeFileSync(join(outside, 'secret.yaml'), 'name: secret\nsteps:\n  a: { uses: util.echo }\n');
  writeFileSync(join(outside, 'data.csv'), 'a\n1\n');
  mkdirSync(join(dir, 'pipelines'));
  mkdirSync(join(dir, 'conf', 'c', 'g'), { recursive: true });
  mkdirSync(join(dir, 'data'));
  const pipe =
    'name: p\nconfig: c\nparams: { data: data/in.csv }\nsteps:\n  ingest: { uses: ingest.file, with: { path: "${params.data}" } }\n';
  writeFileSync(join(dir, 'pipelines', 'p.yaml'), pipe);
  writeFileSync(join(dir, 'conf', 'c', 'config.yaml'), 'defaults:\n  - g: one\n  - _self_\n');
  writeFileSync(join(dir, 'conf', 'c', 'g', 'one.yaml'), 'x: 1\n');
  symlinkSync(join(outside, 'secret.yaml'), join(dir, 'pipelines', 'link.yaml'));
  symlinkSync(join(outside, 'secret.yaml'), join(dir, 'conf', 'c', 'g', 'two.yaml'));
  symlinkSync(outside, join(dir, 'data', 'out'));
  symlinkSync(join(outside, 'missing'), join(dir, 'data', 'dangling'));
  writeFileSync(
    join(dir, 'pipelines', 'latin1.yaml'),
    Buffer.concat([Buffer.from('name: p\ndescription: caf'), Buffer.from([0xe9]), Buffer.from('\nsteps: {}\n')]),
  );
  const load = (ref: string, overrides: string[] = []) => {
    try {
      loadPipeline(dir, ref, registry, overrides);
      return 'ok';
    } catch (e) {
      const p = e instanceof SpecErrors ? e.problems[0]! : (e as PipelineError);
      return `${p.code}: ${p.message}`;
    }
  };

  it('resolves pipeline names and relative paths inside the project', () => {
    expect(load('p')).toBe('ok');
    expect(load('pipelines/p.yaml')).toBe('ok');
    expect(load(join(dir, 'pipelines', 'p.yaml'))).toBe('ok');
    expect(load('nope')).toMatch(/^SPEC_NOT_FOUND/);
  });

  it('refuses traversal, absolute paths out, symlinks out, NUL, backslashes, encoded dots and long names', () => {
    const cases: [string, RegExp][] = [
      ['../../etc/passwd', /^INPUT_INVALID: Pipeline '..\/..\/etc\/passwd'/],
      ['../x.yaml', /'\.\.' segment/],
      [join(outside, 'secret.yaml'), /outside the project folder/],
      ['pipelines/link.yaml', /outside the project folder/],
      ['link', /outside the project folder/],
      ['p\u0000.yaml', /NUL byte/],
      ['pipelines\\p.yaml', /backslash/],
      ['%2e%2e/%2e%2e/etc/x.yaml', /percent-encoding/],
      ['%2e%2e', /not a pipeline name/],
      ['a'.repeat(300), /characters long/],
      ['p\uFFFD', /not valid UTF-8/],
    ];
    for (const [ref, message] of cases) expect(load(ref), JSON.stringify(ref)).toMatch(message);
    for (const [ref] of cases) expect(load(ref)).toMatch(/^INPUT_INVALID/);
  });

  it('confines config options and overridden data paths after symlink resolution', () => {
    expect(load('p', ['g=two'])).toMatch(/^INPUT_INVALID: Config file .*outside the project folder/);
    expect(load('p', ['params.data=data/other.csv'])).toBe('ok');
    expect(load('p', ['params.data=data/out/data.csv'])).toMatch(/^INPUT_INVALID: .*outside the project folder/);
    expect(load('p', ['params.data=data/dangling'])).toMatch(/symbolic link whose target does not exist/);
    expect(load('p', [`params.data=${join(outside, 'data.csv')}`])).toMatch(/^INPUT_INVALID/);
    expect(load('p', [`params.data=file://${join(outside, 'data.csv')}`])).toMatch(/^INPUT_INVALID/);
    expect(load('p', [`params.data=file://${dir}/%2e%2e/x.csv`])).toMatch(/^INPUT_INVALID: .*outside the project folder/);
    expect(resolveInside(dir, 'data/new/file.csv', 'x')).toMatch(/data\/new\/file\.csv$/);
  });

  it('reads spec files as strict UTF-8, naming the first bad byte', () => {
    expect(load('latin1')).toMatch(/^SPEC_YAML: pipelines\/latin1.yaml is not valid UTF-8: byte 24 \(0xe9\) on line 2/);
    expect(() => decodeUtf8('f', new Uint8Array([0x61, 0xf0, 0x9f, 0x98]))).toThrow(/byte 1 /);
    expect(() => decodeUtf8('f', new Uint8Array([0xed, 0xa0, 0x80]))).toThrow(/byte 0 /);
    expect(decodeUtf8('f', Buffer.from('ok ✓ 😀'))).toBe('ok ✓ 😀');
  });
});

describe('workflow input limits', () => {
  const codeOf = (fn: () => unknown) => code(fn);
  it('bounds overrides: count, length, text', () => {
    expect(codeOf(() => checkOverrides(Array(201).fill('a=1')))).toBe('INPUT_INVALID');
    expect(codeOf(() => checkOverrides(['a=' + 'x'.repeat(5000)]))).toBe('INPUT_INVALID');
    expect(codeOf(() => checkOverrides(['a=caf\uFFFD']))).toBe('INPUT_INVALID');
    expect(codeOf(() => checkOverrides(['a=\uD800']))).toBe('INPUT_INVALID');
    expect(codeOf(() => checkOverrides(['a=😀', 'model=wide']))).toBeUndefined();
  });

  it('bounds labels: count, key charset and length, value length and control characters', () => {
    expect(codeOf(() => checkLabels({ owner: 'ana', 'team/ml': 'x.y' }))).toBeUndefined();
    for (const bad of [
      { 'a b': 'x' },
      { ['k'.repeat(65)]: 'x' },
      { k: 'v'.repeat(257) },
      { k: 'a\nb' },
      { '../x': 'y' },
      { k: '\uFFFD' },
    ]) {
      expect(
        codeOf(() => checkLabels(bad)),
        JSON.stringify(bad),
      ).toBe('INPUT_INVALID');
    }
    expect(codeOf(() => checkLabels(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))))).toBe('INPUT_INVALID');
  });

  it('bounds the whole input', () => {
    expect(codeOf(() => checkInput({ pipeline: 'p', overrides: Array(100).fill(`a=${'x'.repeat(4000)}`) }))).toBe('INPUT_INVALID');
    expect(codeOf(() => checkInput({ pipeline: 'p', overrides: ['a=1'], labels: { k: 'v' } }))).toBeUndefined();
    expect(codeOf(() => checkInput(JSON.parse('{"pipeline": "p", "labels": {"__proto__": "x"}}')))).toBe('INPUT_INVALID');
    expect(
      codeOf(() => checkInput(JSON.parse('{"pipeline": "p", "trial": {"hpo": "h", "index": 0, "stepParams": {"__proto__": {}}}}'))),
    ).toBe('INPUT_INVALID');
  });
});
