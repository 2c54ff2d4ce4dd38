/**
 * Reporting a trial's metric to Vertex AI the way the cloudml-hypertune package does: the file
 * $CLOUD_ML_HP_METRIC_FILE (default /tmp/hypertune/output.metrics) is rewritten whole on each
 * report with the last 100 reports, one JSON object per line, keys sorted; the metric and the
 * step are strings, the timestamp float seconds, the trial from $CLOUD_ML_TRIAL_ID.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const DEFAULT_METRIC_FILE = '/tmp/hypertune/output.metrics';

export class HyperTune {
  private readonly history: Record<string, string | number>[] = [];
  readonly file: string;
  private readonly trial: string;

  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.file = env['CLOUD_ML_HP_METRIC_FILE'] ?? DEFAULT_METRIC_FILE;
    this.trial = env['CLOUD_ML_TRIAL_ID'] ?? '0';
  }

  report(metricId: string, value: number, globalStep = 1, now = Date.now()): void {
    const entry: Record<string, string | number> = {
      global_step: String(globalStep),
      [metricId]: String(value),
      timestamp: now / 1000,
      trial: this.trial,
    };
    this.history.push(Object.fromEntries(Object.entries(entry).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
    if (this.history.length > 100) this.history.shift();
    mkdirSync(dirname(this.file), { recursive: true });
    writeFileSync(this.file, this.history.map((h) => JSON.stringify(h)).join('\n') + '\n');
  }
}
