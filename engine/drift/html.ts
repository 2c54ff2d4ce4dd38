/**
 * A self-contained HTML drift report: a dataset summary, then per column its test, threshold,
 * score and decision, with reference and current distributions drawn as inline SVG (overlaid
 * histograms for numeric columns, paired bars for categories). No script, no external resource:
 * it opens offline and prints. Pure.
 */
import type { ColumnDrift, DriftResult } from './index.js';

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(3) : Number(v.toPrecision(4)).toString();
}

const W = 360;
const H = 120;
const REF = '#4c78a8';
const CUR = '#f58518';

function numericChart(c: ColumnDrift): string {
  const r = c.reference.small_distribution;
  const q = c.current.small_distribution;
  const xs = [...(r.x as number[]), ...(q.x as number[])];
  if (!xs.length) return '';
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  const top = Math.max(...r.y, ...q.y) || 1;
  const sx = (v: number): number => (max === min ? W / 2 : ((v - min) / (max - min)) * (W - 20) + 10);
  const bars = (d: { x: (number | string | boolean)[]; y: number[] }, color: string, label: string): string =>
    d.y
      .map((y, i) => {
        const x0 = sx(d.x[i] as number);
        const x1 = sx(d.x[i + 1] as number);
        const h = (y / top) * (H - 20);
        return `<rect x="${x0.toFixed(1)}" y="${(H - 10 - h).toFixed(1)}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${h.toFixed(1)}" fill="${color}" fill-opacity="0.45" stroke="${color}"><title>${label} [${num(d.x[i] as number)}, ${num(d.x[i + 1] as number)}): density ${num(y)}</title></rect>`;
      })
      .join('');
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="distribution of ${esc(c.column_name)}">${bars(r, REF, 'reference')}${bars(q, CUR, 'current')}<text x="10" y="${H - 1}" font-size="9">${esc(num(min))}</text><text x="${W - 10}" y="${H - 1}" font-size="9" text-anchor="end">${esc(num(max))}</text></svg>`;
}

function categoricalChart(c: ColumnDrift): string {
  const keys = c.reference.small_distribution.x;
  const r = c.reference.small_distribution.y;
  const q = c.current.small_distribution.y;
  const nr = r.reduce((a, b) => a + b, 0) || 1;
  const nq = q.reduce((a, b) => a + b, 0) || 1;
  const top = Math.max(...r.map((v) => v / nr), ...q.map((v) => v / nq)) || 1;
  const slot = (W - 20) / Math.max(1, keys.length);
  const bar = Math.max(2, slot / 2 - 2);
  const parts = keys.map((k, i) => {
    const x = 10 + i * slot;
    const hr = (r[i]! / nr / top) * (H - 30);
    const hq = (q[i]! / nq / top) * (H - 30);
    return (
      `<rect x="${x.toFixed(1)}" y="${(H - 20 - hr).toFixed(1)}" width="${bar.toFixed(1)}" height="${hr.toFixed(1)}" fill="${REF}"><title>reference ${esc(String(k))}: ${r[i]}</title></rect>` +
      `<rect x="${(x + bar + 1).toFixed(1)}" y="${(H - 20 - hq).toFixed(1)}" width="${bar.toFixed(1)}" height="${hq.toFixed(1)}" fill="${CUR}"><title>current ${esc(String(k))}: ${q[i]}</title></rect>` +
      `<text x="${(x + bar).toFixed(1)}" y="${H - 6}" font-size="9" text-anchor="middle">${esc(String(k).slice(0, 12))}</text>`
    );
  });
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="distribution of ${esc(c.column_name)}">${parts.join('')}</svg>`;
}

export function renderDriftHtml(
  r: DriftResult,
  meta: { title?: string; reference?: string; current?: string; generatedAt?: Date } = {},
): string {
  const title = meta.title ?? 'Data drift report';
  const verdict = r.datasetDrift ? 'Dataset drift detected' : 'No dataset drift';
  const rows = r.columns
    .map(
      (c) => `<tr class="${c.drift_detected ? 'drift' : 'ok'}" data-column="${esc(c.column_name)}">
<td class="name">${esc(c.column_name)}</td><td>${c.column_type}</td><td>${esc(c.stattest_name)}</td><td class="num">${esc(num(c.stattest_threshold))}</td><td class="num score">${esc(num(c.drift_score))}</td>
<td class="verdict">${c.drift_detected ? 'Drift detected' : 'No drift'}</td><td>${c.column_type === 'num' ? numericChart(c) : categoricalChart(c)}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px}.sub{color:#666;margin-bottom:16px}
.summary{display:flex;gap:16px;margin:12px 0 20px}.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:140px}
.card b{display:block;font-size:22px}.verdict-drift{border-color:#d62728;color:#d62728}.verdict-ok{border-color:#2ca02c;color:#2ca02c}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #eee;padding:6px 8px;text-align:left;vertical-align:middle}
th{background:#fafafa}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.drift td.verdict{color:#d62728;font-weight:600}tr.ok td.verdict{color:#2ca02c}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
</style></head><body>
<h1>${esc(title)}</h1>
<div class="sub">${meta.reference ? `reference: ${esc(meta.reference)} &middot; ` : ''}${meta.current ? `current: ${esc(meta.current)} &middot; ` : ''}${esc((meta.generatedAt ?? new Date()).toISOString())}</div>
<div class="summary">
<div class="card ${r.datasetDrift ? 'verdict-drift' : 'verdict-ok'}" id="dataset-verdict"><b>${verdict}</b>drift share threshold ${num(r.driftShare)}</div>
<div class="card"><b id="drifted-count">${r.numberOfDriftedColumns} of ${r.numberOfColumns}</b>columns drifted</div>
<div class="card"><b id="drifted-share">${num(r.shareOfDriftedColumns * 100)}%</b>share of drifted columns</div>
</div>
<div class="legend">distributions:<span style="background:${REF}"></span>reference<span style="background:${CUR}"></span>current</div>
<table id="columns"><thead><tr><th>column</th><th>type</th><th>test</th><th>threshold</th><th>score</th><th>result</th><th>distribution</th></tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>
`;
}
