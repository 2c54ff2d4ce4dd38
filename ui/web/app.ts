/// <reference lib="dom" />
/**
 * The mlpipe web UI: a page of plain DOM code, bundled with the layout library by the UI server.
 * Routes (the URL's hash): #/ runs, #/run/<workflowId>, #/artifact/<sha256>, #/compare/<a>,<b>,
 * #/searches, #/search/<workflowId>, #/models, #/model/<name>, #/monitor/<id>.
 * Every value from the API is written as text (textContent, SVG text), never parsed as markup.
 */
import dagre from '@dagrejs/dagre';
import type { Preview } from '../artifacts.js';
import type { Comparison } from '../compare.js';
import type { DriftCheck, MonitorRow, UiModel, UiModelRow } from '../models.js';
import type { SearchRow, UiSearch, UiTrial } from '../searches.js';
import type { LiveRun, RunRow, UiRun, UiStep } from '../runs.js';

type Child = Node | string | number | undefined | null | false;
const SVG = 'http://www.w3.org/2000/svg';

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c !== undefined && c !== null && c !== false) e.append(typeof c === 'number' ? String(c) : c);
  return e;
}
function svg(tag: string, attrs: Record<string, string | number> = {}, text?: string): SVGElement {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly service?: string,
  ) {
    super(message);
  }
}

async function api<T>(path: string, init?: RequestInit): Promise<T> {
  const r = await fetch(path, init);
  const body = (await r.json().catch(() => ({ error: `HTTP ${r.status}` }))) as T & { error?: string; service?: string };
  if (!r.ok) throw new ApiError(r.status, body.error ?? `HTTP ${r.status}`, body.service);
  return body;
}

const main = document.getElementById('main')!;
const banner = document.getElementById('banner')!;

function showProblem(e: unknown): void {
  const err = e as ApiError;
  banner.hidden = false;
  const fix =
    err.service === 'mlflow'
      ? 'start it (mlpipe dev --registry) or set MLFLOW_TRACKING_URI, then reload.'
      : err.service === 'store'
        ? 'check MLPIPE_ARTIFACTS and its credentials, then reload.'
        : 'start it (mlpipe dev) or set TEMPORAL_ADDRESS, then reload.';
  banner.textContent = err.status === 503 ? `${err.message} — ${fix}` : err.message;
}
function clearProblem(): void {
  banner.hidden = true;
  banner.textContent = '';
}

