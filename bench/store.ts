/**
 * Artifact store throughput and cache-hit latency: the GCS store against fake-gcs-server (memory
 * backend, loopback) and the local folder store.
 *
 *   npm run bench:store                 # 64 x 1 MiB objects, 1 x 256 MiB object
 *   BENCH_LARGE_MIB=64 npm run bench:store
 *
 * Upload and download include hashing (sha256 and MD5 up; sha256 verification down). Results:
 * bench/results/store-<date>.json.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../dev/gcs-emulator.js';
import { GcsArtifactStore } from '../adapters/gcs-store.js';
import { LocalArtifactStore } from '../adapters/local-store.js';
import type { ArtifactStore } from '../engine/ports.js';
import type { ArtifactRef } from '../engine/types.js';
import { benchDir } from './tmp.js';

const SMALL = Number(process.env['BENCH_SMALL_COUNT'] ?? 64);
const LARGE_MIB = Number(process.env['BENCH_LARGE_MIB'] ?? 256);
const HITS = 200;

async function file(mib: number, seed: string): Promise<string> {
  const path = join(benchDir('store'), `${seed}.bin`);
  const out = createWriteStream(path);
  let block = createHash('sha512').update(seed).digest();
  for (let i = 0; i < mib; i++) {
    const buf = Buffer.alloc(2 ** 20);
    for (let o = 0; o < buf.length; o += 64) {
      block = createHash('sha512').update(block).digest();
      block.copy(buf, o);
    }
    if (!out.write(buf)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
  return path;
}

const mibps = (bytes: number, ms: number): number => Math.round((bytes / 2 ** 20 / (ms / 1000)) * 10) / 10;
const pct = (xs: number[], p: number): number =>
  Math.round([...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]! * 1000) / 1000;

async function measure(
  label: string,
  writer: ArtifactStore,
  coldReader: () => ArtifactStore,
  smallFiles: string[],
  large: string,
): Promise<Record<string, number>> {
  let t = performance.now();
  const smallRefs: ArtifactRef[] = [];
  for (const f of smallFiles) smallRefs.push(await writer.putFile(f));
  const smallUp = performance.now() - t;
  t = performance.now();
  const largeRef = await writer.putFile(large);
  const largeUp = performance.now() - t;

  const reader = coldReader();
  t = performance.now();
  for (const r of smallRefs) await reader.getFile(r);
  const smallDown = performance.now() - t;
  t = performance.now();
  await reader.getFile(largeRef);
  const largeDown = performance.now() - t;

  // Cache hits: a 1 MiB artifact already local (the GCS store re-hashes its cached copy).
  const hit: number[] = [];
  for (let i = 0; i < HITS; i++) {
    const s = performance.now();
    await reader.getFile(smallRefs[i % smallRefs.length]!);
    hit.push(performance.now() - s);
  }
  // Step-cache validation: verify() of one output (GCS: one metadata request; local: re-hash, then memoised).
  const verify: number[] = [];
  for (let i = 0; i < HITS; i++) {
    const s = performance.now();
    if (!(await reader.verify(smallRefs[i % smallRefs.length]!))) throw new Error(`${label}: verify failed`);
    verify.push(performance.now() - s);
  }
  const small = smallFiles.length * 2 ** 20;
  const result = {
    smallUploadMiBps: mibps(small, smallUp),
    smallUploadObjectsPerSecond: Math.round(smallFiles.length / (smallUp / 1000)),
    largeUploadMiBps: mibps(LARGE_MIB * 2 ** 20, largeUp),
    smallDownloadMiBps: mibps(small, smallDown),
    largeDownloadMiBps: mibps(LARGE_MIB * 2 ** 20, largeDown),
    cacheHitP50Ms: pct(hit, 50),
    cacheHitP99Ms: pct(hit, 99),
    verifyP50Ms: pct(verify, 50),
    verifyP99Ms: pct(verify, 99),
  };
  console.log(label, result);
  return result;
}

async function main(): Promise<void> {
  const smallFiles = await Promise.all(Array.from({ length: SMALL }, (_, i) => file(1, `small-${i}`)));
  const large = await file(LARGE_MIB, 'large');
  const emu = await startEmulator(['bench']);
  const results: Record<string, Record<string, number>> = {};
  try {
    const localRoot = benchDir('local');
    results['local'] = await measure(
      'local folder',
      new LocalArtifactStore(localRoot),
      () => new LocalArtifactStore(localRoot),
      smallFiles,
      large,
    );
    const gcs = (): GcsArtifactStore =>
      new GcsArtifactStore({ uri: 'gs://bench/store', storage: emu.storage, cacheDir: benchDir('cache') });
    results['gcsEmulator'] = await measure('GCS (fake-gcs-server)', gcs(), gcs, smallFiles, large);
    await rm(localRoot, { recursive: true, force: true });
  } finally {
    await emu.stop();
  }
  const date = new Date().toISOString().slice(0, 10);
  mkdirSync(join('bench', 'results'), { recursive: true });
  const out = join('bench', 'results', `store-${date}.json`);
  writeFileSync(
    out,
    `${JSON.stringify({ date, machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version }, smallObjects: SMALL, largeMiB: LARGE_MIB, results }, null, 2)}\n`,
  );
  console.log(`wrote ${out}`);
}

await main();
