/**
 * System metrics of a running step: every few seconds, the machine's CPU and memory use, the
 * worker process's CPU and resident memory, and, where `nvidia-smi` answers, each GPU's utilisation
 * and memory. Reported as metric series under MLflow's `system/` names (the ones `mlflow.system_metrics`
 * logs: `system/cpu_utilization_percentage`, `system/system_memory_usage_megabytes`,
 * `system/gpu_0_utilization_percentage`, ...; plus `system/process_*` for the worker process), the
 * sample number as the MLflow step; the step's context also puts the latest sample in the heartbeat
 * details (`system`) for progress views.
 */
import { execFile } from 'node:child_process';
import { cpus, freemem, totalmem } from 'node:os';

/** What the sampler reports to: a StepContext's logMetrics. */
export interface SystemMetricsSink {
  logMetrics(values: Record<string, number>, options?: { step?: number; timestamp?: number }): void;
}

export interface GpuSample {
  index: number;
  utilizationPercent: number;
  memoryUsedMiB: number;
  memoryTotalMiB: number;
}

/** One GPU per line of `nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(text: string): GpuSample[] {
  const out: GpuSample[] = [];
  for (const line of text.split('\n')) {
    const cells = line.split(',').map((c) => Number(c.trim()));
    if (cells.length !== 4 || cells.some((c) => !Number.isFinite(c))) continue;
    const [index, utilizationPercent, memoryUsedMiB, memoryTotalMiB] = cells as [number, number, number, number];
    out.push({ index, utilizationPercent, memoryUsedMiB, memoryTotalMiB });
  }
  return out;
}

export type GpuQuery = () => Promise<GpuSample[] | undefined>;

/** Asks nvidia-smi; undefined when it is missing or fails (then the sampler stops asking). */
export const nvidiaSmi: GpuQuery = () =>
  new Promise((resolve) => {
    execFile(
      'nvidia-smi',
      ['--query-gpu=index,utilization.gpu,memory.used,memory.total', '--format=csv,noheader,nounits'],
      { timeout: 3_000 },
      (err, stdout) => {
        if (err) resolve(undefined);
        else resolve(parseNvidiaSmi(stdout));
      },
    );
  });

function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of cpus()) {
    const t = c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
    total += t;
    busy += t - c.times.idle;
  }
  return { busy, total };
}

const MB = 1e6;
const MiB = 2 ** 20;
const round = (v: number, digits = 1): number => Number(v.toFixed(digits));

/** The `system/` metrics between two points in time (CPU figures are averages over the interval). */
export class SystemSampler {
  private lastCpu = cpuTimes();
  private lastProcess = process.cpuUsage();
  private lastAt = performance.now();
  private gpuMissing = false;

  constructor(private readonly gpu: GpuQuery = nvidiaSmi) {}

  async sample(): Promise<Record<string, number>> {
    const now = performance.now();
    const cpu = cpuTimes();
    const proc = process.cpuUsage();
    const wallUs = Math.max(1, (now - this.lastAt) * 1000);
    const total = cpu.total - this.lastCpu.total;
    const used = totalmem() - freemem();
    const rss = process.memoryUsage.rss();
    // The names and units of MLflow's CPU, process and GPU monitors (mlflow/system_metrics/metrics/):
    // megabytes are 10^6 bytes; process CPU is psutil's Process.cpu_percent (100 = one core).
    const values: Record<string, number> = {
      'system/cpu_utilization_percentage': round(total > 0 ? ((cpu.busy - this.lastCpu.busy) / total) * 100 : 0),
      'system/system_memory_usage_megabytes': round(used / MB),
      'system/system_memory_usage_percentage': round((used / totalmem()) * 100),
      'system/process_cpu_percentage': round(((proc.user - this.lastProcess.user + proc.system - this.lastProcess.system) / wallUs) * 100),
      'system/process_memory_rss_megabytes': round(rss / MB),
      'system/process_memory_percentage': round((rss / totalmem()) * 100),
    };
    this.lastCpu = cpu;
    this.lastProcess = proc;
    this.lastAt = now;
    if (!this.gpuMissing) {
      const gpus = await this.gpu();
      if (!gpus) this.gpuMissing = true;
      for (const g of gpus ?? []) {
        values[`system/gpu_${g.index}_utilization_percentage`] = g.utilizationPercent;
        values[`system/gpu_${g.index}_memory_usage_megabytes`] = round((g.memoryUsedMiB * MiB) / MB);
        values[`system/gpu_${g.index}_memory_usage_percentage`] = round(g.memoryTotalMiB ? (g.memoryUsedMiB / g.memoryTotalMiB) * 100 : 0);
      }
    }
    return values;
  }
}

export interface SystemWatch {
  /** Takes a last sample (so that a short step still has one) and stops. */
  stop(): Promise<void>;
  readonly samples: number;
}

/** Samples every `everyMs` (default 5 s) into `sink` until stop(). */
export function watchSystem(sink: SystemMetricsSink, options: { everyMs?: number; gpu?: GpuQuery } = {}): SystemWatch {
  const sampler = new SystemSampler(options.gpu);
  let samples = 0;
  let busy: Promise<void> = Promise.resolve();
  const take = (): Promise<void> =>
    (busy = busy
      .then(async () => {
        const values = await sampler.sample();
        samples++;
        sink.logMetrics(values, { step: samples, timestamp: Date.now() });
      })
      .catch(() => undefined));
  const timer = setInterval(() => void take(), options.everyMs ?? 5_000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await take();
    },
    get samples() {
      return samples;
    },
  };
}
