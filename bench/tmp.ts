/**
 * A bench's scratch folder, in the system's temporary folder, deleted when the bench's process exits
 * (benches write stores, servers' databases and generated data: up to a few GiB each run), unless
 * BENCH_KEEP=1.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

process.on('exit', () => {
  if (process.env['BENCH_KEEP'] === '1') return;
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A new folder `mlpipe-bench-<name>-XXXXXX`, removed at exit. */
export function benchDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mlpipe-bench-${name}-`));
  made.push(dir);
  return dir;
}
