/**
 * Type-level tests of definePlugin, checked by `tsc --noEmit` (never run). Each `@ts-expect-error`
 * must meet an error, so a typing that stops catching a mistake fails the typecheck.
 */
import { z } from 'zod';
import { definePlugin, type ArtifactRef } from '../../plugins/sdk.js';

const params = z.object({ scale: z.number().default(1) });

// Inputs are typed from the declared map; `name?` inputs may be absent.
definePlugin({
  name: 'types.inputs',
  version: '1',
  description: 'typed inputs',
  params,
  inputs: { data: 'dataset', 'extra?': 'dataset', settings: 'json' },
  outputs: { min: 'json' },
  async run(_ctx, p, inputs) {
    const data: ArtifactRef = inputs.data;
    const extra: ArtifactRef | null | undefined = inputs.extra;
    // @ts-expect-error an optional input may be absent
    const sure: ArtifactRef = inputs.extra;
    // @ts-expect-error not a declared input
    void inputs.missing;
    // @ts-expect-error json inputs are unknown until checked
    const n: number = inputs.settings;
    const scale: number = p.scale;
    return { min: [data.sha256, extra?.sha256, sure, n, scale] };
  },
});

// run must return every declared output, under its declared name.
definePlugin({
  name: 'types.misnamed',
  version: '1',
  description: 'a misnamed output',
  params,
  outputs: { min: 'json', max: 'json' },
  // @ts-expect-error 'minn' is not a declared output, and 'min' is missing
  async run() {
    return { minn: 0, max: 1 };
  },
});

definePlugin({
  name: 'types.missing',
  version: '1',
  description: 'a missing output',
  params,
  outputs: { model: 'model', metrics: 'metrics' },
  // @ts-expect-error the declared output 'metrics' is missing
  async run(ctx) {
    return { model: await ctx.store.put('x') };
  },
});

definePlugin({
  name: 'types.kinds',
  version: '1',
  description: 'artifact outputs must be references',
  params,
  outputs: { model: 'model' },
  // @ts-expect-error a model output is an ArtifactRef (or null), not a string
  async run() {
    return { model: 'model.bin' };
  },
});

// Artifact outputs may be null (nothing this time); json outputs take any value.
definePlugin({
  name: 'types.ok',
  version: '1',
  description: 'a correct plugin',
  params,
  inputs: { 'validation?': 'dataset' },
  outputs: { validation: 'dataset', rows: 'json', metrics: 'metrics' },
  async run(ctx, _p, inputs) {
    return { validation: inputs.validation ? await ctx.store.put('x') : null, rows: 3, metrics: { rmse: 1 } };
  },
});

// Outputs (or inputs) computed from the params are only known at run time: a plain record.
definePlugin({
  name: 'types.dynamic',
  version: '1',
  description: 'outputs named by the params',
  params: z.object({ names: z.array(z.string()) }),
  inputs: (p) => Object.fromEntries(p.names.map((n) => [n, 'dataset' as const])),
  outputs: (p) => Object.fromEntries(p.names.map((n) => [n, 'json' as const])),
  async run(_ctx, p, inputs) {
    return Object.fromEntries(p.names.map((n) => [n, inputs[n]]));
  },
});
