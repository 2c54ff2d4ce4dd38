import type { CompiledPipeline } from '../engine/types.js';

function label(text: string): string {
  return text.replace(/"/g, '#quot;');
}

/** The DAG as a Mermaid flowchart: one node per step (id and plugin), conditional steps dashed. */
export function renderMermaid(p: CompiledPipeline): string {
  const lines = ['flowchart TD'];
  for (const id of p.order) {
    const s = p.steps[id]!;
    lines.push(`  ${id}["${label(id)}<br/><small>${label(s.uses)}</small>"]`);
  }
  for (const id of p.order) {
    const s = p.steps[id]!;
    for (const n of s.needs) lines.push(s.when === undefined ? `  ${n} --> ${id}` : `  ${n} -.->|when| ${id}`);
  }
  const conditional = p.order.filter((id) => p.steps[id]!.when !== undefined);
  if (conditional.length) {
    lines.push('  classDef conditional stroke-dasharray: 5 5');
    lines.push(`  class ${conditional.join(',')} conditional`);
  }
  return lines.join('\n');
}
