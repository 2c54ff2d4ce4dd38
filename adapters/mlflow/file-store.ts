/**
 * MLflow's file store (`mlruns/`), written directly: the embedded default when no tracking URI is
 * configured. The layout is MLflow's own, so `mlflow ui --backend-store-uri file:./mlruns` and
 * `MlflowClient("file:./mlruns")` read it:
 *
 *   mlruns/<experiment id>/meta.yaml
 *   mlruns/<experiment id>/<run id>/meta.yaml          status as an integer (RUNNING=1 ... KILLED=5)
 *   mlruns/<experiment id>/<run id>/metrics/<key>      lines "<timestamp ms> <value> <step>"
 *   mlruns/<experiment id>/<run id>/params/<key>       the value
 *   mlruns/<experiment id>/<run id>/tags/<key>         the value
 *   mlruns/<experiment id>/<run id>/artifacts/...
 *
 * MLflow 3.7 and later label this backend legacy: its Python client reads it with
 * MLFLOW_ALLOW_FILE_STORE=true, and `mlflow migrate-filestore` moves it to a database. The file
 * store has no model registry here: registering a model needs a tracking server.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { TrackedRun, TrackingBackend } from '../../engine/ports.js';
import { isValidKey, type Batch, type MetricPoint } from '../../engine/tracking.js';

const STATUS = { RUNNING: 1, SCHEDULED: 2, FINISHED: 3, FAILED: 4, KILLED: 5 } as const;

/** YAML scalars as MLflow writes them (strings quoted when they would read as another type). */
function yamlValue(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number') return String(v);
  const s = String(v);
  if (s === '' || /^[\d.+-]|^(true|false|null|yes|no|on|off|~)$/i.test(s) || /[:#{}[\],&*!|>'"%@`\n]|^\s|\s$/.test(s)) return `'${s.replace(/'/g, "''")}'`;
  return s;
}

function yaml(doc: Record<string, unknown>): string {
  return Object.keys(doc)
    .sort()
    .map((k) => `${k}: ${Array.isArray(doc[k]) ? '[]' : yamlValue(doc[k])}\n`)
    .join('');
}

function readYaml(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([\w]+): ?(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if (v.startsWith("'") && v.endsWith("'")) v = v.slice(1, -1).replace(/''/g, "'");
    out[m[1]!] = v;
  }
  return out;
}

async function atomicWrite(file: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

export class MlflowFileStore implements TrackingBackend {
  readonly kind = 'file' as const;
  readonly root: string;
  readonly location: string;

  constructor(rootOrUri: string) {
    this.root = resolve(rootOrUri.startsWith('file:') ? new URL(rootOrUri.startsWith('file://') ? rootOrUri : `file://${resolve(rootOrUri.slice(5))}`).pathname : rootOrUri);
    this.location = pathToFileURL(this.root).toString();
  }

  private async ensureRoot(): Promise<void> {
    if (existsSync(join(this.root, '0', 'meta.yaml'))) return;
    await this.writeExperiment('0', 'Default');
  }

  private async writeExperiment(id: string, name: string): Promise<void> {
    const now = Date.now();
    await atomicWrite(
      join(this.root, id, 'meta.yaml'),
      yaml({ artifact_location: pathToFileURL(join(this.root, id)).toString(), creation_time: now, experiment_id: id, last_update_time: now, lifecycle_stage: 'active', name, workspace: 'default' }),
    );
  }

  private async experiments(): Promise<{ id: string; name: string; stage: string }[]> {
    if (!existsSync(this.root)) return [];
    const out: { id: string; name: string; stage: string }[] = [];
    for (const d of await readdir(this.root, { withFileTypes: true })) {
      if (!d.isDirectory() || d.name.startsWith('.')) continue;
      const meta = join(this.root, d.name, 'meta.yaml');
      if (!existsSync(meta)) continue;
      const m = readYaml(await readFile(meta, 'utf8'));
      out.push({ id: m['experiment_id'] ?? d.name, name: m['name'] ?? '', stage: m['lifecycle_stage'] ?? 'active' });
    }
    return out;
  }

  async getOrCreateExperiment(name: string): Promise<string> {
    await this.ensureRoot();
    const found = (await this.experiments()).find((e) => e.name === name);
    if (found) {
      if (found.stage !== 'active') throw new Error(`MLflow experiment '${name}' in ${this.location} is deleted; restore it or choose another name.`);
      return found.id;
    }
    // MLflow's own ids for file-store experiments: a random positive 63-bit integer.
    const id = (BigInt(`0x${randomBytes(8).toString('hex')}`) & 0x7fffffffffffffffn).toString();
    await this.writeExperiment(id, name);
    return id;
  }

  private runDir(experimentId: string, runId: string): string {
    return join(this.root, experimentId, runId);
  }

  private async findRunDir(runId: string): Promise<{ dir: string; experimentId: string }> {
    for (const e of await this.experiments()) {
      const dir = this.runDir(e.id, runId);
      if (existsSync(join(dir, 'meta.yaml'))) return { dir, experimentId: e.id };
    }
    throw new Error(`MLflow run ${runId} not found in ${this.location}.`);
  }

  async findRunByTag(experimentId: string, key: string, value: string): Promise<TrackedRun | undefined> {
    const expDir = join(this.root, experimentId);
    if (!existsSync(expDir)) return undefined;
    for (const d of await readdir(expDir, { withFileTypes: true })) {
      if (!d.isDirectory()) continue;
      const file = join(expDir, d.name, 'tags', ...key.split('/'));
      if (existsSync(file) && (await readFile(file, 'utf8')) === value) {
        return { runId: d.name, experimentId, artifactUri: pathToFileURL(join(expDir, d.name, 'artifacts')).toString() };
      }
    }
    return undefined;
  }

  async createRun(o: { experimentId: string; runName: string; startTime: number; tags: { key: string; value: string }[] }): Promise<TrackedRun> {
    const runId = randomUUID().replace(/-/g, '');
    const dir = this.runDir(o.experimentId, runId);
    const artifactUri = pathToFileURL(join(dir, 'artifacts')).toString();
    // MLflow treats a folder as a run only with metrics/, params/ and artifacts/ in it.
    for (const sub of ['metrics', 'params', 'tags', 'artifacts']) await mkdir(join(dir, sub), { recursive: true });
    // Tags first, meta.yaml last: a run is visible only once it is complete.
    for (const t of [...o.tags, { key: 'mlflow.runName', value: o.runName }]) await this.writeKeyed(dir, 'tags', t.key, t.value);
    await atomicWrite(
      join(dir, 'meta.yaml'),
      yaml({
        artifact_uri: artifactUri,
        end_time: null,
        entry_point_name: '',
        experiment_id: o.experimentId,
        lifecycle_stage: 'active',
        run_id: runId,
        run_name: o.runName,
        source_name: '',
        source_type: 4,
        source_version: '',
        start_time: o.startTime,
        status: STATUS.RUNNING,
        tags: [],
        user_id: safeUser(),
      }),
    );
    return { runId, experimentId: o.experimentId, artifactUri };
  }

  private async writeKeyed(dir: string, kind: 'tags' | 'params', key: string, value: string): Promise<void> {
    if (!isValidKey(key)) throw new Error(`Invalid MLflow ${kind === 'tags' ? 'tag' : 'param'} key '${key}'.`);
    const file = join(dir, kind, ...key.split('/'));
    if (kind === 'params' && existsSync(file)) {
      const old = await readFile(file, 'utf8');
      if (old !== value) throw new Error(`MLflow param '${key}' is already '${old}'; params cannot change (new value '${value}').`);
      return;
    }
    await atomicWrite(file, value);
  }

  async logBatch(runId: string, batch: Batch): Promise<void> {
    const { dir } = await this.findRunDir(runId);
    for (const p of batch.params) await this.writeKeyed(dir, 'params', p.key, p.value);
    for (const t of batch.tags) await this.writeKeyed(dir, 'tags', t.key, t.value);
    const byKey = new Map<string, MetricPoint[]>();
    for (const m of batch.metrics) {
      if (!isValidKey(m.key)) throw new Error(`Invalid MLflow metric key '${m.key}'.`);
      byKey.set(m.key, [...(byKey.get(m.key) ?? []), m]);
    }
    for (const [key, points] of byKey) {
      const file = join(dir, 'metrics', ...key.split('/'));
      await mkdir(dirname(file), { recursive: true });
      await appendFile(file, points.map((p) => `${p.timestamp} ${formatValue(p.value)} ${p.step}\n`).join(''));
    }
  }

  async metricHistory(runId: string, key: string): Promise<MetricPoint[]> {
    const { dir } = await this.findRunDir(runId);
    const file = join(dir, 'metrics', ...key.split('/'));
    if (!existsSync(file)) return [];
    return (await readFile(file, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [ts, v, step] = line.split(' ');
        return { key, timestamp: Number(ts), value: Number(v), step: Number(step ?? 0) };
      });
  }

  async updateRun(runId: string, status: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED', endTime?: number): Promise<void> {
    const { dir } = await this.findRunDir(runId);
    const text = await readFile(join(dir, 'meta.yaml'), 'utf8');
    const lines = text
      .split('\n')
      .map((l) => (l.startsWith('status:') ? `status: ${STATUS[status]}` : l.startsWith('end_time:') && endTime !== undefined ? `end_time: ${endTime}` : l));
    await atomicWrite(join(dir, 'meta.yaml'), lines.join('\n'));
  }

  async uploadArtifact(run: TrackedRun, path: string, data: Uint8Array): Promise<void> {
    const root = new URL(run.artifactUri).pathname;
    const file = resolve(root, ...path.split('/').filter((s) => s && s !== '.' && s !== '..'));
    if (!file.startsWith(root + sep)) throw new Error(`Artifact path '${path}' escapes the run's artifact folder.`);
    await atomicWrite(file, data);
  }
}

/** The value as Python's repr(float) would write it, so MLflow parses it back identically. */
function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (v === Infinity) return 'inf';
  if (v === -Infinity) return '-inf';
  const s = String(v);
  return /^-?\d+$/.test(s) ? `${s}.0` : s;
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
