/**
 * `${...}` expressions in pipeline specs. Pure (no Node imports): the compiler uses it to check and
 * resolve what is known before a run, and the workflow uses it to resolve step outputs during a run.
 *
 * Grammar:
 *   expr    := or
 *   or      := and ('||' and)*
 *   and     := cmp ('&&' cmp)*
 *   cmp     := unary (('==' | '!=' | '<' | '<=' | '>' | '>=') unary)?
 *   unary   := '!' unary | primary
 *   primary := number | 'string' | "string" | true | false | null | ref | '(' expr ')'
 *   ref     := name ('.' name | '[' (number | string) ']')*
 *
 * A string that is exactly one `${expr}` yields the expression's value with its type (a number, a
 * list, an artifact reference...). A string with text around expressions yields a string. `$${`
 * writes a literal `${`.
 */
import { PipelineError } from './errors.js';

export type RefPath = (string | number)[];

export type Expr =
  | { kind: 'lit'; value: unknown }
  | { kind: 'ref'; path: RefPath }
  | { kind: 'not'; operand: Expr }
  | { kind: 'bin'; op: BinOp; left: Expr; right: Expr };

type BinOp = '||' | '&&' | '==' | '!=' | '<' | '<=' | '>' | '>=';

/** A parsed template: literal text and expressions, in order. */
export type TemplatePart = { text: string } | { expr: Expr; source: string };

const TOKEN =
  /\s*(?:(\d+(?:\.\d+)?)|'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(\|\||&&|==|!=|<=|>=|<|>|!|\(|\)|\.|\[|\])|([A-Za-z_][A-Za-z0-9_-]*))/y;

type Token = { t: 'num'; v: number } | { t: 'str'; v: string } | { t: 'op'; v: string } | { t: 'name'; v: string };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  TOKEN.lastIndex = 0;
  let pos = 0;
  while (pos < src.length) {
    if (/^\s*$/.test(src.slice(pos))) break;
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(src);
    if (!m) {
      throw new PipelineError('EXPR_SYNTAX', `Unexpected character '${src.slice(pos).trimStart()[0]}' in expression '${src}'.`, {
        hint: 'Expressions use names (params.x, conf.a.b, steps.s.outputs.o), literals, ! && || == != < <= > >= and parentheses.',
      });
    }
    pos = TOKEN.lastIndex;
    if (m[1] !== undefined) out.push({ t: 'num', v: Number(m[1]) });
    else if (m[2] !== undefined) out.push({ t: 'str', v: m[2].replace(/\\(.)/g, '$1') });
    else if (m[3] !== undefined) out.push({ t: 'str', v: m[3].replace(/\\(.)/g, '$1') });
    else if (m[4] !== undefined) out.push({ t: 'op', v: m[4] });
    else out.push({ t: 'name', v: m[5]! });
  }
  return out;
}

export function parseExpression(src: string): Expr {
  const toks = tokenize(src);
  let i = 0;
  const fail = (what: string): never => {
    throw new PipelineError('EXPR_SYNTAX', `${what} in expression '${src}'.`, {
      hint: 'Write references as params.name, conf.group.key or steps.<step>.outputs.<name>; quote strings with \' or ".',
    });
  };
  const peek = (): Token | undefined => toks[i];
  const isOp = (v: string): boolean => {
    const t = toks[i];
    return t !== undefined && t.t === 'op' && t.v === v;
  };

  const primary = (): Expr => {
    const t = toks[i++];
    if (!t) return fail('Unexpected end');
    if (t.t === 'num' || t.t === 'str') return { kind: 'lit', value: t.v };
    if (t.t === 'op' && t.v === '(') {
      const e = or();
      if (!isOp(')')) fail("Missing ')'");
      i++;
      return e;
    }
    if (t.t === 'name') {
      if (t.v === 'true') return { kind: 'lit', value: true };
      if (t.v === 'false') return { kind: 'lit', value: false };
      if (t.v === 'null') return { kind: 'lit', value: null };
      const path: RefPath = [t.v];
      for (;;) {
        if (isOp('.')) {
          i++;
          const n = toks[i++];
          if (!n || (n.t !== 'name' && n.t !== 'num')) fail(`Expected a name after '.'`);
          path.push(n!.t === 'num' ? n!.v : (n as { v: string }).v);
        } else if (isOp('[')) {
          i++;
          const n = toks[i++];
          if (!n || (n.t !== 'num' && n.t !== 'str')) fail(`Expected a number or a quoted key inside [ ]`);
          path.push(n!.v as string | number);
          if (!isOp(']')) fail("Missing ']'");
          i++;
        } else break;
      }
      return { kind: 'ref', path };
    }
    return fail(`Unexpected '${t.v}'`);
  };
  const unary = (): Expr => {
    if (isOp('!')) {
      i++;
      return { kind: 'not', operand: unary() };
    }
    return primary();
  };
  const cmp = (): Expr => {
    const left = unary();
    const t = peek();
    if (t && t.t === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.v)) {
      i++;
      return { kind: 'bin', op: t.v as BinOp, left, right: unary() };
    }
    return left;
  };
  const and = (): Expr => {
    let e = cmp();
    while (isOp('&&')) {
      i++;
      e = { kind: 'bin', op: '&&', left: e, right: cmp() };
    }
    return e;
  };
  const or = (): Expr => {
    let e = and();
    while (isOp('||')) {
      i++;
      e = { kind: 'bin', op: '||', left: e, right: and() };
    }
    return e;
  };

  if (toks.length === 0) fail('Empty expression');
  const e = or();
  if (i < toks.length) fail(`Unexpected '${String(toks[i]!.v)}'`);
  return e;
}

