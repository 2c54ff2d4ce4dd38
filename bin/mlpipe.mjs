#!/usr/bin/env node
// The `mlpipe` command. In a checkout it runs the TypeScript sources through tsx (no build step),
// or with MLPIPE_DIST=1 the compiled JavaScript of `npm run build`; the installed package runs dist/.
import { existsSync } from 'node:fs';

const source = new URL('../cli/main.ts', import.meta.url);
const fromSource = existsSync(source) && process.env.MLPIPE_DIST !== '1';
if (fromSource) {
  const { register } = await import('tsx/esm/api');
  register();
}
// `mlpipe runs list | head -1`: the reader closed the pipe, so there is nobody left to tell; end quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
}
const { main } = await import(fromSource ? source.href : '../dist/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
