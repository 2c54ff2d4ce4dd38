/**
 * The web UI's Models page: the model registry (an MLflow tracking server, when one is configured)
 * and the drift checks of the monitors (records in the artifact store).
 *
 * - registered models, their versions with the metrics mlpipe tagged them with
 *   (`mlpipe.metric.<key>`), the run that made each, the aliases and each alias's history of moves
 *   (the `mlpipe.alias_history.<alias>` model tag that promotion and rollback keep);
 * - a monitor's checks over time: `monitoring/<pipeline>/<time>-<run>` records that
 *   `computeMonitorDrift` writes (share of drifted columns, which drifted, the report artifacts).
 *
 * Read only. The registry client makes few attempts with a short timeout, so an unreachable MLflow
 * is said so quickly.
 */
import type { MlflowRestClient, RawModelVersion } from '../adapters/mlflow/rest.js';
import type { ArtifactStore } from '../engine/ports.js';
import { historyTag, metricTag, type AliasMove } from '../engine/promotion.js';
import type { ArtifactRef } from '../engine/types.js';
import { UiRequestError } from './runs.js';

export interface UiModelRow {
  name: string;
  description?: string;
  aliases: Record<string, string>;
  updatedAt?: string;
}

export interface UiModelVersion {
  version: string;
  createdAt?: string;
  status?: string;
  mlflowRunId?: string;
  aliases: string[];
  metrics: Record<string, number>;
  /** The pipeline run that registered it (from the version tags mlpipe writes). */
  pipeline?: string;
  workflowId?: string;
  runId?: string;
  sha256?: string;
}

export interface UiModel {
  name: string;
  description?: string;
  aliases: { alias: string; version: string; history: AliasMove[] }[];
  versions: UiModelVersion[];
  metricKeys: string[];
}

export interface DriftCheck {
  /** The record's last key segment (its time and run): the check's ID in URLs. */
  id: string;
  at: string;
  pipeline: string;
  workflowId?: string;
  runId?: string;
  datasetDrift: boolean;
  share: number;
  driftedColumns: string[];
  numberOfColumns: number;
  reference?: ArtifactRef;
  current?: ArtifactRef;
  referenceFrom?: { workflowId: string; runId: string; step: string; model?: string; version?: string };
  report?: ArtifactRef;
  html?: ArtifactRef;
}

export interface MonitorRow {
  /** The records' folder under monitoring/ (the pipeline name as a key segment). */
  id: string;
  pipeline: string;
  checks: number;
  last: DriftCheck;
}

const time = (v: number | string | undefined): string | undefined => {
  const n = Number(v);
  return v !== undefined && Number.isFinite(n) && n > 0 ? new Date(n).toISOString() : undefined;
};
const tags = (list: { key: string; value: string }[] | undefined): Record<string, string> =>
  Object.fromEntries((list ?? []).map((t) => [t.key, t.value]));
/** A record-key segment (engine/lineage.ts keySegment makes them): no '..', no '/'. */
const SEGMENT = /^(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.:=@-]{0,199}$/;

function versionOf(mv: RawModelVersion): UiModelVersion {
  const t = tags(mv.tags);
  const prefix = metricTag('');
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries(t))
    if (k.startsWith(prefix) && v.trim() !== '' && Number.isFinite(Number(v))) metrics[k.slice(prefix.length)] = Number(v);
  const createdAt = time(mv.creation_timestamp);
  return {
    version: String(mv.version),
    ...(createdAt ? { createdAt } : {}),
    ...(mv.status ? { status: mv.status } : {}),
    ...(mv.run_id ? { mlflowRunId: mv.run_id } : {}),
    aliases: mv.aliases ?? [],
    metrics,
    ...(t['mlpipe.pipeline'] ? { pipeline: t['mlpipe.pipeline'] } : {}),
    ...(t['mlpipe.workflow_id'] ? { workflowId: t['mlpipe.workflow_id'] } : {}),
    ...(t['mlpipe.run_id'] ? { runId: t['mlpipe.run_id'] } : {}),
    ...(t['mlpipe.sha256'] ? { sha256: t['mlpipe.sha256'] } : {}),
  };
}

function historyOf(raw: string | undefined): AliasMove[] {
  if (!raw) return [];
  try {
    const parsed = JSON.parse(raw) as unknown;
    return Array.isArray(parsed) ? (parsed as AliasMove[]).slice(-100) : [];
  } catch {
    return [];
  }
}

export class ModelSource {
  constructor(
    readonly store: ArtifactStore,
    readonly mlflow: MlflowRestClient | undefined,
  ) {}

  async models(): Promise<UiModelRow[]> {
    if (!this.mlflow) return [];
    return (await this.mlflow.registry.searchModels(500)).map((m) => {
      const updatedAt = time(m.last_updated_timestamp);
      return {
        name: m.name,
        ...(m.description ? { description: m.description } : {}),
        aliases: Object.fromEntries((m.aliases ?? []).map((a) => [a.alias, String(a.version)])),
        ...(updatedAt ? { updatedAt } : {}),
      };
    });
  }