function pill(status: string): HTMLElement {
  return el('span', { class: `pill s-${status.toLowerCase()}`, 'data-status': status }, status);
}
function duration(ms?: number): string {
  if (ms === undefined || !Number.isFinite(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  return m < 60 ? `${m}m${Math.round((ms % 60_000) / 1000)}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}
const time = (iso?: string): string => (iso ? new Date(iso).toLocaleString() : '');
const json = (v: unknown): string => JSON.stringify(v, null, 2);
const enc = encodeURIComponent;

// ---- services ----

async function refreshHealth(): Promise<void> {
  const box = document.getElementById('services')!;
  try {
    const h = await api<{
      temporal: { ok?: boolean; address: string; error?: string };
      store: { ok?: boolean; location: string; error?: string };
      mlflow?: { ok?: boolean; location: string; error?: string };
    }>('/api/health');
    box.replaceChildren(
      el(
        'span',
        { class: h.temporal.ok ? '' : 'bad', title: h.temporal.error ?? '' },
        `Temporal ${h.temporal.address} ${h.temporal.ok ? '✓' : 'unreachable'}`,
      ),
      ' · ',
      el(
        'span',
        { class: h.store.ok ? '' : 'bad', title: h.store.error ?? '' },
        `store ${h.store.location} ${h.store.ok ? '✓' : 'unreachable'}`,
      ),
      ...(h.mlflow
        ? [
            ' · ',
            el(
              'span',
              { class: h.mlflow.ok ? '' : 'bad', title: h.mlflow.error ?? '' },
              `registry ${h.mlflow.location} ${h.mlflow.ok ? '✓' : 'unreachable'}`,
            ),
          ]
        : []),
    );
    if (!h.temporal.ok) showProblem(new ApiError(503, h.temporal.error ?? 'Temporal is unreachable'));
    else if (!h.store.ok) showProblem(new ApiError(503, h.store.error ?? 'The artifact store is unreachable'));
  } catch {
    box.replaceChildren(el('span', { class: 'bad' }, 'the UI server does not answer'));
  }
}

// ---- router ----

let cleanup: (() => void) | undefined;
async function route(): Promise<void> {
  cleanup?.();
  cleanup = undefined;
  clearProblem();
  const hash = location.hash.replace(/^#\/?/, '');
  const [page, ...rest] = hash.split('/');
  const arg = rest.map(decodeURIComponent).join('/');
  try {
    if (page === 'run' && arg) await runPage(arg);
    else if (page === 'artifact' && arg) await artifactPage(arg);
    else if (page === 'compare' && arg) await comparePage(arg.split(','));
    else if (page === 'searches') await searchesPage();
    else if (page === 'search' && arg) await searchPage(arg);
    else if (page === 'models') await modelsPage();
    else if (page === 'model' && arg) await modelPage(arg);
    else if (page === 'monitor' && arg) await monitorPage(arg);
    else await runsPage();
  } catch (e) {
    showProblem(e);
    if (main.textContent === 'Loading…') main.replaceChildren();
  }
}

// ---- runs ----

async function runsPage(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const pipeline = el('input', { placeholder: 'pipeline', id: 'f-pipeline', value: params.get('pipeline') ?? '' });
  const status = el('select', { id: 'f-status' }, el('option', { value: '' }, 'any status'));
  for (const s of ['running', 'completed', 'failed', 'cancelled', 'terminated']) status.append(el('option', { value: s }, s));
  const label = el('input', { placeholder: 'label k=v', id: 'f-label' });
  const compare = el('button', { id: 'compare' }, 'Compare selected');
  const table = el('table', { id: 'runs' });
  main.replaceChildren(el('h1', {}, 'Runs'), el('div', { class: 'filters' }, pipeline, status, label, compare), table);
  const selected = new Set<string>();
  compare.onclick = () => {
    if (selected.size >= 2) location.hash = `#/compare/${[...selected].map(enc).join(',')}`;
  };
  const load = async (): Promise<void> => {
    const q = new URLSearchParams();
    if (pipeline.value) q.set('pipeline', pipeline.value);
    if (status.value) q.set('status', status.value);
    if (label.value) q.set('label', label.value);
    try {
      const { runs } = await api<{ runs: RunRow[] }>(`/api/runs?${q}`);
      clearProblem();
      table.replaceChildren(
        el(
          'tr',
          {},
          el('th', {}, ''),
          el('th', {}, 'pipeline'),
          el('th', {}, 'run'),
          el('th', {}, 'status'),
          el('th', {}, 'started'),
          el('th', {}, 'duration'),
          el('th', {}, 'labels'),
        ),
        ...runs.map((r) => {
          const box = el('input', { type: 'checkbox' });
          box.checked = selected.has(r.workflowId);
          box.onchange = () => (box.checked ? selected.add(r.workflowId) : selected.delete(r.workflowId));
          return el(
            'tr',
            { 'data-workflow': r.workflowId },
            el('td', {}, box),
            el('td', {}, r.pipeline ?? '—'),
            el('td', {}, el('a', { href: `#/run/${enc(r.workflowId)}` }, r.workflowId)),
            el('td', {}, pill(r.status.toLowerCase())),
            el('td', {}, time(r.startedAt)),
            el('td', {}, duration(r.durationMs ?? Date.now() - Date.parse(r.startedAt))),
            el(
              'td',
              {},
              Object.entries(r.labels)
                .map(([k, v]) => `${k}=${v}`)
                .join(' '),
            ),
          );
        }),
      );
      if (!runs.length) table.append(el('tr', {}, el('td', { colspan: '7', class: 'muted' }, 'No runs match.')));
    } catch (e) {
      showProblem(e);
    }
  };
  for (const input of [pipeline, label]) input.onchange = () => void load();
  status.onchange = () => void load();
  await load();
  const timer = setInterval(() => void load(), 3000);
  cleanup = () => clearInterval(timer);
}

// ---- run ----

const NODE_W = 180;
const NODE_H = 42;

function drawDag(run: UiRun, onSelect: (id: string) => void): SVGElement {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 14, ranksep: 40, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const id of run.order) g.setNode(id, { width: NODE_W, height: NODE_H });
  for (const id of run.order) for (const n of run.steps[id]!.needs) if (run.steps[n]) g.setEdge(n, id);
  dagre.layout(g);
  const { width = 200, height = 100 } = g.graph();
  const root = svg('svg', { id: 'dag', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' });
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' });
  marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#9aa5b1' }));
  defs.append(marker);
  root.append(defs);
  for (const e of g.edges()) {
    const pts = g.edge(e).points ?? [];
    root.append(
      svg('path', {
        class: 'edge',
        d: pts.map((p: { x: number; y: number }, i: number) => `${i ? 'L' : 'M'}${p.x},${p.y}`).join(' '),
        'data-from': e.v,
        'data-to': e.w,
      }),
    );
  }
  for (const id of run.order) {
    const n = g.node(id);
    const s = run.steps[id]!;
    const node = svg('g', {
      class: 'step',
      'data-step': id,
      'data-status': s.status,
      transform: `translate(${n.x - NODE_W / 2},${n.y - NODE_H / 2})`,
    });
    node.append(svg('rect', { width: NODE_W, height: NODE_H, rx: 6 }));
    node.append(svg('text', { x: 8, y: 17, 'font-weight': 600 }, id.length > 24 ? `${id.slice(0, 23)}…` : id));
    node.append(
      svg('text', { x: 8, y: 33, class: 'sub' }, `${s.uses ?? ''}${s.status === 'pending' ? '' : ` · ${s.status}`}`.slice(0, 30)),
    );
    node.append(svg('title', {}, `${id}: ${s.status}`));
    node.addEventListener('click', () => onSelect(id));
    root.append(node);
  }
  return root;
}

function drawTimeline(run: UiRun): SVGElement {
  const started = run.order.map((id) => run.steps[id]!).filter((s) => s.startedAt);
  const t0 = Math.min(...started.map((s) => Date.parse(s.startedAt!)), Date.parse(run.startedAt));
  const now = run.closedAt ? Date.parse(run.closedAt) : Date.now();
  const t1 = Math.max(now, ...started.map((s) => (s.endedAt ? Date.parse(s.endedAt) : now)), t0 + 1);
  const rowH = 16;
  const w = 560;
  const root = svg('svg', { class: 'timeline', width: w + 160, height: started.length * rowH + 20, id: 'timeline' });
  started.forEach((s, i) => {
    const a = Date.parse(s.startedAt!);
    const b = s.endedAt ? Date.parse(s.endedAt) : now;
    const x = 150 + ((a - t0) / (t1 - t0)) * w;
    const bw = Math.max(2, ((b - a) / (t1 - t0)) * w);
    root.append(svg('text', { x: 0, y: i * rowH + 12 }, s.id.slice(0, 22)));
    const bar = svg('rect', { class: `bar s-${s.status}`, x, y: i * rowH + 2, width: bw, height: rowH - 4, 'data-step': s.id });
    bar.append(svg('title', {}, `${s.id} ${s.status} ${duration(b - a)}`));
    root.append(bar);
  });
  root.append(svg('text', { x: 150, y: started.length * rowH + 16 }, `0 — ${duration(t1 - t0)}`));
  return root;
}

/** Loss curves: `points` from a training history, or gathered live from progress reports. */
function drawChart(points: { epoch: number; loss?: number; valLoss?: number }[], title: string): HTMLElement {
  const w = 420;
  const h = 200;
  const pad = 36;
  const values = points.flatMap((p) => [p.loss, p.valLoss]).filter((v): v is number => v !== undefined);
  const box = el('div', { class: 'chart', 'data-points': String(points.length) }, el('div', { class: 'muted' }, title));
  if (!values.length) return box;
  const lo = Math.min(...values);
  const hi = Math.max(...values, lo + 1e-12);
  const e0 = Math.min(...points.map((p) => p.epoch));
  const e1 = Math.max(...points.map((p) => p.epoch), e0 + 1);
  const x = (e: number): number => pad + ((e - e0) / (e1 - e0)) * (w - pad - 8);
  const y = (v: number): number => h - pad + 8 - ((v - lo) / (hi - lo)) * (h - pad - 8);
  const root = svg('svg', { width: w, height: h });
  root.append(svg('line', { x1: pad, y1: h - pad + 8, x2: w, y2: h - pad + 8, stroke: '#9aa5b1' }));
  root.append(svg('text', { x: 0, y: 12 }, hi.toPrecision(3)), svg('text', { x: 0, y: h - pad + 8 }, lo.toPrecision(3)));
  root.append(svg('text', { x: pad, y: h - 4 }, `epoch ${e0}`), svg('text', { x: w - 60, y: h - 4 }, `epoch ${e1}`));
  for (const [key, cls] of [
    ['loss', 'loss'],
    ['valLoss', 'val'],
  ] as const) {
    const pts = points.filter((p) => p[key] !== undefined);
    if (!pts.length) continue;
    root.append(svg('polyline', { class: cls, points: pts.map((p) => `${x(p.epoch)},${y(p[key]!)}`).join(' ') }));
    for (const p of pts) root.append(svg('circle', { class: `${cls} point`, cx: x(p.epoch), cy: y(p[key]!), r: 2.5 }));
  }
  box.append(
    root,
    el(
      'div',
      { class: 'legend' },
      el('span', { style: 'color:#3b82f6' }, '● loss'),
      el('span', { style: 'color:#f59e0b' }, '● validation loss'),
    ),
  );
  return box;
}

function valueView(v: unknown): Node {
  if (
    v &&
    typeof v === 'object' &&
    (v as { kind?: string }).kind === 'artifact' &&
    typeof (v as { sha256?: unknown }).sha256 === 'string'
  ) {
    const ref = v as { sha256: string; name?: string; size?: number };
    return el(
      'a',
      { href: `#/artifact/${ref.sha256}`, class: 'artifact' },
      `${ref.name ?? 'artifact'}@${ref.sha256.slice(0, 12)}`,
      ref.size !== undefined ? ` (${ref.size} B)` : '',
    );
  }
  const text = JSON.stringify(v);
  return document.createTextNode(text === undefined ? '' : text.length > 200 ? `${text.slice(0, 197)}…` : text);
}

function kvTable(values: Record<string, unknown> | undefined, id: string): HTMLElement {
  const entries = Object.entries(values ?? {});
  if (!entries.length) return el('p', { class: 'muted' }, 'none');
  return el('table', { id }, ...entries.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, valueView(v)))));
}

