/**
 * The web UI's HTTP server: the page (ui/web, bundled with esbuild when the server starts), a JSON
 * API over Temporal and the artifact store, and server-sent events for live runs.
 *
 *   GET  /api/health                      which services answer (Temporal, the store)
 *   GET  /api/runs?pipeline&status&label  the runs list
 *   GET  /api/runs/<workflowId>[?runId]   one run: DAG, steps, attempts, progress, provenance
 *   GET  /api/runs/<workflowId>/events    its live state (text/event-stream), sent when it changes
 *   POST /api/runs/<workflowId>/cancel    cancel it (needs the `x-mlpipe-ui` header)
 *   GET  /api/compare?runs=a,b            runs side by side: params that differ, metrics
 *   GET  /api/artifacts/<sha256>          what produced it, and a preview
 *   GET  /api/artifacts/<sha256>/raw      the bytes (`?download=1`: as an attachment)
 *   GET  /api/searches[/<workflowId>]     hyperparameter searches; one: its trials and the best
 *   GET  /api/models[/<name>]             registered models; one: versions, metrics, aliases, history
 *   GET  /api/monitors[/<id>]             drift monitors; one: its checks over time
 *   GET  /api/monitors/<id>/<check>/report  a check's HTML report (sandboxed)
 *
 * Bound to 127.0.0.1 by default. Requests are untrusted: only known Host headers (no DNS
 * rebinding), bounded URLs and IDs, no request bodies, digests checked before the store is touched,
 * a custom header on the one state-changing request (a cross-site form cannot send it).
 */
import type { Client } from '@temporalio/client';
import { createReadStream, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ArtifactStore } from '../engine/ports.js';
import { checkDigest, downloadName, findArtifact, previewArtifact } from './artifacts.js';
import { isMlflowUnavailable, type MlflowRestClient } from '../adapters/mlflow/rest.js';
import { compareRuns } from './compare.js';
import { ModelSource } from './models.js';
import { SearchSource } from './searches.js';
import { RUN_STATUSES, RunSource, UiRequestError, type LiveRun } from './runs.js';

export interface UiServerOptions {
  /** Connects to Temporal (called again after a failure). */
  connect: () => Promise<Client>;
  /** For messages: where Temporal is. */
  temporalAddress: string;
  store: ArtifactStore;
  /** The MLflow tracking server with the model registry, when one is configured (the Models page); `stop()` closes it. */
  mlflow?: MlflowRestClient;
  host?: string;
  port?: number;
  /** How often a live run is polled for the event stream (default 200 ms). */
  pollMs?: number;
  /** Follow a watched run's history for changes (default true); false: polling only, as bench/ui.ts compares. */
  followHistory?: boolean;
}

export interface UiServer {
  url: string;
  port: number;
  server: Server;
  stop(): Promise<void>;
}

const HERE = dirname(fileURLToPath(import.meta.url));
/** The page's files: beside this module in a checkout; in the package, the script is compiled to dist/ui/web and the rest ships in ui/web. */
const WEB = join(HERE, 'web');
const STATIC = existsSync(join(WEB, 'index.html')) ? WEB : join(HERE, '..', '..', 'ui', 'web');
const ENTRY = existsSync(join(WEB, 'app.ts')) ? join(WEB, 'app.ts') : join(WEB, 'app.js');
const MAX_URL = 4096;
const MAX_ID = 1000;

let bundle: Promise<string> | undefined;
/** The page's script: ui/web/app.ts and the layout library, bundled once per process. */
function appScript(): Promise<string> {
  bundle ??= import('esbuild').then(async (esbuild) => {
    const r = await esbuild.build({
      entryPoints: [ENTRY],
      bundle: true,
      format: 'esm',
      target: 'es2022',
      minify: true,
      write: false,
      logLevel: 'silent',
    });
    return r.outputFiles[0]!.text;
  });
  return bundle;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(text);
}

/** Temporal not answering: a 503 that says where it was looked for. */
class Unreachable extends Error {
  constructor(
    readonly service: string,
    message: string,
  ) {
    super(message);
  }
}

