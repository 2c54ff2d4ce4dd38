/**
 * Champion / challenger promotion over a model registry: who holds an alias, whether a candidate
 * beats it on a metric, and the alias's history (so `rollback` knows where to go back to).
 * Only the ModelRegistry port: no I/O of its own.
 */
import { PipelineError } from './errors.js';
import type { ModelRegistry } from './ports.js';

/** Version tags mlpipe writes: the evaluation metrics a version was registered with. */
export const metricTag = (key: string): string => `mlpipe.metric.${key}`;
/** Registered-model tag holding an alias's moves (JSON, newest last, bounded). */
export const historyTag = (alias: string): string => `mlpipe.alias_history.${alias}`;
const HISTORY_MAX = 25;

export interface AliasMove {
  version: string;
  /** Who held the alias before this move (null: nobody). */
  previous: string | null;
  /**
   * A rollback's next step back: who held the restored version's place before it, so repeated
   * rollbacks walk down the history. Absent on promotions (their `previous` is the step back).
   */
  backTo?: string | null;
  action: 'promote' | 'rollback';
  reason: string;
  at: string;
}

export type Goal = 'minimize' | 'maximize';

/** Whether `candidate` beats `incumbent` by at least `minImprovement` (relative). */
export function beats(candidate: number, incumbent: number, goal: Goal, minImprovement = 0): boolean {
  if (!Number.isFinite(candidate)) return false;
  if (!Number.isFinite(incumbent)) return true;
  const margin = Math.abs(incumbent) * minImprovement;
  return goal === 'minimize' ? candidate < incumbent - margin : candidate > incumbent + margin;
}

export async function aliasHistory(registry: ModelRegistry, name: string, alias: string): Promise<AliasMove[]> {
  const raw = (await registry.modelTags(name))?.[historyTag(alias)];
  if (!raw) return [];
  try {
    return JSON.parse(raw) as AliasMove[];
  } catch {
    return [];
  }
}

/** Records a move in the alias's history, then makes it: a crash between the two leaves a recorded move that `rollback` can still undo. */
async function applyMove(registry: ModelRegistry, name: string, alias: string, history: AliasMove[], move: AliasMove): Promise<void> {
  await registry.setModelTag(name, historyTag(alias), JSON.stringify([...history, move].slice(-HISTORY_MAX)));
  await registry.setAlias(name, alias, move.version);
}

/** Points `alias` at `version` and records the move. Idempotent: no move when it is there already. */
export async function moveAlias(
  registry: ModelRegistry,
  name: string,
  alias: string,
  version: string,
  action: AliasMove['action'],
  reason: string,
  now = new Date(),
): Promise<{ previous: string | null; moved: boolean }> {
  const current = await registry.byAlias(name, alias);
  if (current?.version === version) return { previous: current.version, moved: false };
  const previous = current?.version ?? null;
  await applyMove(registry, name, alias, await aliasHistory(registry, name, alias), {
    version,
    previous,
    action,
    reason,
    at: now.toISOString(),
  });
  return { previous, moved: true };
}

/** Where a rollback from the version `move` gave the alias to goes (histories written before `backTo` kept it in `previous`). */
function stepBack(move: AliasMove): string | null {
  return move.action === 'rollback' && move.backTo !== undefined ? move.backTo : move.previous;
}

/** Moves `alias` back to the version that held it before the current one (or to `to`). */
export async function rollbackAlias(
  registry: ModelRegistry,
  name: string,
  alias: string,
  to?: string,
  now = new Date(),
): Promise<{ from: string; to: string }> {
  const current = await registry.byAlias(name, alias);
  if (!current)
    throw new PipelineError('INPUT_INVALID', `Model '${name}' has no version aliased '${alias}', so there is nothing to roll back.`, {
      hint: `mlpipe promote ${name} <version> --alias ${alias}`,
    });
  const history = await aliasHistory(registry, name, alias);
  const lastMoveTo = (version: string): AliasMove | undefined => [...history].reverse().find((m) => m.version === version);
  let target = to;
  if (!target) {
    // The move that gave the alias to the current version says who held it before; a rollback
    // move points further back, so repeated rollbacks walk down the history.
    const last = lastMoveTo(current.version);
    target = (last ? stepBack(last) : undefined) ?? undefined;
    if (!target) {
      throw new PipelineError(
        'INPUT_INVALID',
        `Model '${name}': no earlier holder of '${alias}' is on record (version ${current.version} holds it${last ? ' since the first promotion' : ', set outside mlpipe'}).`,
        {
          hint: `Give the version: mlpipe rollback ${name} --alias ${alias} --to <version>`,
        },
      );
    }
  }
  if (!(await registry.version(name, target))) throw new PipelineError('INPUT_INVALID', `Model '${name}' has no version ${target}.`);
  const before = lastMoveTo(target);
  const move: AliasMove = {
    version: target,
    previous: current.version,
    backTo: before ? stepBack(before) : null,
    action: 'rollback',
    reason: `rolled back from version ${current.version}`,
    at: now.toISOString(),
  };
  await applyMove(registry, name, alias, history, move);
  return { from: current.version, to: target };
}

export interface PromotionDecision {
  promote: boolean;
  reason: string;
  incumbent?: { version: string; value?: number };
}

/** Decides whether `version` (with `value` on the metric) should take `alias` from its holder. */
export async function decidePromotion(
  registry: ModelRegistry,
  name: string,
  alias: string,
  version: string,
  metric: { key: string; goal: Goal; value: number; minImprovement?: number },
): Promise<PromotionDecision> {
  const holder = await registry.byAlias(name, alias);
  if (!holder) return { promote: true, reason: `no version holds '${alias}' yet` };
  if (holder.version === version) return { promote: true, reason: `version ${version} already holds '${alias}'`, incumbent: { version } };
  const raw = holder.tags[metricTag(metric.key)];
  const value = raw === undefined ? undefined : Number(raw);
  if (value === undefined || !Number.isFinite(value)) {
    return {
      promote: false,
      reason: `'${alias}' (version ${holder.version}) has no ${metric.key} on record to compare with; promote by hand if intended`,
      incumbent: { version: holder.version },
    };
  }
  const better = beats(metric.value, value, metric.goal, metric.minImprovement ?? 0);
  const cmp = `${metric.key} ${fmt(metric.value)} vs ${fmt(value)} of version ${holder.version}`;
  return {
    promote: better,
    reason: better ? `beats '${alias}': ${cmp}` : `does not beat '${alias}': ${cmp}`,
    incumbent: { version: holder.version, value },
  };
}

const fmt = (v: number): string => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : Number(v.toPrecision(5)).toString());
