/** Prometheus text exposition for the prediction server: counters, one histogram, info. */

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const escape = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (labels: Record<string, string>): string => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

export class ServerMetrics {
  private counters = new Map<string, { help: string; values: Map<string, number> }>();
  private readonly buckets = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  private latencyCount = 0;
  private latencySum = 0;

  /** The served model's labels (`mlpipe_model_info`); replaced when the server swaps models. */
  constructor(public info: Record<string, string>) {}

  inc(name: string, help: string, labels: Record<string, string> = {}, by = 1): void {
    let c = this.counters.get(name);
    if (!c) this.counters.set(name, (c = { help, values: new Map() }));
    const key = labelText(labels);
    c.values.set(key, (c.values.get(key) ?? 0) + by);
  }

  observeLatency(seconds: number): void {
    this.latencyCount++;
    this.latencySum += seconds;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]!) this.buckets[i]!++;
  }

  /** The text format, version 0.0.4. `gauges` are sampled at scrape time. */
  render(gauges: Record<string, { help: string; value: number }> = {}): string {
    const out: string[] = [];
    out.push(
      '# HELP mlpipe_model_info The model being served.',
      '# TYPE mlpipe_model_info gauge',
      `mlpipe_model_info${labelText(this.info)} 1`,
    );
    for (const [name, c] of this.counters) {
      out.push(`# HELP ${name} ${c.help}`, `# TYPE ${name} counter`);
      for (const [labels, v] of c.values) out.push(`${name}${labels} ${v}`);
    }
    const h = 'mlpipe_predict_latency_seconds';
    out.push(`# HELP ${h} Time from request received to response written, per /predict request.`, `# TYPE ${h} histogram`);
    LATENCY_BUCKETS.forEach((le, i) => out.push(`${h}_bucket{le="${le}"} ${this.buckets[i]}`));
    out.push(`${h}_bucket{le="+Inf"} ${this.latencyCount}`, `${h}_sum ${this.latencySum}`, `${h}_count ${this.latencyCount}`);
    for (const [name, g] of Object.entries(gauges)) out.push(`# HELP ${name} ${g.help}`, `# TYPE ${name} gauge`, `${name} ${g.value}`);
    return out.join('\n') + '\n';
  }
}