function progressText(s: UiStep): string {
  const p = s.progress;
  if (!p) return '';
  const parts: string[] = [];
  if (p.done !== undefined) parts.push(`${p.unit ?? 'step'} ${p.done}${p.total !== undefined ? `/${p.total}` : ''}`);
  for (const [k, v] of Object.entries(p.metrics ?? {})) parts.push(`${k} ${Number(v.toPrecision(4))}`);
  if (p.etaMs !== undefined) parts.push(`eta ${duration(p.etaMs)}`);
  if (p.message) parts.push(p.message);
  return parts.join(' · ');
}

async function runPage(workflowId: string): Promise<void> {
  const runId = new URLSearchParams(location.hash.split('?')[1] ?? '').get('runId') ?? undefined;
  const path = `/api/runs/${enc(workflowId.split('?')[0]!)}`;
  const qs = runId ? `?runId=${enc(runId)}` : '';
  let run = await api<UiRun>(`${path}${qs}`);
  let selected = run.order.find((id) => ['running', 'retrying', 'failed'].includes(run.steps[id]!.status)) ?? run.order[0];
  /** Loss points gathered from live progress reports, per step. */
  const livePoints = new Map<string, { epoch: number; loss?: number; valLoss?: number }[]>();
  const historyCache = new Map<string, Preview>();

  const header = el('div', { id: 'run-header' });
  const dagBox = el('div', { class: 'panel', id: 'dag-box' });
  const timelineBox = el('div', { class: 'panel' });
  const details = el('div', { class: 'panel', id: 'details' });
  const chartBox = el('div', { class: 'panel', id: 'chart-box' });
  main.replaceChildren(
    header,
    el('div', { class: 'layout' }, el('div', {}, dagBox, el('h2', {}, 'Timeline'), timelineBox), el('div', {}, details, chartBox)),
  );

  const renderHeader = (): void => {
    const cancel = el('button', { class: 'danger', id: 'cancel' }, 'Cancel run');
    cancel.onclick = async () => {
      if (!confirm(`Cancel ${run.workflowId}?`)) return;
      try {
        await api(`${path}/cancel${qs}`, { method: 'POST', headers: { 'x-mlpipe-ui': '1' } });
      } catch (e) {
        showProblem(e);
      }
    };
    header.replaceChildren(
      el('h1', {}, `${run.pipeline} `, pill(run.state), ' ', el('span', { class: 'muted' }, run.workflowId)),
      el(
        'div',
        { class: 'muted' },
        `started ${time(run.startedAt)} · ${run.closedAt ? `took ${duration(run.durationMs)}` : `running for ${duration(Date.now() - Date.parse(run.startedAt))}`} · Temporal ${run.temporalStatus}`,
        Object.keys(run.labels).length
          ? ` · labels ${Object.entries(run.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')}`
          : '',
        run.overrides.length ? ` · overrides ${run.overrides.join(' ')}` : '',
      ),
      run.error ? el('pre', { id: 'run-error' }, run.error) : '',
      run.storeError ? el('p', { class: 'bad' }, run.storeError) : '',
      run.temporalStatus === 'RUNNING' ? cancel : '',
    );
  };
  const renderDag = (): void => {
    dagBox.replaceChildren(drawDag(run, (id) => ((selected = id), renderDag(), void renderDetails())));
    if (selected) dagBox.querySelector(`g.step[data-step="${CSS.escape(selected)}"]`)?.classList.add('selected');
  };
  const renderDetails = async (): Promise<void> => {
    const s = selected ? run.steps[selected] : undefined;
    if (!s) return void details.replaceChildren(el('p', { class: 'muted' }, 'No steps yet.'));
    details.replaceChildren(
      el('h2', {}, s.id, ' ', pill(s.status)),
      el('div', {}, el('b', {}, 'plugin '), `${s.uses ?? '?'}@${s.pluginVersion ?? '?'}`),
      s.description ? el('div', { class: 'muted' }, s.description) : '',
      el(
        'div',
        {},
        `attempt ${s.attempt}${s.errors ? ` (${s.errors} step errors)` : ''} · ${duration(s.durationMs)} · started ${time(s.startedAt)}`,
      ),
      s.progress ? el('div', { id: 'progress' }, el('b', {}, 'progress '), progressText(s)) : '',
      s.waiting ? el('div', { class: 'bad' }, s.waiting) : '',
      s.checkpoint ? el('div', {}, el('b', {}, 'checkpoint '), JSON.stringify(s.checkpoint)) : '',
      s.reason ? el('div', {}, el('b', {}, 'skipped: '), s.reason) : '',
      s.cachedFrom
        ? el('div', { id: 'provenance' }, el('b', {}, 'cache hit from '), `run ${s.cachedFrom.runId}, step ${s.cachedFrom.stepId}`)
        : s.status === 'cached'
          ? el('div', {}, 'served from the cache')
          : '',
      s.cacheKey ? el('div', { class: 'muted' }, `cache key ${s.cacheKey.slice(0, 16)}…`) : '',
      s.error ? el('pre', { class: 'error' }, `${s.error.type ?? ''} ${s.error.message}`) : '',
      s.failures.length
        ? el(
            'div',
            {},
            el('h2', {}, 'Failed attempts'),
            el(
              'table',
              { id: 'failures' },
              ...s.failures.map((f) => el('tr', {}, el('td', {}, f.attempt ?? ''), el('td', {}, f.type ?? ''), el('td', {}, f.message))),
            ),
          )
        : '',
      el('h2', {}, 'Params'),
      el('pre', { id: 'params' }, json(s.params ?? {})),
      el('h2', {}, 'Inputs'),
      kvTable(s.inputs, 'inputs'),
      el('h2', {}, 'Outputs'),
      kvTable(s.outputs, 'outputs'),
    );
    await renderChart();
  };
  /** The training chart of the selected step (or the first step with a history): live points, else its history artifact. */
  const renderChart = async (): Promise<void> => {
    const candidates = [selected, ...run.order].filter((id): id is string => !!id);
    const id = candidates.find((c) => livePoints.get(c)?.length || historyRef(run.steps[c]!));
    if (!id) return void chartBox.replaceChildren();
    const ref = historyRef(run.steps[id]!);
    if (ref) {
      let p = historyCache.get(ref);
      if (!p) {
        p = (await api<{ preview: Preview }>(`/api/artifacts/${ref}`).catch(() => ({ preview: { kind: 'binary' } as Preview }))).preview;
        historyCache.set(ref, p);
      }
      if (p.kind === 'history')
        return void chartBox.replaceChildren(el('h2', {}, `Training: ${id}`), drawChart(p.points, 'from the training history'));
    }
    chartBox.replaceChildren(el('h2', {}, `Training: ${id} (live)`), drawChart(livePoints.get(id) ?? [], 'from heartbeat progress'));
  };
  const render = (): void => {
    renderHeader();
    renderDag();
    timelineBox.replaceChildren(drawTimeline(run));
    void renderDetails();
  };
  render();

  let refetch: ReturnType<typeof setTimeout> | undefined;
  const events = new EventSource(`${path}/events${qs}`);
  events.onmessage = (m: MessageEvent<string>) => {
    const live = JSON.parse(m.data) as LiveRun;
    clearProblem();
    let ended = false;
    for (const [id, l] of Object.entries(live.steps)) {
      const s = run.steps[id];
      if (!s) {
        ended = true; // a step the page does not know yet: the run compiled since it loaded
        continue;
      }
      if (s.status !== l.status && !['pending', 'running', 'retrying'].includes(l.status)) ended = true;
      Object.assign(s, l);
      if (!l.progress) delete s.progress;
      const node = dagBox.querySelector(`g.step[data-step="${CSS.escape(id)}"]`);
      if (node && node.getAttribute('data-status') !== l.status) {
        node.setAttribute('data-status', l.status);
        const sub = node.querySelector('text.sub');
        if (sub) sub.textContent = `${s.uses ?? ''} · ${l.status}`.slice(0, 30);
      }
      const m2 = l.progress?.metrics;
      const loss = m2?.['loss'];
      const valLoss = m2?.['val_loss'] ?? m2?.['valLoss'];
      if (l.progress?.done !== undefined && (loss !== undefined || valLoss !== undefined)) {
        const pts = livePoints.get(id) ?? [];
        if (!pts.some((p) => p.epoch === l.progress!.done)) pts.push({ epoch: l.progress.done, loss, valLoss });
        livePoints.set(id, pts);
      }
    }
    run.state = live.state;
    run.temporalStatus = live.temporalStatus;
    if (live.error) run.error = live.error;
    timelineBox.replaceChildren(drawTimeline(run));
    if (ended || live.temporalStatus !== 'RUNNING') {
      clearTimeout(refetch);
      refetch = setTimeout(() => {
        api<UiRun>(`${path}${qs}`)
          .then((r) => {
            const layoutChanged = r.order.join() !== run.order.join();
            run = r;
            if (layoutChanged) render();
            else {
              renderHeader();
              for (const id of run.order)
                dagBox.querySelector(`g.step[data-step="${CSS.escape(id)}"]`)?.setAttribute('data-status', run.steps[id]!.status);
              void renderDetails();
            }
          })
          .catch(showProblem);
      }, 200);
    } else if (selected && run.steps[selected]?.progress) {
      // The details drawn before the step's first report have no progress line yet: draw them again.
      const box = document.getElementById('progress');
      if (box) {
        box.textContent = `progress ${progressText(run.steps[selected]!)}`;
        void renderChart();
      } else void renderDetails();
    }
  };
  events.addEventListener('problem', (m) =>
    showProblem(new ApiError(503, (JSON.parse((m as MessageEvent<string>).data) as { error: string }).error)),
  );
  cleanup = () => {
    events.close();
    clearTimeout(refetch);
  };
}