/** Splits a string into literal text and `${...}` expressions. */
export function parseTemplate(text: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let buf = '';
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      buf += '${';
      i += 3;
      continue;
    }
    if (text.startsWith('${', i)) {
      // Find the matching '}' while skipping quoted strings.
      let j = i + 2;
      let quote: string | undefined;
      for (; j < text.length; j++) {
        const c = text[j];
        if (quote) {
          if (c === '\\') j++;
          else if (c === quote) quote = undefined;
        } else if (c === "'" || c === '"') quote = c;
        else if (c === '}') break;
      }
      if (j >= text.length) {
        throw new PipelineError('EXPR_SYNTAX', `Unclosed '\${' in '${text}'.`, {
          hint: "Close the expression with '}', or write $${ for a literal ${.",
        });
      }
      if (buf) parts.push({ text: buf });
      buf = '';
      const source = text.slice(i + 2, j);
      parts.push({ expr: parseExpression(source), source });
      i = j + 1;
      continue;
    }
    buf += text[i];
    i++;
  }
  if (buf) parts.push({ text: buf });
  return parts;
}

/** All references an expression reads. */
export function references(e: Expr, out: RefPath[] = []): RefPath[] {
  switch (e.kind) {
    case 'ref':
      out.push(e.path);
      break;
    case 'not':
      references(e.operand, out);
      break;
    case 'bin':
      references(e.left, out);
      references(e.right, out);
      break;
    default:
      break;
  }
  return out;
}

export type Scope = Record<string, unknown>;

/**
 * Looks a path up in a scope; undefined when any part is missing. Own properties only: `toString`,
 * `constructor` or `__proto__` are names like any other, never what every object inherits.
 */
export function lookup(scope: unknown, path: RefPath): unknown {
  let cur: unknown = scope;
  for (const key of path) {
    if (cur === null || cur === undefined || typeof cur !== 'object' || !Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string | number, unknown>)[key];
  }
  return cur;
}

export function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  return Boolean(v);
}

export function evaluate(e: Expr, scope: Scope): unknown {
  switch (e.kind) {
    case 'lit':
      return e.value;
    case 'ref': {
      const v = lookup(scope, e.path);
      return v === undefined ? null : v;
    }
    case 'not':
      return !truthy(evaluate(e.operand, scope));
    case 'bin': {
      if (e.op === '&&') {
        const l = evaluate(e.left, scope);
        return truthy(l) ? evaluate(e.right, scope) : l;
      }
      if (e.op === '||') {
        const l = evaluate(e.left, scope);
        return truthy(l) ? l : evaluate(e.right, scope);
      }
      const l = evaluate(e.left, scope);
      const r = evaluate(e.right, scope);
      switch (e.op) {
        case '==':
          return jsonEqual(l, r);
        case '!=':
          return !jsonEqual(l, r);
        default:
          if (!((typeof l === 'number' && typeof r === 'number') || (typeof l === 'string' && typeof r === 'string'))) {
            throw new PipelineError(
              'EXPR_EVAL',
              `Cannot compare ${JSON.stringify(l)} ${e.op} ${JSON.stringify(r)}: both sides must be numbers or both strings.`,
            );
          }
          if (e.op === '<') return l < r;
          if (e.op === '<=') return l <= r;
          if (e.op === '>') return l > r;
          return l >= r;
      }
    }
  }
}

function jsonEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

function stringify(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** Renders a parsed template: the typed value of a lone expression, else a string. */
export function renderTemplate(parts: TemplatePart[], scope: Scope): unknown {
  if (parts.length === 1 && 'expr' in parts[0]!) return evaluate(parts[0].expr, scope);
  return parts.map((p) => ('text' in p ? p.text : stringify(evaluate(p.expr, scope)))).join('');
}

/**
 * Resolves every template string inside a JSON value. `canResolve` decides per template whether it
 * is resolved now (true) or kept as text for later (false): the compiler resolves what depends on
 * params and config only, and leaves step outputs to the workflow.
 */
export function resolveDeep(
  value: unknown,
  scope: Scope,
  canResolve: (refs: RefPath[]) => boolean = () => true,
  options: { escapeResolved?: boolean } = {},
): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    const parts = parseTemplate(value);
    const refs = parts.flatMap((p) => ('expr' in p ? references(p.expr) : []));
    if (!canResolve(refs)) return value;
    const out = renderTemplate(parts, scope);
    return options.escapeResolved ? escapeTemplates(out) : out;
  }
  if (Array.isArray(value)) return value.map((v) => resolveDeep(v, scope, canResolve, options));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = resolveDeep(v, scope, canResolve, options);
    return out;
  }
  return value;
}

/**
 * Writes every `${` in the strings of a JSON value as `$${`, so that resolving it again yields the
 * same text. The compiler resolves params and config and the workflow resolves the result once more:
 * without this, a `$${` escape or a value containing `${` would be read as an expression at run time.
 */
export function escapeTemplates(value: unknown): unknown {
  if (typeof value === 'string') return value.replaceAll('${', () => '$${'); // a function: '$$' in a replacement string is '$'
  if (Array.isArray(value)) return value.map(escapeTemplates);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, escapeTemplates(v)]));
  return value;
}

/** Visits every template string in a JSON value with its key path. */
export function forEachTemplate(
  value: unknown,
  visit: (text: string, path: (string | number)[]) => void,
  path: (string | number)[] = [],
): void {
  if (typeof value === 'string') {
    if (value.includes('${')) visit(value, path);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => forEachTemplate(v, visit, [...path, i]));
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) forEachTemplate(v, visit, [...path, k]);
  }
}
