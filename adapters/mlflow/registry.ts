/**
 * The ModelRegistry port on an MLflow tracking server (REST). Versions are made from a run's
 * `model/` artifacts; the run is found again by a tag, and the version by its run, so a retried
 * registration never makes a second run or version.
 */
import { PipelineError } from '../../engine/errors.js';
import type { ModelRegistry, ModelVersionInfo } from '../../engine/ports.js';
import { isMlflowUnavailable, MlflowAlreadyExists, type MlflowRestClient, type RawModelVersion } from './rest.js';

function info(mv: RawModelVersion): ModelVersionInfo {
  return {
    name: mv.name,
    version: String(mv.version),
    source: mv.source ?? '',
    ...(mv.run_id ? { mlflowRunId: mv.run_id } : {}),
    tags: Object.fromEntries((mv.tags ?? []).map((t) => [t.key, t.value])),
    aliases: mv.aliases ?? [],
  };
}

export class MlflowModelRegistry implements ModelRegistry {
  constructor(private readonly client: MlflowRestClient) {}

  get location(): string {
    return this.client.location;
  }

  isUnavailable(error: unknown): boolean {
    return isMlflowUnavailable(error);
  }

  async publish(input: Parameters<ModelRegistry['publish']>[0]): Promise<ModelVersionInfo> {
    const c = this.client;
    const experimentId = await c.getOrCreateExperiment(input.experiment);
    const tags = Object.entries({ ...input.runTags, [input.runKey.tag]: input.runKey.value }).map(([key, value]) => ({ key, value }));
    const run =
      (await c.findRunByTag(experimentId, input.runKey.tag, input.runKey.value)) ??
      (await c.createRun({ experimentId, runName: input.runName, startTime: Date.now(), tags }));
    for (const [path, data] of Object.entries(input.files)) await c.uploadArtifact(run, `model/${path}`, data);
    try {
      await c.registry.ensureRegisteredModel(input.name);
    } catch (e) {
      if (!(e instanceof MlflowAlreadyExists)) throw e;
    }
    const versionTags = Object.entries(input.versionTags).map(([key, value]) => ({ key, value }));
    const version =
      (await c.registry.findVersion(input.name, run.mlflowRunId)) ??
      (await c.registry.createVersion(input.name, `${run.artifactUri}/model`, run.mlflowRunId, versionTags));
    const mv = await c.registry.getVersion(input.name, version);
    if (!mv) throw new PipelineError('TRACKING_ERROR', `MLflow lost version ${version} of '${input.name}' right after creating it.`);
    return info(mv);
  }

  async version(name: string, version: string): Promise<ModelVersionInfo | undefined> {
    const mv = await this.client.registry.getVersion(name, version);
    return mv ? info(mv) : undefined;
  }

  async byAlias(name: string, alias: string): Promise<ModelVersionInfo | undefined> {
    const mv = await this.client.registry.aliasVersion(name, alias);
    return mv ? info(mv) : undefined;
  }

  async setAlias(name: string, alias: string, version: string): Promise<void> {
    await this.client.registry.setAlias(name, alias, version);
  }

  async modelTags(name: string): Promise<Record<string, string> | undefined> {
    const m = await this.client.registry.getModel(name);
    return m ? Object.fromEntries((m.tags ?? []).map((t) => [t.key, t.value])) : undefined;
  }

  async setModelTag(name: string, key: string, value: string): Promise<void> {
    await this.client.registry.setModelTag(name, key, value);
  }

  async readFile(mv: ModelVersionInfo, path: string): Promise<Buffer> {
    return this.client.readArtifact(`${mv.source.replace(/\/+$/, '')}/${path}`);
  }
}