function historyRef(s: UiStep): string | undefined {
  const h = s.outputs?.['history'] as { sha256?: unknown } | undefined;
  return typeof h?.sha256 === 'string' ? h.sha256 : undefined;
}

// ---- artifact ----

async function artifactPage(sha: string): Promise<void> {
  const a = await api<{
    ref: { sha256: string; name?: string; size: number; mediaType: string; uri: string };
    producedBy: { workflowId: string; runId: string; stepId: string; output?: string }[];
    usedBy: { workflowId: string; runId: string; stepId: string }[];
    preview: Preview;
  }>(`/api/artifacts/${enc(sha)}`);
  const link = (l: { workflowId: string; stepId: string; output?: string }): HTMLElement =>
    el(
      'li',
      {},
      el('a', { href: `#/run/${enc(l.workflowId)}` }, l.workflowId),
      ` step ${l.stepId}${l.output ? ` (output ${l.output})` : ''}`,
    );
  const p = a.preview;
  const body: Child[] = [];
  if (p.kind === 'parquet') {
    body.push(
      el('p', { id: 'row-count' }, `${p.rows} rows, ${p.schema.length} columns`),
      el('h2', {}, 'Schema'),
      el(
        'table',
        { id: 'schema' },
        el('tr', {}, el('th', {}, 'column'), el('th', {}, 'type')),
        ...p.schema.map((c) => el('tr', { 'data-column': c.name }, el('td', {}, c.name), el('td', {}, c.type))),
      ),
      el('h2', {}, `First ${p.head.length} rows`),
      el(
        'table',
        { id: 'head' },
        el('tr', {}, ...p.schema.map((c) => el('th', {}, c.name))),
        ...p.head.map((r) => el('tr', {}, ...p.schema.map((c) => el('td', {}, r[c.name] === null ? 'null' : String(r[c.name]))))),
      ),
    );
  } else if (p.kind === 'history') body.push(drawChart(p.points, `${p.points.length} epochs`), el('pre', {}, json(p.points)));
  else if (p.kind === 'metrics') {
    const cols = Object.keys(p.table[0]?.values ?? {});
    body.push(
      el(
        'table',
        { id: 'metrics' },
        el('tr', {}, el('th', {}, 'metric'), ...cols.map((c) => el('th', {}, c))),
        ...p.table.map((r) => el('tr', {}, el('td', {}, r.metric), ...cols.map((c) => el('td', {}, String(r.values[c] ?? ''))))),
      ),
      el('h2', {}, 'JSON'),
      el('pre', {}, json(p.json)),
    );
  } else if (p.kind === 'json') body.push(el('pre', { id: 'json' }, json(p.json)));
  else if (p.kind === 'model')
    body.push(
      p.contract
        ? el('div', {}, el('h2', {}, 'ONNX contract'), el('pre', { id: 'contract' }, json(p.contract)))
        : el('p', { class: 'bad' }, p.error ?? 'no contract'),
    );
  else if (p.kind === 'html') body.push(el('iframe', { src: `/api/artifacts/${sha}/raw`, sandbox: '', title: a.ref.name ?? 'report' }));
  else if (p.kind === 'text') body.push(el('pre', {}, p.text, p.truncated ? '\n…' : ''));
  else body.push(el('p', { class: 'muted' }, 'Binary content: download it.'));
  main.replaceChildren(
    el('h1', {}, a.ref.name ?? 'artifact', ' ', el('span', { class: 'muted' }, a.ref.sha256)),
    el(
      'div',
      { class: 'muted' },
      `${a.ref.mediaType} · ${a.ref.size} bytes · `,
      el('a', { href: `/api/artifacts/${sha}/raw?download=1`, id: 'download' }, 'download'),
    ),
    el('div', { id: 'preview', 'data-kind': p.kind }, ...body),
    el('h2', {}, 'Produced by'),
    el('ul', {}, ...a.producedBy.map(link)),
    el('h2', {}, 'Used by'),
    el('ul', {}, ...a.usedBy.map(link)),
  );
}

