import { describe, expect, it } from 'vitest';
import { PipelineError } from '../../engine/errors.js';
import { evaluate, parseExpression, parseTemplate, references, renderTemplate, resolveDeep } from '../../engine/expressions.js';

const scope = {
  params: { target: 'price', threshold: 0.8, list: [1, 2] },
  conf: { model: { hidden: [64, 32], name: 'wide' } },
  steps: { eval: { status: 'succeeded', outputs: { rmse: 41000, passed: true } } },
};

describe('expressions', () => {
  it('keeps the type of a lone expression and interpolates mixed text', () => {
    expect(renderTemplate(parseTemplate('${conf.model.hidden}'), scope)).toEqual([64, 32]);
    expect(renderTemplate(parseTemplate('${params.threshold}'), scope)).toBe(0.8);
    expect(renderTemplate(parseTemplate('model ${conf.model.name} on ${params.target}'), scope)).toBe('model wide on price');
    expect(renderTemplate(parseTemplate('list=${params.list}'), scope)).toBe('list=[1,2]');
  });

  it('evaluates comparisons and boolean logic', () => {
    const ev = (s: string): unknown => evaluate(parseExpression(s), scope);
    expect(ev('steps.eval.outputs.rmse < 50000 && steps.eval.outputs.passed')).toBe(true);
    expect(ev('steps.eval.outputs.rmse >= 50000 || !steps.eval.outputs.passed')).toBe(false);
    expect(ev("conf.model.name == 'wide'")).toBe(true);
    expect(ev('conf.model.name != "wide"')).toBe(false);
    expect(ev('(params.threshold > 0.5) && (params.threshold <= 0.8)')).toBe(true);
    expect(ev('params.list[1]')).toBe(2);
    expect(ev("conf['model'].name")).toBe('wide');
    expect(ev('steps.missing.outputs.x')).toBeNull();
  });

  it('writes $${ as a literal ${', () => {
    expect(renderTemplate(parseTemplate('cost $${x} for ${params.target}'), scope)).toBe('cost ${x} for price');
  });

  it('lists references', () => {
    expect(references(parseExpression('steps.a.outputs.b > params.t && !conf.x'))).toEqual([
      ['steps', 'a', 'outputs', 'b'],
      ['params', 't'],
      ['conf', 'x'],
    ]);
  });

  it('rejects malformed expressions with EXPR_SYNTAX', () => {
    for (const bad of ['params.', 'a ==', '(a', 'a # b', '', 'a..b']) {
      expect(() => parseExpression(bad), bad).toThrow(PipelineError);
    }
    expect(() => parseTemplate('${params.x')).toThrow(/Unclosed/);
  });

  it('rejects ordering comparisons of mixed types', () => {
    expect(() => evaluate(parseExpression("params.threshold < 'a'"), scope)).toThrow(/both sides must be numbers/);
  });

  it('resolves only what the predicate allows', () => {
    const value = { a: '${params.target}', b: ['${steps.eval.outputs.rmse}'], c: 'plain' };
    const resolved = resolveDeep(value, scope, (refs) => refs.every((r) => r[0] === 'params'));
    expect(resolved).toEqual({ a: 'price', b: ['${steps.eval.outputs.rmse}'], c: 'plain' });
  });
});