  async model(name: string): Promise<UiModel> {
    if (!this.mlflow) throw new UiRequestError(404, 'No model registry is configured: set MLFLOW_TRACKING_URI to a tracking server.');
    const m = await this.mlflow.registry.getModel(name);
    if (!m) throw new UiRequestError(404, `The registry at ${this.mlflow.location} has no model '${name.slice(0, 200)}'.`);
    const versions = (await this.mlflow.registry.searchVersions(name, 500)).map(versionOf);
    versions.sort((a, b) => Number(b.version) - Number(a.version));
    // A version search does not carry aliases: the model's own list says who holds each.
    for (const v of versions)
      v.aliases = (m.aliases ?? [])
        .filter((a) => String(a.version) === v.version)
        .map((a) => a.alias)
        .sort();
    const t = tags(m.tags);
    const names = new Set((m.aliases ?? []).map((a) => a.alias));
    // An alias moved away from every version (or deleted) may still have a history.
    for (const k of Object.keys(t)) if (k.startsWith(historyTag(''))) names.add(k.slice(historyTag('').length));
    const aliases = [...names].sort().map((alias) => ({
      alias,
      version: String((m.aliases ?? []).find((a) => a.alias === alias)?.version ?? ''),
      history: historyOf(t[historyTag(alias)]),
    }));
    return {
      name: m.name,
      aliases,
      versions,
      metricKeys: [...new Set(versions.flatMap((v) => Object.keys(v.metrics)))].sort(),
    };
  }

  private async checkKeys(id?: string): Promise<string[]> {
    if (id !== undefined && !SEGMENT.test(id))
      throw new UiRequestError(400, 'A monitor ID is a pipeline name (letters, digits, . _ - @ : =).');
    return this.store.listRecords(id === undefined ? 'monitoring/' : `monitoring/${id}/`);
  }

  private async check(key: string): Promise<DriftCheck | undefined> {
    const r = await this.store.getRecord<Record<string, unknown>>(key);
    if (!r || typeof r !== 'object') return undefined;
    const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);
    return {
      id: key.split('/').pop()!,
      at: String(r['at'] ?? ''),
      pipeline: String(r['pipeline'] ?? key.split('/')[1]),
      ...(typeof r['workflowId'] === 'string' ? { workflowId: r['workflowId'] } : {}),
      ...(typeof r['runId'] === 'string' ? { runId: r['runId'] } : {}),
      datasetDrift: r['datasetDrift'] === true,
      share: num(r['share']),
      driftedColumns: Array.isArray(r['driftedColumns']) ? (r['driftedColumns'] as unknown[]).map(String).slice(0, 500) : [],
      numberOfColumns: num(r['numberOfColumns']),
      ...(r['reference'] ? { reference: r['reference'] as ArtifactRef } : {}),
      ...(r['current'] ? { current: r['current'] as ArtifactRef } : {}),
      ...(r['referenceFrom'] ? { referenceFrom: r['referenceFrom'] as DriftCheck['referenceFrom'] } : {}),
      ...(r['report'] ? { report: r['report'] as ArtifactRef } : {}),
      ...(r['html'] ? { html: r['html'] as ArtifactRef } : {}),
    };
  }

  /** Every monitor with checks on record, with its newest check. */
  async monitors(): Promise<MonitorRow[]> {
    const byId = new Map<string, string[]>();
    for (const k of await this.checkKeys()) {
      const [, id, name] = k.split('/');
      if (id && name) byId.set(id, [...(byId.get(id) ?? []), k]);
    }
    const rows: MonitorRow[] = [];
    for (const [id, keys] of byId) {
      const last = await this.check(keys[keys.length - 1]!);
      if (last) rows.push({ id, pipeline: last.pipeline, checks: keys.length, last });
    }
    return rows;
  }

  /** A monitor's checks, oldest first (the keys start with the check's time). */
  async checks(id: string, limit = 500): Promise<DriftCheck[]> {
    const keys = (await this.checkKeys(id)).slice(-limit);
    if (!keys.length) throw new UiRequestError(404, `No drift checks are on record for monitor '${id}'.`);
    return (await Promise.all(keys.map((k) => this.check(k)))).filter((c): c is DriftCheck => !!c);
  }

  /** One check's HTML report: the record names it, the request only picks the record. */
  async report(id: string, check: string): Promise<ArtifactRef> {
    if (!SEGMENT.test(check)) throw new UiRequestError(400, 'A check ID is its record name (letters, digits, . _ - @ : =).');
    const key = `monitoring/${id}/${check}`;
    if (!(await this.checkKeys(id)).includes(key)) throw new UiRequestError(404, `No drift check '${check}' of monitor '${id}'.`);
    const c = await this.check(key);
    if (!c?.html) throw new UiRequestError(404, `Drift check '${check}' has no HTML report.`);
    return c.html;
  }
}
