import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef } from '../../engine/types.js';
import { definePlugin } from '../sdk.js';

/**
 * util.write — writes `content` (text, or JSON for any other value) to the artifact store and
 * outputs the reference. A small source of artifacts for examples and tests.
 */
export const write = definePlugin({
  name: 'util.write',
  version: '1',
  description: 'Writes `content` (text or JSON) to the artifact store; outputs `artifact`.',
  params: z
    .object({
      content: z.unknown(),
      name: z.string().default('content'),
      mediaType: z.string().optional(),
    })
    .strict(),
  outputs: { artifact: 'artifact' },
  async run(ctx, p) {
    const text = typeof p.content === 'string' ? p.content : JSON.stringify(p.content, null, 2);
    const mediaType = p.mediaType ?? (typeof p.content === 'string' ? 'text/plain' : 'application/json');
    return { artifact: await ctx.store.put(text, { name: p.name, mediaType }) };
  },
});

/**
 * util.read — reads an artifact (digest-checked) and outputs its size, digest, line count and, when
 * it is small (<= `maxTextBytes`), its text.
 */
export const read = definePlugin({
  name: 'util.read',
  version: '1',
  description: 'Reads the `artifact` input (digest-checked); outputs size, sha256, lines and small text.',
  params: z.object({ maxTextBytes: z.number().int().min(0).max(16384).default(4096) }).strict(),
  inputs: { artifact: 'artifact' },
  outputs: { size: 'json', sha256: 'json', lines: 'json', text: 'json' },
  async run(ctx, p, inputs) {
    const ref = inputs['artifact'];
    if (!isArtifactRef(ref)) {
      throw new PipelineError('PLUGIN_INPUT', `Input 'artifact' must be an artifact reference, got ${JSON.stringify(ref)?.slice(0, 80)}.`, {
        hint: 'Bind it to an artifact output, e.g. inputs: { artifact: ${steps.write.outputs.artifact} }.',
      });
    }
    const bytes = await ctx.store.get(ref);
    const text = bytes.toString('utf8');
    return {
      size: bytes.length,
      sha256: ref.sha256,
      lines: text.length === 0 ? 0 : text.split('\n').length - (text.endsWith('\n') ? 1 : 0),
      text: bytes.length <= p.maxTextBytes ? text : null,
    };
  },
});
