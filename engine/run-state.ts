/**
 * The state of one pipeline run and the scheduling decisions on it. Pure and deterministic: the
 * workflow feeds it events (step started / finished / failed) and asks what to start next. Unit
 * tests drive it without Temporal.
 *
 * Rules:
 * - a step is ready when every step it needs has succeeded, been served from cache, or been skipped
 *   (a skipped parent skips the step too unless it says `ifNeedsSkipped: run`);
 * - ready steps start in declaration order, at most `maxParallel` running at once;
 * - a `when` that is false skips the step;
 * - after a failure nothing new starts; the run ends failed once running steps have finished.
 */
import { PipelineError } from './errors.js';
import { resolveDeep, truthy } from './expressions.js';
import type { PipelineStatus } from './contracts.js';
import type { CompiledPipeline, StepCall, StepResult, StepState } from './types.js';

const DONE_OK = new Set(['succeeded', 'cached']);
const TERMINAL = new Set(['succeeded', 'cached', 'skipped', 'failed', 'cancelled']);

export interface RunInfo {
  id: string;
  workflowId: string;
  pipeline: string;
  labels: Record<string, string>;
}

export interface Plan {
  start: StepCall[];
  skipped: string[];
}

export class RunState {
  readonly steps: Record<string, StepState> = {};
  private failure: { stepId: string; message: string } | undefined;
  private cancelled = false;

  constructor(
    readonly pipeline: CompiledPipeline,
    readonly run: RunInfo,
    private readonly options: { maxParallel?: number; cache?: boolean } = {},
  ) {
    for (const id of pipeline.order) this.steps[id] = { status: 'pending', attempt: 0 };
  }

  get maxParallel(): number {
    return this.options.maxParallel ?? this.pipeline.maxParallel;
  }

  running(): string[] {
    return this.pipeline.order.filter((id) => this.steps[id]!.status === 'running');
  }

  /** The scope `${...}` expressions see at run time. */
  scope(): Record<string, unknown> {
    const steps: Record<string, unknown> = {};
    for (const id of this.pipeline.order) {
      const s = this.steps[id]!;
      steps[id] = { status: s.status, outputs: s.outputs ?? {} };
    }
    return { params: this.pipeline.params, conf: this.pipeline.config, steps, run: this.run };
  }

  /**
   * Decides what happens next at time `now` (ISO string, from the workflow clock). Marks skipped
   * steps and returns the calls to start; the caller must then call `started` for each.
   */
  plan(now: string): Plan {
    const skipped: string[] = [];
    const start: StepCall[] = [];
    if (this.failure || this.cancelled) return { start, skipped };
    let slots = this.maxParallel - this.running().length;
    // Skips can make later steps ready or skipped in turn: iterate to a fixed point.
    for (let changed = true; changed;) {
      changed = false;
      for (const id of this.pipeline.order) {
        const state = this.steps[id]!;
        if (state.status !== 'pending' || start.some((c) => c.stepId === id)) continue;
        const step = this.pipeline.steps[id]!;
        const parents = step.needs.map((n) => this.steps[n]!);
        if (!parents.every((p) => TERMINAL.has(p.status))) continue;
        if (parents.some((p) => p.status === 'failed' || p.status === 'cancelled')) continue;
        const skippedParent = step.needs.find((n) => this.steps[n]!.status === 'skipped');
        if (skippedParent && step.ifNeedsSkipped === 'skip') {
          this.skip(id, now, `needs '${skippedParent}', which was skipped`);
          skipped.push(id);
          changed = true;
          continue;
        }
        try {
          if (step.when !== undefined && !this.whenHolds(id)) {
            this.skip(id, now, `when: ${String(step.when)} is false`);
            skipped.push(id);
            changed = true;
            continue;
          }
          if (slots <= 0) continue;
          start.push(this.call(id));
          slots--;
        } catch (e) {
          if (!(e instanceof PipelineError)) throw e;
          // A runtime expression failed (e.g. comparing a missing output): the step fails, not the workflow task.
          this.failed(id, now, { type: e.code, message: `step '${id}': ${e.message}` });
          return { start, skipped };
        }
      }
    }
    return { start, skipped };
  }

