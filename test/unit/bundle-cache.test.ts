import { mkdtempSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pruneBundles, touchBundle } from '../../app/bundle-cache.js';

function folder(files: Record<string, number>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-bundles-'));
  for (const [name, ageS] of Object.entries(files)) {
    writeFileSync(join(dir, name), 'x');
    const t = new Date(Date.now() - ageS * 1000);
    utimesSync(join(dir, name), t, t);
  }
  return dir;
}

describe('workflow bundle cache', () => {
  it('keeps the most recently used bundles and deletes the rest', async () => {
    const dir = folder({ 'a.js': 50, 'b.js': 40, 'c.js': 30, 'd.js': 20, 'e.js': 10, 'notes.txt': 100 });
    const deleted = await pruneBundles(dir, 3);
    expect(deleted.sort()).toEqual(['a.js', 'b.js']);
    expect(readdirSync(dir).sort()).toEqual(['c.js', 'd.js', 'e.js', 'notes.txt']);
  });

  it('a bundle read back counts as used', async () => {
    const dir = folder({ 'old.js': 500, 'mid.js': 200, 'new.js': 100 });
    await touchBundle(join(dir, 'old.js'));
    expect(statSync(join(dir, 'old.js')).mtimeMs).toBeGreaterThan(statSync(join(dir, 'new.js')).mtimeMs);
    await pruneBundles(dir, 2);
    expect(readdirSync(dir).sort()).toEqual(['new.js', 'old.js']);
  });

  it('deletes temporary files of interrupted writes only when they are old', async () => {
    const dir = folder({ 'x.js': 10, 'y.js.123.tmp': 7200, 'z.js.456.tmp': 5 });
    expect(await pruneBundles(dir, 8)).toEqual(['y.js.123.tmp']);
    expect(readdirSync(dir).sort()).toEqual(['x.js', 'z.js.456.tmp']);
  });

  it('a missing folder is nothing to do', async () => {
    expect(await pruneBundles(join(tmpdir(), 'mlpipe-no-such-folder-for-bundles'))).toEqual([]);
  });
});
