/**
 * `mlpipe schedule`: Temporal Schedules that start the drift monitor (or the pipeline itself) on an
 * interval. The same as `temporal schedule create --type monitorWorkflow ...` (see the README).
 */
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { parseArgs } from 'node:util';
import { loadPipeline } from '../app/load-pipeline.js';
import { loadProjectRegistry } from '../app/project-plugins.js';
import type { Settings } from '../app/project.js';
import { parseDuration } from '../engine/duration.js';
import { PipelineError } from '../engine/errors.js';
import { MONITOR_WORKFLOW, PIPELINE_WORKFLOW } from '../engine/contracts.js';

const out = (s: string): boolean => process.stdout.write(`${s}\n`);

export function defaultScheduleId(kind: 'monitor' | 'pipeline', pipeline: string): string {
  return `${kind === 'monitor' ? 'monitor' : 'run'}-${pipeline}`;
}

/** `10s`, `1h 30m`, `1d 2h`: an interval in its largest whole units (ms only below a second). */
export function humanInterval(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n) parts.push(`${n}${unit}`);
  }
  return parts.join(' ');
}

type Ranges = { start: number | string; end: number | string; step: number }[];

/** A calendar spec as cron-like text: `minute=0 hour=2,14 dayOfWeek=MONDAY-FRIDAY` (fields that match everything left out). */
function calendarText(c: Record<string, unknown>): string {
  const full: Record<string, [number | string, number | string]> = {
    second: [0, 59],
    minute: [0, 59],
    hour: [0, 23],
    dayOfMonth: [1, 31],
    month: ['JANUARY', 'DECEMBER'],
    dayOfWeek: ['SUNDAY', 'SATURDAY'],
  };
  const fields: string[] = [];
  for (const field of ['second', 'minute', 'hour', 'dayOfMonth', 'month', 'year', 'dayOfWeek']) {
    const ranges = (c[field] as Ranges | undefined) ?? [];
    const all = full[field];
    if (!ranges.length || (all && ranges.length === 1 && ranges[0]!.start === all[0] && ranges[0]!.end === all[1] && ranges[0]!.step <= 1))
      continue;
    fields.push(
      `${field}=${ranges.map((r) => `${r.start}${r.end !== r.start ? `-${r.end}` : ''}${r.step > 1 ? `/${r.step}` : ''}`).join(',')}`,
    );
  }
  return `calendar ${fields.join(' ') || 'every second'}${typeof c['comment'] === 'string' && c['comment'] ? ` (${c['comment']})` : ''}`;
}

/** When a schedule fires: `every 10s`, `every 1h 30m (offset 5m)`, a cron string as written, or its calendar. */
export function describeScheduleSpec(
  spec: { intervals?: { every: number; offset?: number }[]; calendars?: object[] },
  cronStrings: string[] = [],
): string {
  const parts = [
    ...(spec.intervals ?? []).map((i) => `every ${humanInterval(i.every)}${i.offset ? ` (offset ${humanInterval(i.offset)})` : ''}`),
    ...cronStrings.map((c) => `cron ${c}`),
    ...(cronStrings.length ? [] : (spec.calendars ?? []).map((c) => calendarText(c as Record<string, unknown>))),
  ];
  return parts.join('; ') || 'no times (triggered by hand)';
}

