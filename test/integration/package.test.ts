/**
 * mlpipe the way a user meets it: `npm pack` of this repository, installed into an empty folder
 * (from the tarball and the local npm cache), `npx mlpipe init`, `npm test` of the scaffold (tsc
 * and its plugin test on mlpipe/testing), a misnamed output refused by tsc through the package's
 * declarations, and `npx mlpipe run` of the example on the test's dev server with a worker started
 * from the installed package (`npx mlpipe worker`), in the scaffold and in another folder that has
 * the package and the project's plugin module only (the run carries its pipeline, the data file goes
 * through the shared artifact store); `npx mlpipe ui` from the installed package serves the page,
 * its styles and its bundled script, and the page runs in Chromium. Slow: it builds, packs and installs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { chromium } from 'playwright-core';
import { freePort } from '../../dev/temporal-server.js';
import { REPO, uniqueId, waitFor } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'mlpipe-package-'));
const project = join(root, 'project');
const transcript: string[] = [];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, records it and how it ended in the transcript. */
function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Result {
  const started = Date.now();
  const r = spawnSync(cmd, args, {
    cwd,
    env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false', ...env },
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  const result = { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  transcript.push(`$ ${[cmd, ...args].join(' ')}   (exit ${result.code}, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return result;
}

function ok(r: Result): Result {
  if (r.code !== 0) throw new Error(`exit ${r.code}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  return r;
}

/**
 * `npm install` from the npm cache only (`--offline`); when the cache lacks some package metadata
 * (a cache filled by `npm ci` from a lockfile holds the tarballs but not every packument), from the
 * cache first and the registry for what is missing (`--prefer-offline`), said in the transcript.
 */
function npmInstall(args: string[], cwd = project): Result {
  const offline = sh('npm', ['install', '--offline', ...args], cwd);
  if (offline.code === 0 || !/ENOTCACHED/.test(offline.stderr + offline.stdout)) return ok(offline);
  transcript.push('  (the npm cache lacks some package metadata: again with --prefer-offline)');
  return ok(sh('npm', ['install', '--prefer-offline', ...args], cwd));
}

/** Runs a command to its end without blocking the event loop (a worker of the test may be serving meanwhile). */
function shAsync(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise<Result>((resolve) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

function du(dir: string): string {
  return spawnSync('du', ['-sh', dir], { encoding: 'utf8' }).stdout.split('\t')[0] ?? '?';
}

let tarball: string;
let worker: ChildProcess | undefined;
let fleetWorker: ChildProcess | undefined;
let ui: ChildProcess | undefined;

/**
 * Stops a long-running `npx mlpipe ...` and what it started: npx runs the command as its child and does
 * not pass a signal on, so these are spawned detached (a process group of their own) and the whole group
 * gets the signal.
 */
async function stopGroup(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  try {
    process.kill(-child.pid, signal);
  } catch {
    return; // the group is gone already
  }
  await exited;
}

beforeAll(() => {
  const packed = ok(sh('npm', ['pack', '--json', '--pack-destination', root], REPO));
  const info = (
    JSON.parse(packed.stdout.slice(packed.stdout.search(/^\[$/m))) as { filename: string; size: number; entryCount: number }[]
  )[0]!;
  tarball = join(root, info.filename);
  transcript.push(`  ${info.filename}: ${info.size} bytes, ${info.entryCount} files`);
  mkdirSync(project);
  writeFileSync(
    join(project, 'package.json'),
    `${JSON.stringify({ name: 'my-pipelines', version: '0.1.0', private: true, type: 'module' }, null, 2)}\n`,
  );
}, 300_000);

afterAll(async () => {
  await Promise.all([stopGroup(worker, 'SIGKILL'), stopGroup(fleetWorker, 'SIGKILL'), stopGroup(ui, 'SIGKILL')]);
  console.log(`packed-tarball transcript:\n${transcript.join('\n')}`);
  rmSync(root, { recursive: true, force: true });
});

describe('the packed package in a new project', () => {
  it('installs, scaffolds a project whose tests and type-check pass, and refuses a misnamed output at compile time', () => {
    npmInstall([tarball]);
    const installed = JSON.parse(readFileSync(join(project, 'node_modules', 'mlpipe', 'package.json'), 'utf8')) as { version: string };
    expect(installed.version).toBe('0.1.0');
    // Only compiled JavaScript and declarations: no TypeScript sources in the package.
    expect(existsSync(join(project, 'node_modules', 'mlpipe', 'dist', 'cli', 'main.js'))).toBe(true);
    expect(existsSync(join(project, 'node_modules', 'mlpipe', 'cli', 'main.ts'))).toBe(false);
    // The optional parts are not installed with it.
    for (const optional of ['@google-cloud/storage', '@google-cloud/aiplatform', 'onnxruntime-node', '@tensorflow/tfjs']) {
      expect(existsSync(join(project, 'node_modules', optional)), optional).toBe(false);
    }
    transcript.push(`  node_modules after installing mlpipe: ${du(join(project, 'node_modules'))}`);

    const init = ok(sh('npx', ['mlpipe', 'init'], project));
    expect(init.stdout).toContain('created mlpipe.plugins.ts');
    for (const f of [
      'pipelines/example.yaml',
      'conf/example.yaml',
      'test/column-stats.test.ts',
      'tsconfig.json',
      '.gitignore',
      'README.md',
    ])
      expect(existsSync(join(project, f)), f).toBe(true);
    const pkg = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    expect(pkg.dependencies['mlpipe']).toMatch(/mlpipe-0\.1\.0\.tgz$/); // kept what npm install wrote
    expect(Object.keys(pkg.devDependencies).sort()).toEqual(['@types/node', 'typescript', 'vitest']);

    npmInstall([]);
    transcript.push(`  node_modules with the scaffold's dev tools: ${du(join(project, 'node_modules'))}`);
    const test = ok(sh('npm', ['test'], project, { CI: '1', NO_COLOR: '1' }));
    expect(test.stdout).toMatch(/Tests\s+2 passed/);

    const validate = ok(sh('npx', ['mlpipe', 'validate', 'example'], project));
    expect(validate.stdout).toContain("pipeline 'example', 2 steps");

    // The plugin's declared outputs bind `run` through the installed declarations.
    const source = readFileSync(join(project, 'mlpipe.plugins.ts'), 'utf8');
    writeFileSync(
      join(project, 'misnamed.ts'),
      source.replace(
        'return { ...stats, report };',
        'return { minn: stats.min, max: stats.max, mean: stats.mean, rows: stats.rows, report };',
      ),
    );
    const tsc = sh('npx', ['tsc', '--noEmit', '--pretty', 'false'], project);
    rmSync(join(project, 'misnamed.ts'));
    expect(tsc.code).not.toBe(0);
    expect(tsc.stdout).toMatch(/misnamed\.ts\(\d+,\d+\): error TS2322/);
    expect(tsc.stdout).toContain("Property 'min' is missing");
    transcript.push(
      `  tsc on a misnamed output: ${tsc.stdout
        .split('\n')
        .find((l) => l.includes("'min'"))
        ?.trim()}`,
    );
  }, 600_000);

  it('runs the example with npx mlpipe run on a worker started from the installed package', async () => {
    const taskQueue = uniqueId('package');
    const env = { TEMPORAL_ADDRESS: inject('temporalAddress'), MLPIPE_TASK_QUEUE: taskQueue, MLPIPE_TRACKING: 'off', NO_COLOR: '1' };
    const log = openSync(join(root, 'worker.log'), 'a');
    worker = spawn('npx', ['mlpipe', 'worker'], {
      cwd: project,
      env: { ...process.env, ...env },
      stdio: ['ignore', log, log],
      detached: true,
    });
    const run = await new Promise<Result>((resolve) => {
      const child = spawn('npx', ['mlpipe', 'run', 'example', 'params.column=value', 'stats.decimals=1', '--json'], {
        cwd: project,
        env: { ...process.env, ...env },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
    transcript.push(
      `$ npx mlpipe run example params.column=value stats.decimals=1 --json   (exit ${run.code}; worker: npx mlpipe worker on task queue ${taskQueue})`,
    );
    if (run.code !== 0) throw new Error(`${run.stdout}\n${run.stderr}\n${readFileSync(join(root, 'worker.log'), 'utf8').slice(-4000)}`);
    const result = JSON.parse(run.stdout) as { state: string; outputs: Record<string, Record<string, unknown>> };
    expect(result.state).toBe('succeeded');
    expect(result.outputs['stats']).toMatchObject({ min: 1, max: 12.8, mean: 6.2, rows: 5 });
    expect(result.outputs['summary']).toMatchObject({ wide: true, message: 'value: mean 6.2 over 5 rows' });
    transcript.push(
      `  outputs: ${JSON.stringify({ stats: { ...result.outputs['stats'], report: '…' }, summary: result.outputs['summary'] })}`,
    );
    await stopGroup(worker, 'SIGTERM');
  }, 300_000);

  it('serves the web UI from the installed package: its page, styles and bundled script, over the Temporal server', async () => {
    const pkg = join(project, 'node_modules', 'mlpipe');
    // The page's static files ship as they are; its script compiled, bundled with dagre when the server starts.
    for (const f of ['ui/web/index.html', 'ui/web/app.css', 'dist/ui/web/app.js', 'dist/ui/server.js'])
      expect(existsSync(join(pkg, f)), f).toBe(true);
    expect(existsSync(join(pkg, 'ui', 'web', 'app.ts'))).toBe(false);
    const port = await freePort();
    const env = { TEMPORAL_ADDRESS: inject('temporalAddress'), MLPIPE_TRACKING: 'off', NO_COLOR: '1' };
    const server = spawn('npx', ['mlpipe', 'ui', '--port', String(port)], {
      cwd: project,
      env: { ...process.env, ...env },
      detached: true,
    });
    ui = server;
    let output = '';
    server.stdout.on('data', (d: Buffer) => (output += d.toString()));
    server.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitFor(() => output.includes(`mlpipe UI: ${base}`), `npx mlpipe ui to listen (${output})`, 120_000);
      transcript.push(`$ npx mlpipe ui --port ${port}   (${output.trim().split('\n')[0]})`);
      const index = await (await fetch(`${base}/`)).text();
      expect(index).toContain('<script type="module" src="/app.js"></script>');
      expect(index).toBe(readFileSync(join(pkg, 'ui', 'web', 'index.html'), 'utf8'));
      const css = await fetch(`${base}/app.css`);
      expect(css.headers.get('content-type')).toContain('text/css');
      expect(await css.text()).toBe(readFileSync(join(pkg, 'ui', 'web', 'app.css'), 'utf8'));
      const script = await fetch(`${base}/app.js`);
      expect(script.status).toBe(200);
      const js = await script.text();
      // Bundled: no bare import left for the browser to resolve, the layout library inside.
      expect(js).not.toMatch(/from\s*["']@dagrejs\/dagre["']/);
      expect(js.length).toBeGreaterThan(20_000);
      const health = (await (await fetch(`${base}/api/health`)).json()) as { temporal: { ok: boolean } };
      expect(health.temporal.ok).toBe(true);
      // The page runs in a browser: the runs list from Temporal, the example's run among them.
      const browser = await chromium.launch({ executablePath: process.env['CHROMIUM'] ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
      try {
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(`${base}/#/`);
        await page.locator('#runs tr[data-workflow]').first().waitFor({ timeout: 60_000 });
        expect(await page.locator('#services').innerText()).toContain('✓');
        expect(errors).toEqual([]);
      } finally {
        await browser.close();
      }
    } finally {
      await stopGroup(ui, 'SIGTERM');
    }
  }, 300_000);

  it("runs a pipeline submitted from the scaffold on a worker installed in another folder with the project's plugins only", async () => {
    // The worker's folder: the package and the project's plugin module; no pipelines/, conf/ or data.
    const workers = join(root, 'workers');
    mkdirSync(workers);
    writeFileSync(
      join(workers, 'package.json'),
      `${JSON.stringify({ name: 'pipeline-workers', version: '0.1.0', private: true, type: 'module' }, null, 2)}\n`,
    );
    npmInstall([tarball], workers);
    copyFileSync(join(project, 'mlpipe.plugins.ts'), join(workers, 'mlpipe.plugins.ts'));
    for (const f of ['pipelines', 'conf']) expect(existsSync(join(workers, f)), f).toBe(false);

    const taskQueue = uniqueId('package-fleet');
    // Client and worker share the artifact store: the scaffold's data file reaches the worker through it.
    const env = {
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      MLPIPE_TASK_QUEUE: taskQueue,
      MLPIPE_ARTIFACTS: join(root, 'shared-artifacts'),
      MLPIPE_TRACKING: 'off',
      NO_COLOR: '1',
    };
    const log = openSync(join(root, 'fleet-worker.log'), 'a');
    fleetWorker = spawn('npx', ['mlpipe', 'worker'], {
      cwd: workers,
      env: { ...process.env, ...env },
      stdio: ['ignore', log, log],
      detached: true,
    });
    const args = ['mlpipe', 'run', 'example', 'params.column=value', 'stats.decimals=1', '--json'];
    const run = await shAsync('npx', args, project, env);
    transcript.push(
      `$ npx ${args.join(' ')}   (exit ${run.code}; worker: npx mlpipe worker in ${workers}, the package and mlpipe.plugins.ts only, task queue ${taskQueue})`,
    );
    if (run.code !== 0)
      throw new Error(`${run.stdout}\n${run.stderr}\n${readFileSync(join(root, 'fleet-worker.log'), 'utf8').slice(-4000)}`);
    const result = JSON.parse(run.stdout) as { state: string; outputs: Record<string, Record<string, unknown>> };
    expect(result.state).toBe('succeeded');
    expect(result.outputs['stats']).toMatchObject({ min: 1, max: 12.8, mean: 6.2, rows: 5 });
    expect(result.outputs['summary']).toMatchObject({ wide: true, message: 'value: mean 6.2 over 5 rows' });
    // The worker read the data from the store, not from a project of its own.
    expect(existsSync(join(workers, 'pipelines'))).toBe(false);
    transcript.push(
      `  outputs: ${JSON.stringify({ stats: { ...result.outputs['stats'], report: '…' }, summary: result.outputs['summary'] })}`,
    );
    await stopGroup(fleetWorker, 'SIGTERM');
  }, 600_000);
});