// ---- compare ----

async function comparePage(ids: string[]): Promise<void> {
  const c = await api<Comparison>(`/api/compare?runs=${ids.map(enc).join(',')}`);
  const head = el(
    'tr',
    {},
    el('th', {}, ''),
    ...c.runs.map((r) => el('th', {}, el('a', { href: `#/run/${enc(r.workflowId)}` }, r.workflowId), ' ', pill(r.state))),
  );
  main.replaceChildren(
    el('h1', {}, `Compare ${c.runs.length} runs`),
    el('h2', {}, 'Params that differ'),
    c.params.length
      ? el(
          'table',
          { id: 'cmp-params' },
          head.cloneNode(true),
          ...c.params.map((p) => el('tr', {}, el('th', {}, p.path), ...p.values.map((v) => el('td', {}, v ?? '—')))),
        )
      : el('p', { class: 'muted' }, 'The runs have the same params.'),
    el('h2', {}, 'Metrics'),
    el(
      'table',
      { id: 'cmp-metrics' },
      head,
      ...c.metrics.map((m) =>
        el('tr', {}, el('th', {}, m.path), ...m.values.map((v) => el('td', {}, v === undefined ? '—' : String(Number(v.toPrecision(6)))))),
      ),
    ),
  );
}

// ---- searches ----