export async function cmdSchedule(argv: string[], settings: Settings, connect: () => Promise<Client>): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      every: { type: 'string' },
      id: { type: 'string' },
      workflow: { type: 'string' },
      paused: { type: 'boolean' },
      note: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const need = (what: string): string => {
    const v = positionals[0];
    if (!v) throw new PipelineError('INPUT_INVALID', `mlpipe schedule ${sub} needs ${what}.`, { hint: "Run 'mlpipe help' for usage." });
    return v;
  };
  if (sub === 'create') {
    const pipelineRef = need('a pipeline');
    const overrides = positionals.slice(1);
    if (!values.every) throw new PipelineError('INPUT_INVALID', 'mlpipe schedule create needs --every <duration>, e.g. --every 1h.');
    const everyMs = parseDuration(values.every);
    if (everyMs === undefined || everyMs < 1000)
      throw new PipelineError('INPUT_INVALID', `--every '${values.every}' is not a duration of at least 1s.`, {
        hint: 'Write e.g. 15m, 1h or 1d.',
      });
    // Compile first: bad input creates nothing.
    const compiled = loadPipeline(settings.projectDir, pipelineRef, await loadProjectRegistry(settings.projectDir), overrides);
    const kind = (values.workflow ?? (compiled.monitor ? 'monitor' : 'pipeline')) as 'monitor' | 'pipeline';
    if (kind !== 'monitor' && kind !== 'pipeline')
      throw new PipelineError('INPUT_INVALID', `--workflow must be monitor or pipeline, not '${String(values.workflow)}'.`);
    if (kind === 'monitor' && !compiled.monitor) {
      throw new PipelineError('SPEC_INVALID', `Pipeline '${compiled.name}' has no monitor: section.`, {
        hint: 'Add one, or schedule the pipeline itself with --workflow pipeline.',
      });
    }
    const scheduleId = values.id ?? defaultScheduleId(kind, compiled.name);
    const client = await connect();
    try {
      await client.schedule.create({
        scheduleId,
        spec: { intervals: [{ every: everyMs }] },
        action: {
          type: 'startWorkflow',
          workflowType: kind === 'monitor' ? MONITOR_WORKFLOW : PIPELINE_WORKFLOW,
          workflowId: scheduleId,
          taskQueue: settings.taskQueue,
          args: [{ pipeline: pipelineRef, ...(overrides.length ? { overrides } : {}) }],
        },
        // A check still running when the next is due: skip the next one.
        policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: everyMs },
        state: { paused: values.paused ?? false, ...(values.note ? { note: values.note } : {}) },
      });
    } finally {
      await client.connection.close();
    }
    out(
      `schedule ${scheduleId}: ${kind === 'monitor' ? 'drift monitor' : 'pipeline run'} of ${compiled.name} every ${values.every} on task queue ${settings.taskQueue}${values.paused ? ' (paused)' : ''}`,
    );
    return 0;
  }
  const client = await connect();
  try {
    if (sub === 'list' || sub === undefined) {
      const rows: Record<string, unknown>[] = [];
      for await (const s of client.schedule.list()) {
        const d = await client.schedule.getHandle(s.scheduleId).describe();
        const action = d.action as { workflowType?: string; args?: unknown[] };
        const cron = (d.raw.schedule?.spec?.cronString ?? []).filter((c): c is string => !!c);
        rows.push({
          id: s.scheduleId,
          workflow: action.workflowType,
          input: action.args?.[0],
          paused: d.state.paused,
          note: d.state.note,
          every: d.spec.intervals?.map((i) => i.every),
          when: describeScheduleSpec(d.spec, cron),
          recentActions: d.info.recentActions.length,
          nextRun: d.info.nextActionTimes[0]?.toISOString(),
        });
      }
      if (values.json) out(JSON.stringify(rows, null, 2));
      else if (!rows.length) out('no schedules');
      else
        for (const r of rows)
          out(
            `${String(r['id']).padEnd(32)} ${String(r['workflow']).padEnd(16)} ${r['paused'] ? 'paused ' : 'active '} ${r['when']}  next ${r['nextRun'] ?? '-'}  ${JSON.stringify(r['input'])}`,
          );
      return 0;
    }
    const id = need('a schedule ID');
    const handle = client.schedule.getHandle(id);
    try {
      if (sub === 'pause') await handle.pause(values.note ?? 'paused with mlpipe');
      else if (sub === 'unpause') await handle.unpause(values.note ?? 'unpaused with mlpipe');
      else if (sub === 'trigger') await handle.trigger(ScheduleOverlapPolicy.ALLOW_ALL);
      else if (sub === 'delete') await handle.delete();
      else if (sub === 'describe') {
        out(JSON.stringify(await handle.describe(), null, 2));
        return 0;
      } else
        throw new PipelineError('INPUT_INVALID', `Unknown schedule command '${sub}'.`, {
          hint: 'Use create, list, describe, pause, unpause, trigger or delete.',
        });
    } catch (e) {
      if (e instanceof ScheduleNotFoundError)
        throw new PipelineError('INPUT_INVALID', `There is no schedule '${id}'.`, { hint: "List them with 'mlpipe schedule list'." });
      throw e;
    }
    out(`schedule ${id}: ${sub === 'delete' ? 'deleted' : sub === 'trigger' ? 'triggered' : `${sub}d`}`);
    return 0;
  } finally {
    await client.connection.close();
  }
}
