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
 * Plus `mlruns/.experiment-<hash of the name>`: a file holding the id of the experiment created under
 * that name, so that stores in several processes create one experiment, not one each.
 *
 * MLflow 3.7 and later label this backend legacy: its Python client reads it with
 * MLFLOW_ALLOW_FILE_STORE=true, and `mlflow migrate-filestore` moves it to a database. The file
 * store has no model registry here: registering a model needs a tracking server.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, link, mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { PipelineError } from '../../engine/errors.js';
import type { NewRun, TrackedRun, TrackingBackend } from '../../engine/ports.js';
import { isValidKey, type Batch, type MetricPoint } from '../../engine/tracking.js';

const STATUS = { RUNNING: 1, SCHEDULED: 2, FINISHED: 3, FAILED: 4, KILLED: 5 } as const;

/**
 * meta.yaml as MLflow (PyYAML, YAML 1.1) writes and reads it: keys sorted, strings quoted when they
 * would read as another type (1.1 counts yes/no/on/off as booleans), multi-line values as block
 * scalars. Integers are read as bigint, so 63-bit ids and millisecond times keep every digit.
 */
function yaml(doc: Record<string, unknown>): string {
  const sorted = Object.fromEntries(
    Object.keys(doc)
      .sort()
      .map((k) => [k, doc[k]]),
  );
  return stringifyYaml(sorted, { version: '1.1', lineWidth: 0 });
}