const num = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : String(Number(v.toPrecision(6))));

async function searchesPage(): Promise<void> {
  const table = el('table', { id: 'searches' });
  main.replaceChildren(el('h1', {}, 'Hyperparameter searches'), table);
  const load = async (): Promise<void> => {
    try {
      const { searches } = await api<{ searches: SearchRow[] }>('/api/searches');
      clearProblem();
      table.replaceChildren(
        el(
          'tr',
          {},
          el('th', {}, 'pipeline'),
          el('th', {}, 'search'),
          el('th', {}, 'status'),
          el('th', {}, 'started'),
          el('th', {}, 'duration'),
        ),
        ...searches.map((r) =>
          el(
            'tr',
            { 'data-workflow': r.workflowId },
            el('td', {}, r.pipeline ?? '—'),
            el('td', {}, el('a', { href: `#/search/${enc(r.workflowId)}` }, r.workflowId)),
            el('td', {}, pill(r.status.toLowerCase())),
            el('td', {}, time(r.startedAt)),
            el('td', {}, duration((r.closedAt ? Date.parse(r.closedAt) : Date.now()) - Date.parse(r.startedAt))),
          ),
        ),
      );
      if (!searches.length)
        table.append(el('tr', {}, el('td', { colspan: '5', class: 'muted' }, 'No searches yet (mlpipe hpo <pipeline>).')));
    } catch (e) {
      showProblem(e);
    }
  };
  await load();
  const timer = setInterval(() => void load(), 3000);
  cleanup = () => clearInterval(timer);
}

/** Trial values against their index: the best one ringed. */
function drawTrials(s: UiSearch): HTMLElement {
  const pts = s.rows.filter((r) => r.value !== undefined);
  const box = el(
    'div',
    { class: 'chart', id: 'trial-chart', 'data-points': String(pts.length) },
    el('div', { class: 'muted' }, `${s.metric.key} per trial`),
  );
  if (!pts.length) return box;
  const w = 520;
  const h = 200;
  const pad = 40;
  const values = pts.map((p) => p.value!);
  const lo = Math.min(...values);
  const hi = Math.max(...values, lo + 1e-12);
  const i1 = Math.max(...s.rows.map((r) => r.index), 1);
  const x = (i: number): number => pad + (i / i1) * (w - pad - 10);
  const y = (v: number): number => h - pad + 8 - ((v - lo) / (hi - lo)) * (h - pad - 8);
  const root = svg('svg', { width: w, height: h });
  root.append(svg('line', { x1: pad, y1: h - pad + 8, x2: w, y2: h - pad + 8, stroke: '#9aa5b1' }));
  root.append(svg('text', { x: 0, y: 12 }, num(hi)), svg('text', { x: 0, y: h - pad + 8 }, num(lo)));
  root.append(svg('text', { x: pad, y: h - 4 }, 'trial 0'), svg('text', { x: w - 60, y: h - 4 }, `trial ${i1}`));
  for (const p of pts)
    root.append(
      svg('circle', {
        class: `trial t-${p.state}${p.best ? ' best' : ''}`,
        'data-trial': p.index,
        cx: x(p.index),
        cy: y(p.value!),
        r: p.best ? 6 : 3.5,
      }),
    );
  box.append(root);
  return box;
}

