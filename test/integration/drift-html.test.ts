/**
 * The HTML drift report in a real headless Chromium (Debian's, driven by playwright-core), opened
 * from a file with the network cut: the page must be complete offline.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeDrift, type Dataset } from '../../engine/drift/index.js';
import { renderDriftHtml } from '../../engine/drift/html.js';

const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`Chromium not found at ${CHROMIUM}: run 'bash deploy/provision.sh --with-chromium' or set CHROMIUM.`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
afterAll(async () => {
  await browser?.close();
});

function data(shift: number, n: number): Dataset {
  const x = Float64Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 3 + shift);
  const z = Float64Array.from({ length: n }, (_, i) => Math.cos(i * 0.3));
  const codes = Int32Array.from({ length: n }, (_, i) => (shift ? i % 4 : i % 3));
  return {
    rows: n,
    columns: {
      income: { type: 'num', values: x },
      stable: { type: 'num', values: z },
      region: { type: 'cat', codes, labels: ['north', 'south', 'east', 'west <&>'] },
    },
  };
}

describe('HTML drift report', () => {
  it('renders offline in Chromium with the summary, each column and its chart', async () => {
    const result = computeDrift(data(0, 500), data(2, 450));
    const file = join(mkdtempSync(join(tmpdir(), 'mlpipe-html-')), 'drift.html');
    writeFileSync(file, renderDriftHtml(result, { title: 'Housing drift', reference: 'train.parquet', current: 'today.parquet' }));
    const context = await browser.newContext({ offline: true });
    const page = await context.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`file://${file}`);
    expect(await page.title()).toBe('Housing drift');
    expect(await page.locator('#dataset-verdict').innerText()).toContain('Dataset drift detected');
    expect(await page.locator('#drifted-count').innerText()).toBe(`${result.numberOfDriftedColumns} of 3`);
    const rows = page.locator('#columns tbody tr');
    expect(await rows.count()).toBe(3);
    for (const c of result.columns) {
      const row = page.locator(`tr[data-column="${c.column_name}"]`);
      expect(await row.locator('td.verdict').innerText()).toBe(c.drift_detected ? 'Drift detected' : 'No drift');
      expect(await row.locator('td').nth(2).innerText()).toBe(c.stattest_name);
      expect(await row.locator('svg rect').count()).toBeGreaterThan(0);
      const box = await row.locator('svg').boundingBox();
      expect(box?.width).toBeGreaterThan(100);
    }
    // The category label with markup characters is shown as text, not parsed.
    expect(await page.locator('tr[data-column="region"] svg text', { hasText: 'west <&>' }).count()).toBe(1);
    expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]);
    await context.close();
  });
});
