import { describe, expect, it } from 'vitest';
import { composeConfig, parseOverride } from '../../engine/config.js';
import { PipelineError, SpecErrors } from '../../engine/errors.js';
import { memoryConf } from './fakes.js';

const files = memoryConf({
  'housing/config.yaml': 'defaults:\n  - model: small\n  - training: default\n  - _self_\nseed: 1\ntraining:\n  epochs: 30\n',
  'housing/model/small.yaml': 'hidden: [32]\nactivation: relu\n',
  'housing/model/wide.yaml': 'hidden: [128, 64]\nactivation: relu\n',
  'housing/training/default.yaml': 'lr: 0.001\nepochs: 10\n',
  'housing/extra/fast.yaml': '# @package _global_\nfast: true\n',
  'flat.yaml': 'a: 1\n',
});

function compose(overrides: string[] = []) {
  return composeConfig('housing', files, overrides.map((o, i) => parseOverride(o, i)));
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
      expect(code(() => parseOverride(bad)), bad).toBe('OVERRIDE_MALFORMED');
    }
  });
});