async function searchPage(workflowId: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  cleanup = () => {
    stopped = true;
    clearTimeout(timer);
  };
  const draw = (s: UiSearch): void => {
    const goal = s.metric.goal === 'minimize' ? 'lowest' : 'highest';
    const trialRow = (t: UiTrial): HTMLElement =>
      el(
        'tr',
        { 'data-trial': String(t.index), 'data-state': t.state, ...(t.best ? { class: 'best' } : {}) },
        el('td', {}, String(t.index), t.best ? ' ★' : ''),
        ...s.paramKeys.map((k) => el('td', { 'data-param': k }, t.params[k] ?? '—')),
        el('td', { class: 'value' }, num(t.value)),
        el('td', {}, pill(t.state)),
        el('td', { class: 'stopped' }, t.stoppedAtEpoch ? `epoch ${t.stoppedAtEpoch}` : ''),
        el('td', {}, el('a', { href: `#/run/${enc(t.workflowId)}` }, 'run')),
        el('td', { class: 'error' }, t.error ?? ''),
      );
    main.replaceChildren(
      el('h1', {}, `Search ${s.workflowId} `, pill(s.status.toLowerCase())),
      el(
        'p',
        { id: 'search-summary' },
        `pipeline ${s.pipeline} · metric ${s.metric.step}.${s.metric.output}.${s.metric.key} (${s.metric.goal}) · `,
        `${s.rows.filter((r) => r.state !== 'running').length}/${s.trials} trials finished`,
        s.parallel ? ` · ${s.parallel} at a time` : '',
        s.earlyStopping ? ` · median stopping rule on ${s.earlyStopping.step} after ${s.earlyStopping.afterEpochs} epochs` : '',
        s.generation ? ` · generation ${s.generation + 1}` : '',
      ),
      s.problem ? el('p', { class: 'bad', id: 'search-problem' }, s.problem) : '',
      el(
        'div',
        { id: 'best' },
        el('h2', {}, `Best trial (${goal} ${s.metric.key})`),
        s.best
          ? el(
              'p',
              {},
              el('strong', { id: 'best-trial' }, `trial ${s.best.index}`),
              ` · ${s.metric.key} = `,
              el('strong', { id: 'best-value' }, num(s.best.value)),
              ` · ${Object.entries(s.best.params)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')} · `,
              el('a', { href: `#/run/${enc(s.best.workflowId)}` }, 'its run'),
              s.final ? el('span', {}, ' · final run ', el('a', { href: `#/run/${enc(s.final.workflowId)}` }, s.final.workflowId)) : '',
            )
          : el('p', { class: 'muted' }, 'No trial has produced the metric yet.'),
      ),
      drawTrials(s),
      el('h2', {}, 'Trials'),
      el(
        'table',
        { id: 'trials' },
        el(
          'tr',
          {},
          el('th', {}, 'trial'),
          ...s.paramKeys.map((k) => el('th', {}, k)),
          el('th', {}, s.metric.key),
          el('th', {}, 'state'),
          el('th', {}, 'stopped early'),
          el('th', {}, ''),
          el('th', {}, 'error'),
        ),
        ...s.rows.map(trialRow),
      ),
    );
  };
  const load = async (): Promise<void> => {
    const s = await api<UiSearch>(`/api/searches/${enc(workflowId)}`);
    if (stopped) return;
    clearProblem();
    draw(s);
    if (s.status === 'RUNNING') timer = setTimeout(() => void load().catch(showProblem), 1000);
  };
  await load();
}

// ---- models and monitors ----

async function modelsPage(): Promise<void> {
  main.replaceChildren(el('h1', {}, 'Models'), el('p', { class: 'muted' }, 'Loading…'));
  const [reg, mon] = await Promise.allSettled([
    api<{ registry: { location: string } | null; models: UiModelRow[] }>('/api/models'),
    api<{ monitors: MonitorRow[] }>('/api/monitors'),
  ]);
  const registryPart: Node[] = [el('h2', {}, 'Registered models')];
  if (reg.status === 'rejected') {
    showProblem(reg.reason);
    registryPart.push(el('p', { class: 'bad', id: 'registry-problem' }, (reg.reason as Error).message));
  } else if (!reg.value.registry) {
    registryPart.push(
      el(
        'p',
        { class: 'muted', id: 'registry-problem' },
        'No model registry is configured: set MLFLOW_TRACKING_URI to an MLflow tracking server (mlpipe dev --registry starts one).',
      ),
    );
  } else {
    registryPart.push(
      el('p', { class: 'muted' }, `MLflow at ${reg.value.registry.location}`),
      el(
        'table',
        { id: 'models' },
        el('tr', {}, el('th', {}, 'model'), el('th', {}, 'aliases'), el('th', {}, 'updated')),
        ...reg.value.models.map((m) =>
          el(
            'tr',
            { 'data-model': m.name },
            el('td', {}, el('a', { href: `#/model/${enc(m.name)}` }, m.name)),
            el(
              'td',
              { class: 'aliases' },
              Object.entries(m.aliases)
                .map(([a, v]) => `${a} → v${v}`)
                .join(', '),
            ),
            el('td', {}, time(m.updatedAt)),
          ),
        ),
      ),
    );
    if (!reg.value.models.length) registryPart.push(el('p', { class: 'muted' }, 'No registered models yet (deploy.mlflow-register).'));
  }
  const monitorPart: Node[] = [el('h2', {}, 'Drift monitors')];
  if (mon.status === 'rejected') {
    showProblem(mon.reason);
    monitorPart.push(el('p', { class: 'bad' }, (mon.reason as Error).message));
  } else {
    monitorPart.push(
      el(
        'table',
        { id: 'monitors' },
        el('tr', {}, el('th', {}, 'monitor'), el('th', {}, 'checks'), el('th', {}, 'last check'), el('th', {}, 'drift')),
        ...mon.value.monitors.map((m) =>
          el(
            'tr',
            { 'data-monitor': m.id },
            el('td', {}, el('a', { href: `#/monitor/${enc(m.id)}` }, m.pipeline)),
            el('td', {}, String(m.checks)),
            el('td', {}, time(m.last.at)),
            el('td', {}, driftText(m.last)),
          ),
        ),
      ),
    );
    if (!mon.value.monitors.length) monitorPart.push(el('p', { class: 'muted' }, 'No drift checks yet (mlpipe monitor <pipeline>).'));
  }
  main.replaceChildren(el('h1', {}, 'Models'), ...registryPart, ...monitorPart);
}

const driftText = (c: DriftCheck): string =>
  `${c.datasetDrift ? 'drift' : 'no drift'} · ${c.driftedColumns.length}/${c.numberOfColumns} columns (${Math.round(c.share * 1000) / 10}%)`;

