import { describe, expect, it } from 'vitest';
import { compilePipeline } from '../../engine/compile.js';
import { RunState } from '../../engine/run-state.js';
import type { StepResult } from '../../engine/types.js';
import { memoryConf, registry } from './fakes.js';

const NOW = '2026-01-01T00:00:00.000Z';
function state(yaml: string, options = {}) {
  const p = compilePipeline({ file: 't.yaml', text: yaml, conf: memoryConf({}), catalog: registry });
  return new RunState(p, { id: 'r', workflowId: 'w', pipeline: p.name, labels: {} }, options);
}
const ok = (outputs: Record<string, unknown> = {}): StepResult => ({ outputs, cached: false, attempt: 1, startedAt: NOW, endedAt: NOW });

function startAll(s: RunState): string[] {
  const plan = s.plan(NOW);
  for (const c of plan.start) s.started(c.stepId, NOW);
  return plan.start.map((c) => c.stepId);
}

describe('RunState', () => {
  it('starts a step only when its parents are done, in declaration order', () => {
    const s = state(
      'name: d\nsteps:\n  a: { uses: util.echo }\n  c: { uses: util.echo, needs: [a, b] }\n  b: { uses: util.echo, needs: a }\n  d: { uses: util.echo }\n',
    );
    expect(startAll(s)).toEqual(['a', 'd']);
    s.succeeded('a', ok());
    expect(startAll(s)).toEqual(['b']);
    s.succeeded('b', ok());
    expect(startAll(s)).toEqual(['c']);
    s.succeeded('c', ok());
    s.succeeded('d', ok());
    expect(s.finished()).toBe(true);
  });

  it('never runs more than maxParallel steps', () => {
    const steps = Array.from({ length: 10 }, (_, i) => `  s${i}: { uses: util.echo }`).join('\n');
    const s = state(`name: w\nmaxParallel: 3\nsteps:\n${steps}\n`);
    expect(startAll(s)).toEqual(['s0', 's1', 's2']);
    expect(startAll(s)).toEqual([]);
    s.succeeded('s1', ok());
    expect(startAll(s)).toEqual(['s3']);
    expect(s.running()).toHaveLength(3);
  });

  it('the run-level maxParallel option overrides the pipeline', () => {
    const s = state('name: w\nmaxParallel: 3\nsteps:\n  a: { uses: util.echo }\n  b: { uses: util.echo }\n', { maxParallel: 1 });
    expect(startAll(s)).toEqual(['a']);
  });

  it('skips a step whose when is false, and its dependents unless they opt in', () => {
    const s = state(
      'name: c\nsteps:\n  a:\n    uses: util.echo\n    with: { values: { go: false } }\n  b: { uses: util.echo, needs: a, when: "${steps.a.outputs.go}" }\n  c: { uses: util.echo, needs: b }\n  d: { uses: util.echo, needs: b, ifNeedsSkipped: run, with: { values: { s: "${steps.b.status}" } } }\n',
    );
    startAll(s);
    s.succeeded('a', ok({ go: false }));
    const plan = s.plan(NOW);
    expect(plan.skipped).toEqual(['b', 'c']);
    expect(plan.start.map((c) => [c.stepId, c.params])).toEqual([['d', { values: { s: 'skipped' } }]]);
    expect(s.steps['b']!.reason).toContain('false');
    expect(s.steps['c']!.reason).toContain("needs 'b'");
  });

  it('resolves step outputs into params at start time', () => {
    const s = state(
      'name: o\nsteps:\n  a: { uses: util.echo, with: { values: { n: 2 } } }\n  b: { uses: util.echo, needs: a, with: { values: { twice: "${steps.a.outputs.n}", text: "n=${steps.a.outputs.n}" } } }\n',
    );
    startAll(s);
    s.succeeded('a', ok({ n: 2 }));
    expect(s.plan(NOW).start[0]!.params).toEqual({ values: { twice: 2, text: 'n=2' } });
  });

  it('after a failure starts nothing new and finishes once running steps end', () => {
    const s = state(
      'name: f\nmaxParallel: 2\nsteps:\n  a: { uses: util.echo }\n  b: { uses: util.echo }\n  c: { uses: util.echo }\n  d: { uses: util.echo, needs: a }\n',
    );
    expect(startAll(s)).toEqual(['a', 'b']);
    s.failed('a', NOW, { type: 'STEP_FAILED', message: 'boom' });
    expect(startAll(s)).toEqual([]);
    expect(s.finished()).toBe(false);
    s.succeeded('b', ok());
    expect(s.finished()).toBe(true);
    expect(s.failedStep).toEqual({ stepId: 'a', message: 'boom' });
    expect(s.steps['c']!.status).toBe('pending');
    expect(s.steps['d']!.status).toBe('pending');
  });

  it('fails the step, not the run loop, when a runtime expression cannot be evaluated', () => {
    const s = state(
      "name: e\nsteps:\n  a: { uses: util.echo, with: { values: { x: 'text' } } }\n  b: { uses: util.echo, needs: a, when: '${steps.a.outputs.x > 1}' }\n",
    );
    startAll(s);
    s.succeeded('a', ok({ x: 'text' }));
    expect(s.plan(NOW).start).toEqual([]);
    expect(s.steps['b']).toMatchObject({ status: 'failed', error: { type: 'EXPR_EVAL' } });
    expect(s.finished()).toBe(true);
  });

  it('records cache hits, attempts and cancellation', () => {
    const s = state('name: x\nsteps:\n  a: { uses: util.echo }\n  b: { uses: util.echo }\n  c: { uses: util.echo, needs: [a, b] }\n');
    startAll(s);
    s.attempt('a', 3);
    expect(s.steps['a']!.attempt).toBe(3);
    s.succeeded('b', { ...ok(), cached: true });
    expect(s.steps['b']!.status).toBe('cached');
    s.stepCancelled('a', NOW);
    s.cancel(NOW);
    expect(s.steps['c']!.status).toBe('cancelled');
    expect(s.finished()).toBe(true);
  });
});
