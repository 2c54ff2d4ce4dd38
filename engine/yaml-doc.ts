/**
 * YAML parsing that remembers where every key is, so errors can name file:line:column. Pure.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { PipelineError, SpecErrors, type Location } from './errors.js';
import { checkTree, LIMITS } from './limits.js';

export interface SourceDoc {
  file: string;
  value: unknown;
  /** Location of a key path: the key itself when present, else the deepest existing parent. */
  locate(path: readonly (string | number)[]): Location;
}

/**
 * Parses one YAML document within the limits (engine/limits.ts): file size, alias expansion, nesting
 * depth, no `__proto__` keys. Every problem is a SPEC_YAML / SPEC_INVALID error with its position.
 */
export function parseYaml(file: string, text: string): SourceDoc {
  if (text.length > LIMITS.fileBytes) {
    throw new PipelineError(
      'SPEC_INVALID',
      `${file} has ${text.length} characters; pipeline and config files are limited to ${LIMITS.fileBytes} bytes.`,
      {
        where: { file },
        hint: 'Keep data out of the spec: put it in a data file and pass its path.',
      },
    );
  }
  const lineCounter = new LineCounter();
  let doc: Document;
  try {
    doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  } catch (e) {
    throw tooComplex(file, e);
  }
  if (doc.errors.length > 0) {
    throw new SpecErrors(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return new PipelineError('SPEC_YAML', e.message.split('\n')[0]!, {
          where: { file, line: pos.line, column: pos.col },
          hint: 'Fix the YAML syntax (indentation, a missing colon or quote, a duplicated key).',
        });
      }),
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: LIMITS.yamlAliases });
  } catch (e) {
    throw tooComplex(file, e);
  }
  const locate = (path: readonly (string | number)[]): Location => {
    const offset = findOffset(doc, path);
    if (offset === undefined) return { file, path: [...path] };
    const pos = lineCounter.linePos(offset);
    return { file, line: pos.line, column: pos.col, path: [...path] };
  };
  const problems: PipelineError[] = [];
  checkTree(value, (path, message) =>
    problems.push(new PipelineError('SPEC_INVALID', `'${path.join('.')}' ${message}`, { where: locate(path), hint: TREE_HINT })),
  );
  if (problems.length) throw new SpecErrors(problems);
  return {
    file,
    value,
    locate,
  };
}

const TREE_HINT = `Files nest at most ${LIMITS.depth} levels, and '__proto__' cannot be a key.`;

/** A document that would exhaust the worker: too many aliases expanded, or nesting the parser cannot follow. */
function tooComplex(file: string, e: unknown): PipelineError {
  const alias = e instanceof ReferenceError && /alias/i.test(e.message);
  if (alias || e instanceof RangeError) {
    return new PipelineError(
      'SPEC_YAML',
      alias ? `${file} expands more than ${LIMITS.yamlAliases} YAML aliases.` : `${file} is nested too deeply to parse.`,
      {
        where: { file },
        hint: alias ? 'Use fewer aliases (*name); a file that multiplies them is refused.' : `Files nest at most ${LIMITS.depth} levels.`,
      },
    );
  }
  return new PipelineError('SPEC_YAML', `${file} could not be parsed: ${(e as Error).message}`, { where: { file } });
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