async function modelPage(name: string): Promise<void> {
  const m = await api<UiModel>(`/api/models/${enc(name)}`);
  main.replaceChildren(
    el('h1', {}, `Model ${m.name}`),
    el('h2', {}, 'Aliases'),
    el(
      'table',
      { id: 'aliases' },
      el('tr', {}, el('th', {}, 'alias'), el('th', {}, 'version')),
      ...m.aliases.map((a) => el('tr', { 'data-alias': a.alias }, el('th', {}, a.alias), el('td', {}, a.version ? `v${a.version}` : '—'))),
    ),
    el('h2', {}, 'Versions'),
    el(
      'table',
      { id: 'versions' },
      el(
        'tr',
        {},
        el('th', {}, 'version'),
        el('th', {}, 'aliases'),
        ...m.metricKeys.map((k) => el('th', {}, k)),
        el('th', {}, 'registered'),
        el('th', {}, 'from run'),
      ),
      ...m.versions.map((v) =>
        el(
          'tr',
          { 'data-version': v.version },
          el('td', {}, `v${v.version}`),
          el('td', { class: 'aliases' }, v.aliases.join(', ')),
          ...m.metricKeys.map((k) => el('td', { 'data-metric': k }, num(v.metrics[k]))),
          el('td', {}, time(v.createdAt)),
          el('td', {}, v.workflowId ? el('a', { href: `#/run/${enc(v.workflowId)}` }, v.workflowId) : '—'),
        ),
      ),
    ),
    el('h2', {}, 'Alias history'),
    ...m.aliases.map((a) =>
      el(
        'div',
        { class: 'alias-history', 'data-alias': a.alias },
        el('h3', {}, a.alias),
        a.history.length
          ? el(
              'table',
              {},
              el('tr', {}, el('th', {}, 'when'), el('th', {}, 'action'), el('th', {}, 'to'), el('th', {}, 'from'), el('th', {}, 'reason')),
              ...[...a.history]
                .reverse()
                .map((h) =>
                  el(
                    'tr',
                    { 'data-action': h.action },
                    el('td', {}, time(h.at)),
                    el('td', {}, h.action),
                    el('td', { class: 'to' }, `v${h.version}`),
                    el('td', { class: 'from' }, h.previous ? `v${h.previous}` : '—'),
                    el('td', {}, h.reason),
                  ),
                ),
            )
          : el('p', { class: 'muted' }, 'No recorded moves (set outside mlpipe).'),
      ),
    ),
  );
}

/** Share of drifted columns per check over time; a drifted check in red. */
function drawDrift(checks: DriftCheck[]): HTMLElement {
  const box = el(
    'div',
    { class: 'chart', id: 'drift-chart', 'data-points': String(checks.length) },
    el('div', { class: 'muted' }, 'share of drifted columns per check'),
  );
  if (!checks.length) return box;
  const w = 520;
  const h = 180;
  const pad = 40;
  const t = checks.map((c) => Date.parse(c.at));
  const t0 = Math.min(...t);
  const t1 = Math.max(...t, t0 + 1);
  const x = (v: number): number => pad + ((v - t0) / (t1 - t0)) * (w - pad - 10);
  const y = (v: number): number => h - pad + 8 - v * (h - pad - 8);
  const root = svg('svg', { width: w, height: h });
  root.append(svg('line', { x1: pad, y1: h - pad + 8, x2: w, y2: h - pad + 8, stroke: '#9aa5b1' }));
  root.append(svg('text', { x: 0, y: 12 }, '100%'), svg('text', { x: 0, y: h - pad + 8 }, '0%'));
  root.append(svg('polyline', { class: 'loss', points: checks.map((c, i) => `${x(t[i]!)},${y(c.share)}`).join(' ') }));
  checks.forEach((c, i) =>
    root.append(svg('circle', { class: `check ${c.datasetDrift ? 'drift' : 'ok'}`, cx: x(t[i]!), cy: y(c.share), r: 4 })),
  );
  box.append(root);
  return box;
}

async function monitorPage(id: string): Promise<void> {
  const { checks } = await api<{ checks: DriftCheck[] }>(`/api/monitors/${enc(id)}`);
  const frame = el('iframe', { id: 'drift-report', sandbox: '', title: 'drift report' });
  const show = (c: DriftCheck): void => {
    frame.src = `/api/monitors/${enc(id)}/${enc(c.id)}/report`;
    frame.setAttribute('data-check', c.id);
  };
  main.replaceChildren(
    el('h1', {}, `Monitor ${checks[0]?.pipeline ?? id}`),
    drawDrift(checks),
    el('h2', {}, 'Checks'),
    el(
      'table',
      { id: 'checks' },
      el(
        'tr',
        {},
        el('th', {}, 'when'),
        el('th', {}, 'drift'),
        el('th', {}, 'drifted columns'),
        el('th', {}, 'reference'),
        el('th', {}, 'report'),
      ),
      ...[...checks].reverse().map((c) => {
        const open = el('a', { href: `#/monitor/${enc(id)}`, class: 'open-report' }, 'show');
        open.onclick = (e) => {
          e.preventDefault();
          show(c);
        };
        return el(
          'tr',
          { 'data-check': c.id, 'data-drift': String(c.datasetDrift) },
          el('td', {}, time(c.at)),
          el('td', { class: 'drift' }, driftText(c)),
          el('td', { class: 'columns' }, c.driftedColumns.join(', ')),
          el(
            'td',
            {},
            c.referenceFrom
              ? el('a', { href: `#/run/${enc(c.referenceFrom.workflowId)}` }, `${c.referenceFrom.workflowId} · ${c.referenceFrom.step}`)
              : '—',
          ),
          el(
            'td',
            {},
            c.html ? open : '—',
            c.report ? el('span', {}, ' · ', el('a', { href: `#/artifact/${c.report.sha256}` }, 'json')) : '',
          ),
        );
      }),
    ),
    el('h2', {}, 'Report'),
    frame,
  );
  const newest = checks[checks.length - 1];
  if (newest?.html) show(newest);
}

window.addEventListener('hashchange', () => void route());
void refreshHealth();
setInterval(() => void refreshHealth(), 10_000);
void route();
