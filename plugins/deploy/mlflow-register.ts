import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { decidePromotion, metricTag, moveAlias } from '../../engine/promotion.js';
import { aliasName as alias } from '../../engine/spec.js';
import { isArtifactRef } from '../../engine/types.js';
import { definePlugin } from '../sdk.js';

const params = z
  .object({
    /** The registered model. */
    name: z.string().min(1),
    /** The evaluation metric deciding promotion: a key of the `metrics` input. */
    metric: z.object({ key: z.string().min(1), goal: z.enum(['minimize', 'maximize']) }).strict(),
    /** Every new version gets `challenger`; it takes `champion` only when it beats the holder. */
    challenger: alias.default('challenger'),
    champion: alias.default('champion'),
    /** Relative margin the challenger must win by (0.01: 1% better). */
    minImprovement: z.number().min(0).default(0),
    /** auto: promote when better; never: register only; always: promote regardless. */
    promote: z.enum(['auto', 'never', 'always']).default('auto'),
    /** More artifacts stored beside the model in the version: file name -> artifact (a step output). */
    files: z.record(z.string().regex(/^[\w.-]+$/, 'file names are letters, digits, _ . and -'), z.unknown()).default({}),
    /** Without a model registry (file store, tracking off): skip with a warning, or fail. */
    requireRegistry: z.boolean().default(false),
  })
  .strict();

/**
 * deploy.mlflow-register — registers `model` (with `files` beside it) as a new version of a
 * registered model in MLflow, aliases it `challenger`, and moves `champion` to it only when it
 * beats the current champion on `metric` (read from the version tags mlpipe writes). The move is
 * recorded, so `mlpipe rollback` can undo it. A retried step finds its run and version again.
 * While MLflow is unreachable the step waits for it (up to `retry.serviceWait`, heartbeating
 * "waiting for MLflow at ..."); a rejection (4xx) fails the step at once.
 */
export const mlflowRegister = definePlugin({
  name: 'deploy.mlflow-register',
  version: '1',
  description: 'Registers a model version in MLflow as challenger and promotes it to champion when it beats the champion on a metric.',
  params,
  inputs: { model: 'model', metrics: 'metrics' },
  outputs: { registered: 'json', version: 'json', promoted: 'json', champion: 'json', reason: 'json' },
  cacheable: false,
  async run(ctx, p, inputs) {
    if (!ctx.models) {
      const reason = 'this worker has no model registry (MLFLOW_TRACKING_URI is not a tracking server)';
      if (p.requireRegistry)
        throw new PipelineError('TRACKING_ERROR', `deploy.mlflow-register: ${reason}.`, {
          hint: 'Point MLFLOW_TRACKING_URI at an MLflow tracking server (mlpipe dev starts one).',
        });
      ctx.logger.warn({}, `model '${p.name}' not registered: ${reason}`);
      return { registered: false, version: null, promoted: false, champion: null, reason };
    }
    const { registry, experiment } = ctx.models;
    const model = inputs.model;
    const metrics = (inputs.metrics ?? {}) as Record<string, unknown>;
    const value = metrics[p.metric.key];
    if (typeof value !== 'number') {
      throw new PipelineError(
        'PLUGIN_INPUT',
        `deploy.mlflow-register: the metrics input has no number '${p.metric.key}'. It has: ${Object.keys(metrics).join(', ') || 'nothing'}.`,
        {
          hint: 'Bind metrics to an evaluation step (inputs: { metrics: ${steps.evaluate.outputs.metrics} }) and name one of its keys.',
        },
      );
    }
    const extra = p.files;
    const files: Record<string, Uint8Array> = { [model.name ?? 'model.bin']: await ctx.store.get(model) };
    for (const [name, ref] of Object.entries(extra)) {
      if (!isArtifactRef(ref)) throw new PipelineError('PLUGIN_INPUT', `deploy.mlflow-register: files.${name} must be an artifact.`);
      files[name] = await ctx.store.get(ref);
    }
    files['mlpipe-artifacts.json'] = Buffer.from(JSON.stringify({ model, files: extra }, null, 2));
    const numeric = Object.entries(metrics).filter((e): e is [string, number] => typeof e[1] === 'number');
    const score = value;
    const service = { name: 'MLflow', location: registry.location, isUnavailable: (e: unknown) => registry.isUnavailable?.(e) ?? false };
    try {
      // Every call below is idempotent or looked up first (see adapters/mlflow/rest.ts), so the
      // whole registration can be tried again from the start after MLflow comes back.
      return await ctx.untilAvailable(service, () => register());
    } catch (e) {
      const status = (e as { httpStatus?: unknown } | undefined)?.httpStatus;
      if (!(typeof status === 'number' && status >= 400 && status < 500) || service.isUnavailable(e)) throw e;
      throw new PipelineError(
        'TRACKING_ERROR',
        `deploy.mlflow-register: MLflow at ${registry.location} rejected the registration of '${p.name}': ${e instanceof Error ? e.message : String(e)}`,
        {
          hint: 'Waiting cannot fix a rejection: check the model name, the aliases and the credentials (MLFLOW_TRACKING_*).',
          retryable: false,
          cause: e,
        },
      );
    }

    async function register() {
      const mv = await registry.publish({
        name: p.name,
        experiment,
        runKey: { tag: 'mlpipe.step_key', value: `${ctx.workflowId}/${ctx.runId}/${ctx.stepId}` },
        runName: ctx.stepId,
        runTags: {
          'mlpipe.pipeline': ctx.pipeline,
          'mlpipe.workflow_id': ctx.workflowId,
          'mlpipe.run_id': ctx.runId,
          'mlpipe.step': ctx.stepId,
        },
        files,
        versionTags: {
          'mlpipe.sha256': model.sha256,
          'mlpipe.file': model.name ?? 'model.bin',
          'mlpipe.pipeline': ctx.pipeline,
          'mlpipe.workflow_id': ctx.workflowId,
          'mlpipe.run_id': ctx.runId,
          ...Object.fromEntries(numeric.map(([k, v]) => [metricTag(k), String(v)])),
        },
      });
      await registry.setAlias(p.name, p.challenger, mv.version);
      const decision =
        p.promote === 'never'
          ? { promote: false, reason: 'promotion is off (promote: never)' }
          : p.promote === 'always'
            ? { promote: true, reason: 'promote: always' }
            : await decidePromotion(registry, p.name, p.champion, mv.version, {
                key: p.metric.key,
                goal: p.metric.goal,
                value: score,
                minImprovement: p.minImprovement,
              });
      let champion = (await registry.byAlias(p.name, p.champion))?.version ?? null;
      if (decision.promote) {
        await moveAlias(registry, p.name, p.champion, mv.version, 'promote', decision.reason);
        champion = mv.version;
      }
      ctx.logger.info(
        { version: mv.version, promoted: decision.promote },
        `registered ${p.name} version ${mv.version} as '${p.challenger}'; ${decision.promote ? `now '${p.champion}'` : `'${p.champion}' stays version ${champion}`}: ${decision.reason}`,
      );
      return { registered: true, version: mv.version, promoted: decision.promote, champion, reason: decision.reason };
    }
  },
});
