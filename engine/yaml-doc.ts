/**
 * YAML parsing that remembers where every key is, so errors can name file:line:column. Pure.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { SpecError, SpecErrors, type Location } from './errors.js';

export interface SourceDoc {
  file: string;
  value: unknown;
  /** Location of a key path: the key itself when present, else the deepest existing parent. */
  locate(path: readonly (string | number)[]): Location;
}

export function parseYaml(file: string, text: string): SourceDoc {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new SpecErrors(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return new SpecError('SPEC_YAML', e.message.split('\n')[0]!, {
          where: { file, line: pos.line, column: pos.col },
          hint: 'Fix the YAML syntax (indentation, a missing colon or quote, a duplicated key).',
        });
      }),
    );
  }
  const value: unknown = doc.toJS({ maxAliasCount: 100 });
  return {
    file,
    value,
    locate(path) {
      const offset = findOffset(doc, path);
      if (offset === undefined) return { file, path: [...path] };
      const pos = lineCounter.linePos(offset);
      return { file, line: pos.line, column: pos.col, path: [...path] };
    },
  };
}

function findOffset(doc: Document, path: readonly (string | number)[]): number | undefined {
  let node: unknown = doc.contents;
  let offset = rangeStart(node);
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
      if (!pair) return offset;
      offset = rangeStart(pair.key) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key];
      if (item === undefined) return offset;
      offset = rangeStart(item) ?? offset;
      node = item;
    } else {
      return offset;
    }
  }
  return offset;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | undefined)?.range;
  return range ? range[0] : undefined;
}