function readYaml(text: string, file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(text, { version: '1.1', intAsBigInt: true });
  } catch (e) {
    throw new PipelineError('TRACKING_ERROR', `MLflow file ${file} is not valid YAML: ${(e as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new PipelineError('TRACKING_ERROR', `MLflow file ${file} is not a YAML mapping.`);
  return doc as Record<string, unknown>;
}

function str(v: unknown): string | undefined {
  return v === undefined || v === null ? undefined : String(v);
}

/** Tags that identify one run (`mlpipe.run_key`, `mlpipe.step_key`, ...): the ones the index holds. */
export function isIdempotencyTag(key: string): boolean {
  return /^mlpipe\.[a-z_]+_key$/.test(key);
}

/**
 * The index of runs by idempotency tag: one small file per (key, value) in the experiment folder,
 * `.mlpipe-tag-<digest>`, holding the run ID, written atomically (temp file and rename), so a
 * crash leaves the old entry or the new one, never half of one. MLflow lists only folders as runs,
 * so it ignores these files. `.mlpipe-tag-index` marks an experiment whose runs are all indexed.
 */
const INDEX_PREFIX = '.mlpipe-tag-';
const INDEXED_MARK = '.mlpipe-tag-index';

/** An index entry as stored: `{ runId, key, value }` (the field name is part of the file format; the ID is MLflow's). */
function parseIndexEntry(text: string): { mlflowRunId: string; key: string; value: string } | undefined {
  try {
    const e = JSON.parse(text) as Record<string, unknown>;
    const { runId: mlflowRunId, key, value } = e;
    return typeof mlflowRunId === 'string' && typeof key === 'string' && typeof value === 'string'
      ? { mlflowRunId, key, value }
      : undefined;
  } catch {
    return undefined;
  }
}

function indexFile(expDir: string, key: string, value: string): string {
  return join(expDir, `${INDEX_PREFIX}${createHash('sha256').update(`${key}\n${value}`).digest('hex').slice(0, 40)}`);
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
    // file:///abs/path (percent-encoded, as MLflow writes it), file:relative/path, or a plain path.
    this.root = resolve(
      rootOrUri.startsWith('file://') ? fileURLToPath(rootOrUri) : rootOrUri.startsWith('file:') ? rootOrUri.slice(5) : rootOrUri,
    );
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
      yaml({
        artifact_location: pathToFileURL(join(this.root, id)).toString(),
        creation_time: now,
        experiment_id: id,
        last_update_time: now,
        lifecycle_stage: 'active',
        name,
        workspace: 'default',
      }),
    );
    // A new experiment has no runs: its index is complete.
    if (!existsSync(join(this.root, id, INDEXED_MARK))) await atomicWrite(join(this.root, id, INDEXED_MARK), '1\n');
    this.indexed.add(id);
  }

  private async experiments(): Promise<{ id: string; name: string; stage: string }[]> {
    if (!existsSync(this.root)) return [];
    const out: { id: string; name: string; stage: string }[] = [];
    for (const d of await readdir(this.root, { withFileTypes: true })) {
      if (!d.isDirectory() || d.name.startsWith('.')) continue;
      const meta = join(this.root, d.name, 'meta.yaml');
      if (!existsSync(meta)) continue;
      const m = readYaml(await readFile(meta, 'utf8'), meta);
      out.push({ id: str(m['experiment_id']) ?? d.name, name: str(m['name']) ?? '', stage: str(m['lifecycle_stage']) ?? 'active' });
    }
    return out;
  }

  /**
   * Experiments found by name, with their meta.yaml's inode, size and mtime: while the file is
   * unchanged (not renamed, deleted or restored), so is the answer, and one stat replaces reading
   * every experiment's meta.yaml.
   */
  private readonly experimentIds = new Map<string, { id: string; version: string }>();

  private async metaVersion(experimentId: string): Promise<string | undefined> {
    const st = await stat(join(this.root, experimentId, 'meta.yaml')).catch(() => undefined);
    return st && `${st.ino}:${st.size}:${st.mtimeMs}`;
  }

  async getOrCreateExperiment(name: string): Promise<string> {
    const cached = this.experimentIds.get(name);
    if (cached) {
      if ((await this.metaVersion(cached.id)) === cached.version) return cached.id;
      this.experimentIds.delete(name);
    }
    const id = await this.lookUpOrCreateExperiment(name);
    const version = await this.metaVersion(id);
    if (version) this.experimentIds.set(name, { id, version });
    return id;
  }

  private async lookUpOrCreateExperiment(name: string): Promise<string> {
    await this.ensureRoot();
    for (let attempt = 0; ; attempt++) {
      const found = (await this.experiments()).find((e) => e.name === name);
      if (found) {
        if (found.stage !== 'active')
          throw new PipelineError(
            'TRACKING_ERROR',
            `MLflow experiment '${name}' in ${this.location} is deleted; restore it or choose another name.`,
          );
        return found.id;
      }
      // MLflow's own ids for file-store experiments: a random positive 63-bit integer.
      const id = (BigInt(`0x${randomBytes(8).toString('hex')}`) & 0x7fffffffffffffffn).toString();
      const claimed = await this.claimName(name, id);
      if (claimed === id) {
        await this.writeExperiment(id, name);
        return id;
      }
      // Another store claimed the name first: its experiment appears as soon as it writes meta.yaml.
      if (await this.waitForExperiment(claimed, name)) return claimed;
      // A stale claim (its creator died before writing, or the experiment was renamed since): drop it.
      if (attempt >= 2)
        throw new PipelineError('TRACKING_ERROR', `MLflow experiment '${name}' in ${this.location}: its creation claim does not resolve.`, {
          hint: `Remove ${this.claimFile(name)} if no mlpipe process is creating the experiment, and retry.`,
        });
      await unlink(this.claimFile(name)).catch(() => undefined);
    }
  }

  /**
   * Two stores (processes) that find no experiment by a name must not both create one: the name is
   * claimed by hard-linking a file holding the new id to `.experiment-<hash>` in the root, which
   * succeeds for one of them only. A plain file, not a folder: MLflow takes every folder of the
   * root for an experiment. Returns the id that holds the claim.
   */
  private async claimName(name: string, id: string): Promise<string> {
    const claim = this.claimFile(name);
    const tmp = `${claim}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${id}\n`);
    try {
      await link(tmp, claim);
      return id;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      return (await readFile(claim, 'utf8')).trim();
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  private claimFile(name: string): string {
    return join(this.root, `.experiment-${createHash('sha256').update(name).digest('hex').slice(0, 32)}`);
  }

  /** Whether experiment `id` named `name` appears within a few seconds (its creator is writing it). */
  private async waitForExperiment(id: string, name: string): Promise<boolean> {
    const meta = join(this.root, id, 'meta.yaml');
    for (let i = 0; i < 250; i++) {
      if (existsSync(meta)) return str(readYaml(await readFile(meta, 'utf8'), meta)['name']) === name;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  private runDir(experimentId: string, mlflowRunId: string): string {
    return join(this.root, experimentId, mlflowRunId);
  }

  /** Run folders found so far, by run ID: a run never moves, so each is looked up once. */
  private readonly runDirs = new Map<string, { dir: string; experimentId: string }>();
  /** Experiments whose runs are all in the tag index. */
  private readonly indexed = new Set<string>();

  private async findRunDir(mlflowRunId: string): Promise<{ dir: string; experimentId: string }> {
    const known = this.runDirs.get(mlflowRunId);
    if (known) return known;
    for (const e of await this.experiments()) {
      const dir = this.runDir(e.id, mlflowRunId);
      if (existsSync(join(dir, 'meta.yaml'))) {
        this.runDirs.set(mlflowRunId, { dir, experimentId: e.id });
        return { dir, experimentId: e.id };
      }
    }
    throw new PipelineError('TRACKING_ERROR', `MLflow run ${mlflowRunId} not found in ${this.location}.`);
  }

  private tracked(experimentId: string, mlflowRunId: string): TrackedRun {
    return { mlflowRunId, experimentId, artifactUri: pathToFileURL(join(this.runDir(experimentId, mlflowRunId), 'artifacts')).toString() };
  }

  private async writeIndex(experimentId: string, mlflowRunId: string, key: string, value: string): Promise<void> {
    await atomicWrite(indexFile(join(this.root, experimentId), key, value), JSON.stringify({ runId: mlflowRunId, key, value }));
  }

  /**
   * Indexes the runs of an experiment written before the index existed (or by another tool), once:
   * afterwards a lookup by idempotency tag reads one file.
   */
  private async ensureIndexed(experimentId: string): Promise<void> {
    const expDir = join(this.root, experimentId);
    if (this.indexed.has(experimentId)) return;
    if (existsSync(join(expDir, INDEXED_MARK))) {
      this.indexed.add(experimentId);
      return;
    }
    if (!existsSync(expDir)) return;
    for (const d of await readdir(expDir, { withFileTypes: true })) {
      if (!d.isDirectory() || !existsSync(join(expDir, d.name, 'meta.yaml'))) continue;
      const tagsDir = join(expDir, d.name, 'tags');
      for (const t of await readdir(tagsDir).catch(() => [] as string[])) {
        if (isIdempotencyTag(t)) await this.writeIndex(experimentId, d.name, t, await readFile(join(tagsDir, t), 'utf8'));
      }
    }
    await atomicWrite(join(expDir, INDEXED_MARK), '1\n');
    this.indexed.add(experimentId);
  }

  async findRunByTag(experimentId: string, key: string, value: string): Promise<TrackedRun | undefined> {
    const expDir = join(this.root, experimentId);
    if (!existsSync(expDir)) return undefined;
    if (isIdempotencyTag(key)) {
      await this.ensureIndexed(experimentId);
      let text: string;
      try {
        text = await readFile(indexFile(expDir, key, value), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
      const entry = parseIndexEntry(text);
      if (entry) {
        // The entry names its tag (no digest collision answers for another). Its run counts once its
        // meta.yaml is written: a run whose creation was cut short is not reused.
        if (entry.key !== key || entry.value !== value) return undefined;
        return existsSync(join(expDir, entry.mlflowRunId, 'meta.yaml')) ? this.tracked(experimentId, entry.mlflowRunId) : undefined;
      }
      // An unreadable entry (damaged outside this store): look the run up by its tag files, and re-index it.
      const found = await this.scanByTag(experimentId, key, value);
      if (found) await this.writeIndex(experimentId, found.mlflowRunId, key, value);
      return found;
    }
    return this.scanByTag(experimentId, key, value);
  }

  /** The slow way: every run folder of the experiment (for tags the index does not hold). */
  private async scanByTag(experimentId: string, key: string, value: string): Promise<TrackedRun | undefined> {
    const expDir = join(this.root, experimentId);
    for (const d of await readdir(expDir, { withFileTypes: true })) {
      if (!d.isDirectory() || !existsSync(join(expDir, d.name, 'meta.yaml'))) continue;
      const file = join(expDir, d.name, 'tags', ...key.split('/'));
      if (existsSync(file) && (await readFile(file, 'utf8')) === value) return this.tracked(experimentId, d.name);
    }
    return undefined;
  }

  async createRun(o: NewRun): Promise<TrackedRun> {
    const mlflowRunId = randomUUID().replace(/-/g, '');
    const dir = this.runDir(o.experimentId, mlflowRunId);
    const artifactUri = pathToFileURL(join(dir, 'artifacts')).toString();
    // MLflow treats a folder as a run only with metrics/, params/ and artifacts/ in it.
    await Promise.all(['metrics', 'params', 'tags', 'artifacts'].map((sub) => mkdir(join(dir, sub), { recursive: true })));
    // Tags and index entries first (side by side), meta.yaml last: a run is visible only once it is
    // complete, so its tags need no temp file and rename.
    // One file per key: a key given twice keeps its last value.
    const tags = [...new Map([...o.tags, { key: 'mlflow.runName', value: o.runName }].map((t) => [t.key, t])).values()];
    for (const t of tags) if (!isValidKey(t.key)) throw new PipelineError('TRACKING_ERROR', `Invalid MLflow tag key '${t.key}'.`);
    await Promise.all([
      ...tags.map(async (t) => {
        const file = join(dir, 'tags', ...t.key.split('/'));
        if (t.key.includes('/')) await mkdir(dirname(file), { recursive: true });
        await writeFile(file, t.value);
      }),
      ...o.tags.filter((t) => isIdempotencyTag(t.key)).map((t) => this.writeIndex(o.experimentId, mlflowRunId, t.key, t.value)),
    ]);
    await atomicWrite(
      join(dir, 'meta.yaml'),
      yaml({
        artifact_uri: artifactUri,
        end_time: null,
        entry_point_name: '',
        experiment_id: o.experimentId,
        lifecycle_stage: 'active',
        run_id: mlflowRunId,
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
    this.runDirs.set(mlflowRunId, { dir, experimentId: o.experimentId });
    return { mlflowRunId, experimentId: o.experimentId, artifactUri };
  }

  private async writeKeyed(dir: string, kind: 'tags' | 'params', key: string, value: string): Promise<void> {
    if (!isValidKey(key)) throw new PipelineError('TRACKING_ERROR', `Invalid MLflow ${kind === 'tags' ? 'tag' : 'param'} key '${key}'.`);
    const file = join(dir, kind, ...key.split('/'));
    if (kind === 'params' && existsSync(file)) {
      const old = await readFile(file, 'utf8');
      if (old !== value)
        throw new PipelineError(
          'TRACKING_ERROR',
          `MLflow param '${key}' is already '${old}'; params cannot change (new value '${value}').`,
        );
      return;
    }
    await atomicWrite(file, value);
  }

  async logBatch(mlflowRunId: string, batch: Batch): Promise<void> {
    const { dir, experimentId } = await this.findRunDir(mlflowRunId);
    for (const p of batch.params) await this.writeKeyed(dir, 'params', p.key, p.value);
    for (const t of batch.tags) {
      await this.writeKeyed(dir, 'tags', t.key, t.value);
      if (isIdempotencyTag(t.key)) await this.writeIndex(experimentId, mlflowRunId, t.key, t.value);
    }
    const byKey = new Map<string, MetricPoint[]>();
    for (const m of batch.metrics) {
      if (!isValidKey(m.key)) throw new PipelineError('TRACKING_ERROR', `Invalid MLflow metric key '${m.key}'.`);
      byKey.set(m.key, [...(byKey.get(m.key) ?? []), m]);
    }
    for (const [key, points] of byKey) {
      const file = join(dir, 'metrics', ...key.split('/'));
      await mkdir(dirname(file), { recursive: true });
      await appendFile(file, points.map((p) => `${p.timestamp} ${formatValue(p.value)} ${p.step}\n`).join(''));
    }
  }

  async metricHistory(mlflowRunId: string, key: string): Promise<MetricPoint[]> {
    const { dir } = await this.findRunDir(mlflowRunId);
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

  async updateRun(mlflowRunId: string, status: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED', endTime?: number): Promise<void> {
    const { dir } = await this.findRunDir(mlflowRunId);
    const file = join(dir, 'meta.yaml');
    const meta = readYaml(await readFile(file, 'utf8'), file);
    await atomicWrite(file, yaml({ ...meta, status: STATUS[status], ...(endTime !== undefined ? { end_time: endTime } : {}) }));
  }

  async uploadArtifact(run: TrackedRun, path: string, data: Uint8Array): Promise<void> {
    const root = fileURLToPath(run.artifactUri);
    const file = resolve(root, ...path.split('/').filter((s) => s && s !== '.' && s !== '..'));
    if (!file.startsWith(root + sep))
      throw new PipelineError('TRACKING_ERROR', `Artifact path '${path}' escapes the run's artifact folder.`);
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
