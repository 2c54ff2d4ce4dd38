/** Small forecasting tables and window sets shared by the forecaster, export and serving tests. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildWindows, type LongTable } from '../../lib/window-build.js';

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

/** Two monthly series with a 12-month cycle and a little trend, 8 years. */
function seasonalMonthly(): LongTable {
  const rows: [number, number, number][] = [];
  for (const s of [0, 1])
    for (let i = 0; i < 96; i++)
      rows.push([s, Date.UTC(2000, i, 1), 100 + (s + 1) * 20 * Math.sin((2 * Math.PI * i) / 12) + 0.3 * i + ((i * 7919) % 5)]);
  return {
    seriesIds: ['a', 'b'],
    series: Int32Array.from(rows.map((r) => r[0])),
    time: Float64Array.from(rows.map((r) => r[1])),
    target: Float64Array.from(rows.map((r) => r[2])),
    covariates: [],
    known: [],
  };
}

/** seasonalMonthly() as windows: lookback 12, horizon 3, a test and a validation year, two walk-forward folds. */
export const seasonalMonthlyWindows = (): ReturnType<typeof buildWindows> =>
  buildWindows(seasonalMonthly(), {
    timeColumn: 't',
    seriesColumn: 's',
    targetColumn: 'y',
    frequency: 'month',
    lookback: 12,
    horizon: 3,
    stride: 1,
    evalStride: 1,
    season: 12,
    testSteps: 12,
    validationSteps: 12,
    folds: 2,
    fill: 'none',
    calendar: ['month'],
    holidays: [],
    dropIncomplete: true,
    covariateNames: [],
    knownNames: [],
  });
