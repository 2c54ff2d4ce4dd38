/**
 * `mlpipe init [dir]`: a new project that uses the installed mlpipe package — an example pipeline
 * with a project plugin, a config group, a unit test of the plugin with mlpipe/testing, and the
 * files that make `npm install`, `npm test`, `npx mlpipe demo example` and `tsc` work. Existing files
 * are left alone; an existing package.json gets what is missing.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PipelineError } from '../engine/errors.js';

const out = (s: string): boolean => process.stdout.write(`${s}\n`);

interface PackageJson {
  name?: string;
  version?: string;
  private?: boolean;
  type?: string;
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

/** mlpipe's own package.json (next to dist/ or to the sources): its version and the tool versions it is tested with. */
function ownPackage(): PackageJson {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as PackageJson;
      if (pkg.name === 'mlpipe') return pkg;
    }
    const up = dirname(dir);
    if (up === dir)
      throw new PipelineError('TOOL_MISSING', "mlpipe's package.json was not found next to the CLI.", { hint: 'Reinstall mlpipe.' });
    dir = up;
  }
}

const PLUGINS = `/**
 * This project's plugins: every worker and the CLI load them from this file, next to mlpipe's
 * built-in ones (\`npx mlpipe plugins\` lists them all).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { definePlugin, PipelineError, z } from 'mlpipe/sdk';

/**
 * example.column-stats: min, max and mean of a numeric column of a CSV file, and a JSON report in
 * the artifact store. \`run\` must return exactly the declared outputs: tsc checks it.
 */
export const columnStats = definePlugin({
  name: 'example.column-stats',
  version: '1',
  description: 'Min, max and mean of a numeric column of a CSV file (header row, comma-separated).',
  params: z.object({
    path: z.string().min(1),
    column: z.string().min(1),
    decimals: z.number().int().min(0).max(10).default(3),
  }),
  // Paths that overrides may set must stay inside the project folder.
  pathParams: ['path'],
  outputs: { min: 'json', max: 'json', mean: 'json', rows: 'json', report: 'artifact' },
  async run(ctx, p) {
    const text = await readFile(resolve(ctx.projectDir, p.path), 'utf8');
    const [header, ...lines] = text.trim().split(/\\r?\\n/);
    const index = (header ?? '').split(',').indexOf(p.column);
    if (index < 0) {
      // A stable code, and retrying cannot help: the run fails at once with this message.
      throw new PipelineError('DATA_INVALID', \`\${p.path} has no column '\${p.column}'.\`, { hint: \`Its columns: \${header}.\`, retryable: false });
    }
    const values = lines.map((l) => Number(l.split(',')[index])).filter((v) => Number.isFinite(v));
    if (values.length === 0) throw new PipelineError('DATA_INVALID', \`Column '\${p.column}' of \${p.path} has no numbers.\`, { retryable: false });
    const round = (v: number): number => Number(v.toFixed(p.decimals));
    const stats = { min: round(Math.min(...values)), max: round(Math.max(...values)), mean: round(values.reduce((a, b) => a + b, 0) / values.length), rows: values.length };
    ctx.logger.info(stats, \`column \${p.column}: \${values.length} values\`);
    const report = await ctx.store.put(JSON.stringify({ column: p.column, ...stats }, null, 2), { name: 'stats.json', mediaType: 'application/json' });
    return { ...stats, report };
  },
});

export const plugins = [columnStats];
`;

const PIPELINE = `# An example pipeline: a project plugin (mlpipe.plugins.ts), then a built-in one.
#   npx mlpipe validate example
#   npx mlpipe demo example            (starts a local Temporal server and a worker for the run)
#   npx mlpipe run example params.column=value  (against a running 'npx mlpipe dev' or TEMPORAL_ADDRESS)
name: example
description: Statistics of a column of a CSV file.
config: example                     # conf/example.yaml, readable as \${conf.*}
params:
  data: pipelines/data/example.csv
  column: value
steps:
  stats:
    uses: example.column-stats
    with:
      path: \${params.data}
      column: \${params.column}
      decimals: \${conf.stats.decimals}
  summary:
    uses: util.echo
    needs: stats
    with:
      values:
        wide: \${steps.stats.outputs.max > 10}
        message: "\${params.column}: mean \${steps.stats.outputs.mean} over \${steps.stats.outputs.rows} rows"
`;

const CONF = `# Config of the example pipeline (config: example). Override from the command line:
#   npx mlpipe run example stats.decimals=1
stats:
  decimals: 2
`;

const DATA = `id,value
1,3.5
2,7.25
3,1.0
4,12.75
5,6.5
`;