  private whenHolds(id: string): boolean {
    const when = this.pipeline.steps[id]!.when;
    if (typeof when === 'boolean') return when;
    return truthy(resolveDeep(when, this.scope()));
  }

  private skip(id: string, now: string, reason: string): void {
    Object.assign(this.steps[id]!, { status: 'skipped', reason, startedAt: now, endedAt: now });
  }

  /** The fully resolved activity input for a step. Throws an EXPR_* PipelineError on a bad runtime value. */
  call(id: string): StepCall {
    const step = this.pipeline.steps[id]!;
    const scope = this.scope();
    const params = resolveDeep(step.with, scope) as Record<string, unknown>;
    const inputs = resolveDeep(step.inputs, scope) as Record<string, unknown>;
    return {
      runId: this.run.id,
      pipeline: this.pipeline.name,
      stepId: id,
      uses: step.uses,
      ...(step.pluginVersion ? { pluginVersion: step.pluginVersion } : {}),
      ...(this.pipeline.submitted ? { submitted: true } : {}),
      ...(step.files && Object.keys(step.files).length ? { files: step.files } : {}),
      ...(step.defer ? { defer: Object.keys(step.defer) } : {}),
      params,
      inputs,
      cache: step.cache && this.pipeline.cache && this.options.cache !== false,
      ...(step.cacheIgnore?.length ? { cacheIgnore: step.cacheIgnore } : {}),
      ...(step.env?.length ? { env: step.env } : {}),
      ...(this.pipeline.tracking?.enabled && this.pipeline.tracking.experiment ? { experiment: this.pipeline.tracking.experiment } : {}),
    };
  }

  started(id: string, now: string): void {
    Object.assign(this.steps[id]!, { status: 'running', attempt: 1, startedAt: now });
  }

  attempt(id: string, attempt: number, errors?: number): void {
    const s = this.steps[id]!;
    if (s.status !== 'running' || attempt <= s.attempt) return;
    s.attempt = attempt;
    if (errors !== undefined) s.errors = errors;
  }

  succeeded(id: string, result: StepResult): void {
    Object.assign(this.steps[id]!, {
      status: result.cached ? 'cached' : 'succeeded',
      attempt: result.attempt,
      ...(result.errors ? { errors: result.errors } : {}),
      startedAt: result.startedAt,
      endedAt: result.endedAt,
      outputs: result.outputs,
      cacheKey: result.cacheKey,
    });
  }

  failed(id: string, now: string, error: { type?: string; message: string }, attempt?: number): void {
    const s = this.steps[id]!;
    Object.assign(s, { status: 'failed', endedAt: now, error, attempt: Math.max(s.attempt, attempt ?? 0) });
    this.failure ??= { stepId: id, message: error.message };
  }

  stepCancelled(id: string, now: string): void {
    Object.assign(this.steps[id]!, { status: 'cancelled', endedAt: now });
  }

  cancel(now: string): void {
    this.cancelled = true;
    for (const id of this.pipeline.order) {
      const s = this.steps[id]!;
      if (s.status === 'running' || s.status === 'pending') Object.assign(s, { status: 'cancelled', endedAt: now });
    }
  }

  get failedStep(): { stepId: string; message: string } | undefined {
    return this.failure;
  }

  /** True when nothing runs and nothing more can start. */
  finished(): boolean {
    if (this.running().length > 0) return false;
    if (this.failure || this.cancelled) return true;
    return this.pipeline.order.every((id) => TERMINAL.has(this.steps[id]!.status));
  }

  status(state: PipelineStatus['state']): PipelineStatus {
    return { pipeline: this.pipeline.name, state, order: this.pipeline.order, steps: this.steps, error: this.failure?.message };
  }

  outputs(): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {};
    for (const id of this.pipeline.order) {
      const s = this.steps[id]!;
      if (DONE_OK.has(s.status)) out[id] = s.outputs ?? {};
    }
    return out;
  }
}
