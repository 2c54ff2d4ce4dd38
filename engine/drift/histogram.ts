/**
 * Binning that matches numpy to the last bit where it matters: linspace, histogram_bin_edges
 * with 'sturges', and np.histogram's bin assignment (the index computed from the edges'
 * affine map, then corrected against the actual edges; the last bin closed). Pure.
 */
import type { Freq } from './special.js';

/** numpy.linspace(start, stop, num) with endpoint: start + i*step, the last value exactly stop. */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const div = num - 1;
  const step = (stop - start) / div;
  for (let i = 0; i < num; i++) out[i] = step === 0 ? (i / div) * (stop - start) + start : i * step + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

function outerEdges(min: number, max: number): [number, number] {
  return min === max ? [min - 0.5, max + 0.5] : [min, max];
}

/** np.histogram_bin_edges(values, bins='sturges') for finite values with known min, max and count. */
export function sturgesEdges(min: number, max: number, count: number): Float64Array {
  const [first, last] = outerEdges(min, max);
  const width = (max - min) / (Math.log2(count) + 1);
  const bins = width ? Math.ceil((last - first) / width) : 1;
  return linspace(first, last, bins + 1);
}

/** np.histogram(values, bins=n) edges: n equal bins over [min, max]. */
export function equalEdges(min: number, max: number, bins: number): Float64Array {
  const [first, last] = outerEdges(min, max);
  return linspace(first, last, bins + 1);
}

/** A sample: its values, or its frequency table (each distinct value counted as often as it occurs). */
export type Sample = Float64Array | Freq;

/** Counts of a sample's values in equal-width bins with these edges, as np.histogram assigns them. */
export function histogramCounts(sample: Sample, edges: Float64Array): Float64Array {
  const values = sample instanceof Float64Array ? sample : sample.values;
  const weights = sample instanceof Float64Array ? undefined : sample.counts;
  const bins = edges.length - 1;
  const first = edges[0]!;
  const last = edges[bins]!;
  const counts = new Float64Array(bins);
  const norm = last - first;
  for (let k = 0; k < values.length; k++) {
    const v = values[k]!;
    if (!(v >= first && v <= last)) continue;
    let i = Math.trunc(((v - first) / norm) * bins);
    if (i === bins) i--;
    if (v < edges[i]!) i--;
    else if (v >= edges[i + 1]! && i !== bins - 1) i++;
    counts[i]! += weights ? weights[k]! : 1;
  }
  return counts;
}

/** np.histogram(values, edges, density=True)[0]: count / bin width / total, in numpy's order of operations. */
export function densities(sample: Sample, edges: Float64Array): Float64Array {
  const counts = histogramCounts(sample, edges);
  let total = 0;
  for (const c of counts) total += c;
  return counts.map((c, i) => c / (edges[i + 1]! - edges[i]!) / total);
}

/** np.histogram(values, bins=10, density=True) as Evidently's small_distribution: edges and densities. */
export function densityHistogram(sample: Sample, min: number, max: number, bins = 10): { x: number[]; y: number[] } {
  const edges = equalEdges(min, max, bins);
  return { x: Array.from(edges), y: Array.from(densities(sample, edges)) };
}
