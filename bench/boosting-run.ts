/**
 * The mlpipe side of bench/boosting.ts, in its own process: runs train.xgboost or train.lightgbm on
 * two Parquet files (as a pipeline step would, from a dataset in the local store) and prints one JSON
 * line: the step's load and train seconds, the validation metric, the process's peak resident memory.
 *
 *   node --import tsx bench/boosting-run.ts <xgboost|lightgbm> <train.parquet> <validation.parquet> '<plugin params json>'
 */
import { testContext } from '../api/testing.js';
import { LocalArtifactStore } from '../adapters/local-store.js';
import { trainLightgbm, trainXgboost } from '../plugins/train/boosting.js';
import type { AnyPlugin } from '../plugins/sdk.js';
import { benchDir } from './tmp.js';

const [lib, trainPath, validPath, spec] = process.argv.slice(2) as [string, string, string, string];
const plugin: AnyPlugin = lib === 'xgboost' ? trainXgboost : trainLightgbm;
const store = new LocalArtifactStore(benchDir('boost'));
const ctx = testContext({ store });
const train = await store.putFile(trainPath, { name: 'train.parquet', mediaType: 'application/vnd.apache.parquet' });
const validation = await store.putFile(validPath, { name: 'validation.parquet', mediaType: 'application/vnd.apache.parquet' });
const started = performance.now();
const out = await plugin.run(ctx, plugin.params.parse(JSON.parse(spec)), { train, validation });
const wall = (performance.now() - started) / 1000;
const m = out['metrics'] as Record<string, number>;
const val = m['valRmse'] ?? m['valLogloss'];
console.log(
  JSON.stringify({
    impl: `mlpipe ${String(out['backend'])}`,
    loadSeconds: m['loadSeconds'],
    trainSeconds: m['trainSeconds'],
    stepSeconds: wall,
    valMetric: val,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    rows: m['rows'],
    features: m['features'],
  }),
);
