/** Pure formatting of the command line: schedule intervals and calendars, subcommand help. */
import { describe, expect, it } from 'vitest';
import { COMMAND_HELP, commandHelp } from '../../cli/help.js';
import { describeScheduleSpec, humanInterval } from '../../cli/schedule-command.js';
import { formatComparisonTables, formatSummary } from '../../cli/render.js';
import type { PipelineResult } from '../../engine/contracts.js';

describe('schedule list', () => {
  it('shows intervals in whole units, cron text as written, and a calendar as its fields', () => {
    expect(humanInterval(10_000)).toBe('10s');
    expect(humanInterval(5_400_000)).toBe('1h 30m');
    expect(humanInterval(90_061_000)).toBe('1d 1h 1m 1s');
    expect(humanInterval(250)).toBe('250ms');
    expect(describeScheduleSpec({ intervals: [{ every: 10_000 }] })).toBe('every 10s');
    expect(describeScheduleSpec({ intervals: [{ every: 3_600_000, offset: 300_000 }] })).toBe('every 1h (offset 5m)');
    const calendar = {
      second: [{ start: 0, end: 0, step: 1 }],
      minute: [{ start: 30, end: 30, step: 1 }],
      hour: [{ start: 2, end: 2, step: 1 }],
      dayOfMonth: [{ start: 1, end: 31, step: 1 }],
      month: [{ start: 'JANUARY', end: 'DECEMBER', step: 1 }],
      year: [],
      dayOfWeek: [{ start: 'MONDAY', end: 'FRIDAY', step: 1 }],
    };
    expect(describeScheduleSpec({ calendars: [calendar] }, ['30 2 * * 1-5'])).toBe('cron 30 2 * * 1-5');
    expect(describeScheduleSpec({ calendars: [calendar] })).toBe('calendar second=0 minute=30 hour=2 dayOfWeek=MONDAY-FRIDAY');
    expect(describeScheduleSpec({})).toBe('no times (triggered by hand)');
  });
});

describe('help', () => {
  it('has usage, a summary and --help for every command, and nothing for an unknown one', () => {
    for (const command of Object.keys(COMMAND_HELP)) {
      const text = commandHelp(command)!;
      expect(text.split('\n')[1]).toMatch(new RegExp(`^  mlpipe ${command}\\b`));
      expect(text).toContain('--help, -h');
    }
    expect(commandHelp('nope')).toBeUndefined();
    expect(commandHelp('constructor')).toBeUndefined();
  });
});

describe('run summary', () => {
  it('shows a model selection as its candidates best first, with the deciding metric first', () => {
    const r = {
      pipeline: 'p',
      state: 'succeeded',
      steps: {},
      outputs: {
        select: {
          winner: 'xgboost',
          comparison: { mlp: { rmse: 45123.4, r2: 0.84 }, xgboost: { rmse: 43210.9, r2: 0.861 }, lightgbm: { rmse: 44000, r2: 0.85 } },
          ranking: { metric: 'rmse', goal: 'minimize', order: ['xgboost', 'lightgbm', 'mlp'] },
        },
      },
    } as unknown as PipelineResult;
    expect(formatComparisonTables(r)).toEqual([
      '\nselect: model selection on rmse (minimize), winner xgboost',
      '  rank candidate         rmse           r2',
      '     1 xgboost         43,211        0.861',
      '     2 lightgbm        44,000        0.850',
      '     3 mlp             45,123        0.840',
    ]);
    expect(formatSummary(r)).toContain('winner xgboost');
    expect(formatComparisonTables({ ...r, outputs: { evaluate: { metrics: { rmse: 1 } } } })).toEqual([]);
  });
});