const TEST = `import { describe, expect, it } from 'vitest';
import { runPlugin } from 'mlpipe/testing';
import { columnStats } from '../mlpipe.plugins.js';

describe('example.column-stats', () => {
  it('computes min, max and mean of the column, and writes a report', async () => {
    const { outputs, store, logs } = await runPlugin(columnStats, { params: { path: 'pipelines/data/example.csv', column: 'value', decimals: 2 } });
    expect(outputs).toMatchObject({ min: 1, max: 12.75, mean: 6.2, rows: 5 });
    expect(JSON.parse((await store.get(outputs.report!)).toString())).toMatchObject({ column: 'value', mean: 6.2 });
    expect(logs.map((l) => l.message)).toContain('column value: 5 values');
  });

  it('fails with DATA_INVALID on a column the file does not have', async () => {
    await expect(runPlugin(columnStats, { params: { path: 'pipelines/data/example.csv', column: 'price' } })).rejects.toMatchObject({ code: 'DATA_INVALID' });
  });
});
`;

const TSCONFIG = `{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "lib": ["ES2023"],
    "types": ["node"],
    "strict": true,
    "skipLibCheck": true,
    "isolatedModules": true,
    "noEmit": true
  },
  "include": ["*.ts", "test"]
}
`;

const GITIGNORE = `node_modules/
.mlpipe/
mlruns/
`;

const README = (name: string): string => `# ${name}

ML pipelines on [mlpipe](https://www.npmjs.com/package/mlpipe) and Temporal.

| | |
|---|---|
| \`pipelines/\` | pipelines (\`example.yaml\`) and their data |
| \`conf/\` | config the pipelines compose (\`config: example\`) |
| \`mlpipe.plugins.ts\` | this project's plugins (\`example.column-stats\`) |
| \`test/\` | unit tests of the plugins (\`mlpipe/testing\`) |

\`\`\`sh
npm install
npm test                       # tsc, then the plugin tests
npx mlpipe validate example    # compile the pipeline: every problem with file and line
npx mlpipe demo example        # a local Temporal server and a worker, then the run
npx mlpipe dev                 # Temporal dev server + a worker over this project + the MLflow UI
npx mlpipe run example params.column=value   # in another terminal, while 'mlpipe dev' runs
\`\`\`

\`npx mlpipe demo\` and \`npx mlpipe dev\` need the Temporal CLI (\`temporal\` on PATH, or
\`TEMPORAL_CLI=/path/to/temporal\`). Against a shared server, run workers with
\`TEMPORAL_ADDRESS=host:7233 npx mlpipe worker\` from a checkout of this project.
`;

function packageName(dir: string): string {
  const name = basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[._-]+/, '');
  return name || 'mlpipe-project';
}

export async function cmdInit(argv: string[]): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  const dir = resolve(positionals[0] ?? '.');
  mkdirSync(dir, { recursive: true });
  const own = ownPackage();
  const created: string[] = [];
  const kept: string[] = [];
  const write = (rel: string, text: string): void => {
    const file = join(dir, rel);
    if (existsSync(file)) return void kept.push(rel);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    created.push(rel);
  };

  // package.json: a new one, or the missing parts added to the one `npm install mlpipe` made.
  const pkgFile = join(dir, 'package.json');
  const existing = existsSync(pkgFile) ? (JSON.parse(readFileSync(pkgFile, 'utf8')) as PackageJson) : undefined;
  if (existing?.type && existing.type !== 'module') {
    throw new PipelineError('INPUT_INVALID', `${pkgFile} has "type": "${existing.type}"; mlpipe projects are ES modules.`, {
      hint: 'Set "type": "module", or run mlpipe init in a new folder.',
    });
  }
  const pkg: PackageJson = existing ?? { name: packageName(dir), version: '0.1.0', private: true };
  pkg.type = 'module';
  pkg.scripts = {
    test: 'tsc && vitest run',
    typecheck: 'tsc',
    demo: 'mlpipe demo example',
    dev: 'mlpipe dev',
    worker: 'mlpipe worker',
    ...pkg.scripts,
  };
  pkg.dependencies = { mlpipe: `^${own.version}`, ...pkg.dependencies };
  const tools = ['typescript', 'vitest', '@types/node'];
  pkg.devDependencies = { ...Object.fromEntries(tools.map((t) => [t, own.devDependencies?.[t] ?? 'latest'])), ...pkg.devDependencies };
  writeFileSync(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
  (existing ? kept : created).push(existing ? 'package.json (added what was missing)' : 'package.json');

  write('mlpipe.plugins.ts', PLUGINS);
  write('pipelines/example.yaml', PIPELINE);
  write('pipelines/data/example.csv', DATA);
  write('conf/example.yaml', CONF);
  write('test/column-stats.test.ts', TEST);
  write('tsconfig.json', TSCONFIG);
  write('.gitignore', GITIGNORE);
  write('README.md', README(pkg.name ?? packageName(dir)));

  const where = relative(process.cwd(), dir) || '.';
  out(`mlpipe project in ${dir}`);
  for (const f of created) out(`  created ${f}`);
  for (const f of kept) out(`  kept    ${f}`);
  out(`\nnext:\n${where === '.' ? '' : `  cd ${where}\n`}  npm install\n  npm test\n  npx mlpipe demo example`);
  return 0;
}
