import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import type { StepContext } from '../sdk.js';

/** What every backtest's `folds` checkpoint holds: the folds' test window digests and the finished folds' forecasts. */
export interface FoldsCheckpoint {
  tests: string[];
  done: ArtifactRef[];
}

/**
 * The newest checkpoint of a backtest's `folds` stream when it belongs to this backtest (the same fold
 * test windows, and `sameWork`: the same training per fold) and its finished folds' forecasts are
 * still in the store; else undefined, and the folds start over.
 */
export async function resumeFolds<D extends FoldsCheckpoint>(
  ctx: StepContext,
  stream: StepContext['checkpoint'],
  tests: string[],
  sameWork: (doc: D) => boolean,
  describe: (doc: D) => Record<string, unknown> = () => ({}),
): Promise<D | undefined> {
  const latest = await stream.latest();
  if (!latest) return undefined;
  let doc: D;
  try {
    doc = JSON.parse(latest.data.toString('utf8')) as D;
  } catch {
    ctx.logger.warn({}, 'the backtest checkpoint does not parse; the folds start over');
    return undefined;
  }
  if (
    typeof doc !== 'object' ||
    doc === null ||
    !sameWork(doc) ||
    !Array.isArray(doc.tests) ||
    doc.tests.join() !== tests.join() ||
    !Array.isArray(doc.done) ||
    doc.done.length > tests.length ||
    !doc.done.every(isArtifactRef)
  ) {
    ctx.logger.warn({}, 'the backtest checkpoint was written for other folds; the folds start over');
    return undefined;
  }
  for (const ref of doc.done) {
    try {
      await ctx.store.get(ref);
    } catch {
      ctx.logger.warn({ sha256: ref.sha256 }, "a finished fold's forecasts are gone from the store; the folds start over");
      return undefined;
    }
  }
  ctx.logger.info(
    { foldsDone: doc.done.length, ...describe(doc) },
    `backtest: kept ${doc.done.length} finished fold(s) from the checkpoint`,
  );
  return doc;
}
