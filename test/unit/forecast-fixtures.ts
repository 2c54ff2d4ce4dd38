/** A small forecasting table and its process.window params, shared by the forecaster export and serving tests. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Two daily series with weekly seasonality, a temperature (observed) and a promotion flag (known ahead). */
export function forecastTable(): string {
  const rows = ['store,day,sales,temp,promo'];
  let s = 11;
  const r = (): number => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (const [k, id] of ['north', 'south'].entries()) {
    for (let t = 0; t < 240; t++) {
      const day = new Date(Date.UTC(2024, 0, 1) + t * 86_400_000).toISOString().slice(0, 10);
      const temp = 10 + 8 * Math.sin((2 * Math.PI * t) / 365) + 2 * r();
      const promo = t % 11 === 0 ? 1 : 0;
      const sales = 500 * (k + 1) + 60 * Math.sin((2 * Math.PI * t) / 7) + 4 * temp + 120 * promo + 20 * r();
      rows.push(`${id},${day},${sales.toFixed(2)},${temp.toFixed(2)},${promo}`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-forecast-'));
  writeFileSync(join(dir, 'sales.csv'), `${rows.join('\n')}\n`);
  return join(dir, 'sales.csv');
}

export const WINDOW_PARAMS = {
  timeColumn: 'day',
  seriesColumn: 'store',
  target: 'sales',
  covariates: ['temp'],
  known: ['promo'],
  frequency: 'day',
  lookback: 21,
  horizon: 7,
  testSteps: 28,
  validationSteps: 28,
  calendar: ['dayOfWeek'],
} as const;
