/**
 * System metrics of a step (lib/system-metrics.ts): MLflow's system/ names, sampled on a timer and
 * once at the end, GPU figures from nvidia-smi's CSV where it answers.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseNvidiaSmi, SystemSampler, watchSystem, type GpuSample } from '../../lib/system-metrics.js';

function sink() {
  const points: { values: Record<string, number>; step?: number }[] = [];
  return {
    points,
    logMetrics: (values: Record<string, number>, o?: { step?: number }) => void points.push({ values, step: o?.step }),
  };
}

const busyFor = (ms: number): void => {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
};

describe('system metrics', () => {
  it("parses nvidia-smi's CSV, one GPU per line, skipping what is not four numbers", () => {
    expect(parseNvidiaSmi('0, 87, 10240, 40960\n1, 3, 512, 40960\n[N/A], 1, 2, 3\n\n')).toEqual([
      { index: 0, utilizationPercent: 87, memoryUsedMiB: 10240, memoryTotalMiB: 40960 },
      { index: 1, utilizationPercent: 3, memoryUsedMiB: 512, memoryTotalMiB: 40960 },
    ]);
  });

  it('reads an nvidia-smi output of four GPUs: the two that report every figure become gpu_0 and gpu_1 metrics', async () => {
    const text = readFileSync(new URL('../fixtures/nvidia-smi/query-gpu.csv', import.meta.url), 'utf8');
    const gpus = parseNvidiaSmi(text);
    expect(gpus).toEqual([
      { index: 0, utilizationPercent: 97, memoryUsedMiB: 14839, memoryTotalMiB: 15360 },
      { index: 1, utilizationPercent: 0, memoryUsedMiB: 0, memoryTotalMiB: 15360 },
    ]);
    const v = await new SystemSampler(async () => gpus).sample();
    expect(Object.fromEntries(Object.entries(v).filter(([k]) => k.includes('gpu')))).toEqual({
      'system/gpu_0_utilization_percentage': 97,
      'system/gpu_0_memory_usage_megabytes': 15559.8,
      'system/gpu_0_memory_usage_percentage': 96.6,
      'system/gpu_1_utilization_percentage': 0,
      'system/gpu_1_memory_usage_megabytes': 0,
      'system/gpu_1_memory_usage_percentage': 0,
    });
  });

  it('a sample has CPU and memory of the machine and of this process, and the GPUs when there are some', async () => {
    const gpus: GpuSample[] = [{ index: 0, utilizationPercent: 75, memoryUsedMiB: 1024, memoryTotalMiB: 4096 }];
    const sampler = new SystemSampler(async () => gpus);
    busyFor(200);
    const v = await sampler.sample();
    expect(v['system/process_cpu_percentage']!).toBeGreaterThan(20);
    expect(v['system/cpu_utilization_percentage']!).toBeGreaterThan(0);
    expect(v['system/cpu_utilization_percentage']!).toBeLessThanOrEqual(100);
    expect(v['system/process_memory_rss_megabytes']!).toBeGreaterThan(10);
    expect(v['system/system_memory_usage_percentage']!).toBeGreaterThan(0);
    expect(v['system/system_memory_usage_megabytes']!).toBeGreaterThan(v['system/process_memory_rss_megabytes']! / 2);
    expect(v['system/process_memory_percentage']!).toBeGreaterThan(0);
    expect(v).toMatchObject({
      'system/gpu_0_utilization_percentage': 75,
      // nvidia-smi reports MiB; MLflow's megabytes are 10^6 bytes.
      'system/gpu_0_memory_usage_megabytes': 1073.7,
      'system/gpu_0_memory_usage_percentage': 25,
    });
  });

  it('samples on its timer and once at stop, numbered as MLflow steps; without nvidia-smi it stops asking for GPUs', async () => {
    let asked = 0;
    const s = sink();
    const watch = watchSystem(s, { everyMs: 30, gpu: async () => (asked++, undefined) });
    await new Promise((r) => setTimeout(r, 200));
    await watch.stop();
    const n = watch.samples;
    expect(n).toBeGreaterThanOrEqual(2);
    expect(s.points.map((p) => p.step)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(asked).toBe(1);
    for (const p of s.points) expect(Object.keys(p.values).filter((k) => k.includes('gpu'))).toEqual([]);
    // Stopped: no more samples.
    await new Promise((r) => setTimeout(r, 100));
    expect(s.points).toHaveLength(n);
  });
});