export async function startUiServer(options: UiServerOptions): Promise<UiServer> {
  const host = options.host ?? '127.0.0.1';
  let source: RunSource | undefined;
  let searches: SearchSource | undefined;
  let connecting: Promise<RunSource> | undefined;
  const models = new ModelSource(options.store, options.mlflow);
  const getSource = async (): Promise<RunSource> => {
    if (source) return source;
    connecting ??= options
      .connect()
      .then((client) => {
        searches = new SearchSource(client);
        return (source = new RunSource(client, options.store));
      })
      .finally(() => (connecting = undefined));
    try {
      return await connecting;
    } catch (e) {
      throw new Unreachable('temporal', `Temporal is unreachable at ${options.temporalAddress}: ${(e as Error).message}`);
    }
  };
  /** A Temporal call that fails on the connection: the UI says Temporal is unreachable (and reconnects next time). */
  const temporal = async <T>(fn: (s: RunSource) => Promise<T>): Promise<T> => {
    const s = await getSource();
    try {
      return await fn(s);
    } catch (e) {
      if (e instanceof UiRequestError) throw e;
      const err = e as { code?: number; name?: string; message?: string };
      if (err.name === 'WorkflowNotFoundError' || /not found/i.test(err.message ?? ''))
        throw new UiRequestError(404, `No workflow run ${err.message ? `(${err.message})` : ''}`.trim());
      if (err.code === 14 || err.code === 4 || /UNAVAILABLE|DEADLINE|ECONNREFUSED|connect/i.test(err.message ?? ''))
        throw new Unreachable('temporal', `Temporal is unreachable at ${options.temporalAddress}: ${err.message}`);
      throw e;
    }
  };

  /** A registry call: an MLflow that does not answer is a 503 naming it. */
  const registry = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (isMlflowUnavailable(e))
        throw new Unreachable(
          'mlflow',
          `The model registry (MLflow) is unreachable at ${options.mlflow?.location}: ${(e as Error).message}`,
        );
      throw e;
    }
  };
  /** A store read: a store that does not answer is a 503 naming it. */
  const stored = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof UiRequestError) throw e;
      throw new Unreachable('store', `The artifact store at ${options.store.location} could not be read: ${(e as Error).message}`);
    }
  };

  /**
   * One watcher per watched run. It sends the live state whenever the run's history grows (a long
   * poll that answers as soon as Temporal appends an event, such as a step's activity completing)
   * and every `pollMs` (heartbeat progress is not in the history), each time from the history, the
   * pending activities and the status query's last answer; it asks the query again in the
   * background, never waiting for it (the query waits behind the run's own workflow tasks). A state
   * is sent only when it changed.
   */
  interface Watcher {
    clients: Set<ServerResponse>;
    timer: NodeJS.Timeout;
    last: string;
    busy: boolean;
    /** A send was asked for while one ran: send again after it. */
    again: boolean;
    querying: boolean;
    follow: AbortController;
  }
  const watchers = new Map<string, Watcher>();
  const watch = (workflowId: string, runId: string | undefined, res: ServerResponse): void => {
    const key = `${workflowId}\u0000${runId ?? ''}`;
    let w = watchers.get(key);
    if (!w) {
      let resolved = runId;
      const tick = async (): Promise<void> => {
        if (!w) return;
        if (w.busy) {
          w.again = true;
          return;
        }
        w.busy = true;
        w.again = false;
        try {
          const live: LiveRun = await temporal((s) => s.live(workflowId, runId, { query: false }));
          const text = JSON.stringify(live);
          if (text !== w.last) {
            w.last = text;
            for (const c of w.clients) c.write(`data: ${text}\n\n`);
          }
          if (live.temporalStatus !== 'RUNNING') w.follow.abort();
        } catch (e) {
          const text = JSON.stringify({ error: (e as Error).message, service: e instanceof Unreachable ? e.service : undefined });
          if (text !== w.last) {
            w.last = text;
            for (const c of w.clients) c.write(`event: problem\ndata: ${text}\n\n`);
          }
        } finally {
          w.busy = false;
        }
        if (w.again && watchers.get(key) === w) void tick();
      };
      /** The status query in the background; its answer is sent when it comes. */
      const refresh = async (): Promise<void> => {
        if (!w || w.querying) return;
        w.querying = true;
        try {
          const s = await getSource();
          resolved ??= (await s.client.workflow.getHandle(workflowId).describe()).runId;
          await s.refreshStatus(workflowId, resolved);
        } catch {
          // The next tick says what is wrong (it reads Temporal too).
        } finally {
          w.querying = false;
        }
        void tick();
      };
      const follow = new AbortController();
      w = {
        clients: new Set(),
        timer: setInterval(() => {
          void refresh();
          void tick();
        }, options.pollMs ?? 200),
        last: '',
        busy: false,
        again: false,
        querying: false,
        follow,
      };
      watchers.set(key, w);
      void refresh();
      // The history follower: restarted after a failure (Temporal away for a moment) while anyone watches.
      void (async () => {
        while (options.followHistory !== false && !follow.signal.aborted) {
          try {
            const s = await getSource();
            resolved ??= (await s.client.workflow.getHandle(workflowId).describe()).runId;
            await s.followHistory(workflowId, resolved, follow.signal, () => void tick());
            return;
          } catch {
            if (!follow.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
          }
        }
      })();
    } else if (w.last) res.write(`data: ${w.last}\n\n`);
    w.clients.add(res);
    res.on('close', () => {
      w!.clients.delete(res);
      if (!w!.clients.size) {
        clearInterval(w!.timer);
        w!.follow.abort();
        watchers.delete(key);
      }
    });
  };

  const allowedHosts = (port: number): Set<string> =>
    new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${host}:${port}`]);
  let hosts = new Set<string>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const rawUrl = req.url ?? '/';
    if (rawUrl.length > MAX_URL) return send(res, 414, { error: `The request URL is longer than ${MAX_URL} characters.` });
    if (!hosts.has(req.headers.host ?? ''))
      return send(res, 403, { error: 'Unknown Host header: open the UI at the address mlpipe printed.' });
    if (req.headers['content-length'] && req.headers['content-length'] !== '0')
      return send(res, 413, { error: 'The UI API takes no request bodies.' });
    // '.' and '..' segments are refused, not resolved (a URL parser would quietly remove them).
    if (/(^|\/)\.\.?(\/|\?|$)/.test(rawUrl.split('?')[0]!))
      return send(res, 400, { error: "Paths with '.' or '..' segments are refused." });
    const url = new URL(rawUrl, 'http://ui.invalid');
    const parts = url.pathname.split('/').filter(Boolean).map(decode);
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'POST') return send(res, 405, { error: `${method} is not supported.` });
    if (method === 'POST' && !(parts[0] === 'api' && parts[1] === 'runs' && parts[3] === 'cancel'))
      return send(res, 405, { error: 'Only cancel is a POST.' });

    if (parts[0] !== 'api') return serveStatic(parts, res);
    const q = (name: string): string | undefined => url.searchParams.get(name) ?? undefined;
    const id = (text: string | undefined, what: string): string => {
      if (!text || text.length > MAX_ID || /[\u0000-\u001f]/.test(text))
        throw new UiRequestError(400, `${what} must be 1 to ${MAX_ID} characters without control characters.`);
      return text;
    };
    switch (parts[1]) {
      case 'health':
        return send(res, 200, await health());
      case 'runs': {
        const status = q('status');
        if (status && !RUN_STATUSES.includes(status.toLowerCase()))
          throw new UiRequestError(400, `Unknown status '${status.slice(0, 40)}': one of ${RUN_STATUSES.join(', ')}.`);
        const limit = limitOf(q('limit'));
        if (parts.length === 2)
          return send(res, 200, {
            runs: await temporal((s) =>
              s.listRuns({
                pipeline: q('pipeline'),
                status: q('status') || undefined,
                label: q('label') || undefined,
                limit,
              }),
            ),
          });
        const workflowId = id(parts[2], 'A workflow ID');
        const runId = q('runId') ? id(q('runId'), 'A run ID') : undefined;
        if (parts.length === 3) return send(res, 200, await temporal((s) => s.run(workflowId, runId)));
        if (parts[3] === 'events' && parts.length === 4) {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
          res.write(': live\n\n');
          return watch(workflowId, runId, res);
        }
        if (parts[3] === 'cancel' && parts.length === 4) {
          if (method !== 'POST') return send(res, 405, { error: 'Cancel is a POST.' });
          if (req.headers['x-mlpipe-ui'] !== '1') return send(res, 403, { error: 'Cancel needs the x-mlpipe-ui: 1 header.' });
          await temporal((s) => s.cancel(workflowId, runId));
          return send(res, 202, { cancelled: workflowId });
        }
        break;
      }
      case 'compare': {
        const ids = (q('runs') ?? '').split(',').filter(Boolean);
        if (ids.length < 2 || ids.length > 10) throw new UiRequestError(400, 'Compare takes 2 to 10 workflow IDs: ?runs=a,b.');
        const runs = await temporal((s) => Promise.all(ids.map((w) => s.run(id(w, 'A workflow ID')))));
        return send(res, 200, compareRuns(runs));
      }
      case 'searches': {
        if (parts.length === 2) return send(res, 200, { searches: await temporal(() => searches!.list(limitOf(q('limit')))) });
        if (parts.length === 3) {
          const workflowId = id(parts[2], 'A workflow ID');
          return send(res, 200, await temporal(() => searches!.search(workflowId)));
        }
        break;
      }
      case 'models': {
        if (parts.length === 2)
          return send(res, 200, {
            registry: options.mlflow ? { location: options.mlflow.location } : null,
            models: await registry(() => models.models()),
          });
        if (parts.length === 3) return send(res, 200, await registry(() => models.model(id(parts[2], 'A model name'))));
        break;
      }
      case 'monitors': {
        if (parts.length === 2) return send(res, 200, { monitors: await stored(() => models.monitors()) });
        const monitor = id(parts[2], 'A monitor ID');
        if (parts.length === 3) return send(res, 200, { id: monitor, checks: await stored(() => models.checks(monitor)) });
        if (parts.length === 5 && parts[4] === 'report') {
          const ref = await stored(() => models.report(monitor, id(parts[3], 'A check ID')));
          res.writeHead(200, {
            'content-type': 'text/html; charset=utf-8',
            'x-content-type-options': 'nosniff',
            'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
          });
          createReadStream(await options.store.getFile(ref)).pipe(res);
          return;
        }
        break;
      }
      case 'artifacts': {
        const sha = checkDigest(parts[2] ?? '');
        const info = await findArtifact(options.store, sha);
        if (parts.length === 3) return send(res, 200, { ...info, preview: await previewArtifact(options.store, info.ref) });
        if (parts[3] === 'raw' && parts.length === 4) {
          const file = await options.store.getFile(info.ref);
          const html = info.ref.mediaType === 'text/html';
          const download = q('download') === '1';
          res.writeHead(200, {
            'content-type': download ? 'application/octet-stream' : html ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8',
            'content-length': String(info.ref.size),
            'x-content-type-options': 'nosniff',
            // A stored page is shown sandboxed: no scripts, no requests, its own styles only.
            'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
            ...(download ? { 'content-disposition': `attachment; filename="${downloadName(info.ref)}"` } : {}),
          });
          createReadStream(file).pipe(res);
          return;
        }
        break;
      }
    }
    send(res, 404, { error: `No API route ${url.pathname.slice(0, 200)}.` });
  };

  const health = async (): Promise<Record<string, unknown>> => {
    const result: Record<string, unknown> = { temporal: { address: options.temporalAddress }, store: { location: options.store.location } };
    try {
      await temporal((s) => s.client.workflowService.getSystemInfo({}));
      (result['temporal'] as Record<string, unknown>)['ok'] = true;
    } catch (e) {
      Object.assign(result['temporal'] as object, { ok: false, error: (e as Error).message });
    }
    try {
      await options.store.listRecords('runs/none/');
      (result['store'] as Record<string, unknown>)['ok'] = true;
    } catch (e) {
      Object.assign(result['store'] as object, {
        ok: false,
        error: `The artifact store at ${options.store.location} is unreachable: ${(e as Error).message}`,
      });
    }
    if (options.mlflow) {
      const mlflow: Record<string, unknown> = { location: options.mlflow.location };
      try {
        await options.mlflow.registry.searchModels(1);
        mlflow['ok'] = true;
      } catch (e) {
        Object.assign(mlflow, {
          ok: false,
          error: `The model registry (MLflow) is unreachable at ${options.mlflow.location}: ${(e as Error).message}`,
        });
      }
      result['mlflow'] = mlflow;
    }
    return result;
  };

  const serveStatic = async (parts: string[], res: ServerResponse): Promise<void> => {
    const name = parts.length ? parts.join('/') : 'index.html';
    const headers = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': PAGE_CSP };
    if (name === 'app.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', ...headers });
      return void res.end(await appScript());
    }
    if (name === 'index.html' || name === 'app.css') {
      res.writeHead(200, { 'content-type': name.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/html; charset=utf-8', ...headers });
      return void res.end(await readFile(join(STATIC, name)));
    }
    send(res, 404, { error: 'Not found.' });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) return void res.end();
      if (e instanceof UiRequestError) return send(res, e.status, { error: e.message });
      if (e instanceof Unreachable) return send(res, 503, { error: e.message, service: e.service });
      const code = (e as { code?: string }).code;
      if (code === 'STORAGE_KEY_INVALID') return send(res, 400, { error: (e as Error).message });
      send(res, 500, { error: (e as Error).message });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  hosts = allowedHosts(port);
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    server,
    async stop() {
      for (const w of watchers.values()) {
        clearInterval(w.timer);
        w.follow.abort();
        for (const c of w.clients) c.end();
      }
      watchers.clear();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await options.mlflow?.close();
    },
  };
}

const PAGE_CSP =
  "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; object-src 'none'; base-uri 'none'";

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new UiRequestError(400, 'The URL has a malformed percent-encoding.');
  }
}

function limitOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 500)
    throw new UiRequestError(400, `limit '${text.slice(0, 20)}' must be a whole number from 1 to 500.`);
  return n;
}
