/**
 * Arithmetic formulas for derived columns (`{ op: derive, name, expr }` in process.transform). One
 * parse tree, two targets: SQL for DuckDB at fit time and ONNX nodes at export, so a derived feature
 * is computed the same way in training and in serving.
 *
 * Grammar:
 *   expr   := term (('+' | '-') term)*
 *   term   := unary (('*' | '/') unary)*
 *   unary  := '-' unary | power             -a ^ 2 is -(a ^ 2), as in mathematics
 *   power  := call ('^' unary)?             right-associative: 2 ^ 3 ^ 2 is 2 ^ 9; 2 ^ -1 works
 *   call   := fn '(' expr ')' | number | column | '(' expr ')'
 *   fn     := sqrt | ln | exp | abs
 *   column := name | "quoted name"
 */
import { ident } from '../adapters/duckdb.js';
import { PipelineError } from '../engine/errors.js';

export type Formula =
  | { kind: 'num'; value: number }
  | { kind: 'col'; name: string }
  | { kind: 'neg'; operand: Formula }
  | { kind: 'fn'; fn: FormulaFn; arg: Formula }
  | { kind: 'bin'; op: '+' | '-' | '*' | '/' | '^'; left: Formula; right: Formula };

export const FORMULA_FUNCTIONS = ['sqrt', 'ln', 'exp', 'abs'] as const;
export type FormulaFn = (typeof FORMULA_FUNCTIONS)[number];

const TOKEN = /\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|"((?:[^"\\]|\\.)*)"|([-+*/^()])|([A-Za-z_][A-Za-z0-9_]*))/y;

type Token = { t: 'num'; v: number } | { t: 'name'; v: string; quoted: boolean } | { t: 'op'; v: string };

function fail(src: string, message: string): never {
  throw new PipelineError('PLUGIN_PARAMS', `derive: ${message} in formula '${src}'.`, {
    hint: `Formulas use column names (or "quoted names"), numbers, + - * / ^, parentheses and ${FORMULA_FUNCTIONS.join(', ')}.`,
  });
}

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let pos = 0;
  while (pos < src.length) {
    if (/^\s*$/.test(src.slice(pos))) break;
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(src);
    if (!m) fail(src, `unexpected '${src.slice(pos).trimStart()[0]}'`);
    pos = TOKEN.lastIndex;
    if (m[1] !== undefined) out.push({ t: 'num', v: Number(m[1]) });
    else if (m[2] !== undefined) out.push({ t: 'name', v: m[2].replace(/\\(.)/g, '$1'), quoted: true });
    else if (m[3] !== undefined) out.push({ t: 'op', v: m[3] });
    else out.push({ t: 'name', v: m[4]!, quoted: false });
  }
  return out;
}

export function parseFormula(src: string): Formula {
  const tokens = tokenize(src);
  let i = 0;
  const peek = (): Token | undefined => tokens[i];
  const isOp = (v: string): boolean => {
    const t = tokens[i];
    return t?.t === 'op' && t.v === v;
  };
  const expect = (v: string): void => {
    if (!isOp(v)) fail(src, `expected '${v}'${peek() ? '' : ' at the end'}`);
    i++;
  };
  /** A left-associative chain of `next` joined by `ops` (one precedence level). */
  const chain = (next: () => Formula, ops: readonly ('+' | '-' | '*' | '/')[]) => (): Formula => {
    let left = next();
    for (let t = tokens[i]; t?.t === 'op' && (ops as readonly string[]).includes(t.v); t = tokens[i]) {
      i++;
      left = { kind: 'bin', op: t.v as (typeof ops)[number], left, right: next() };
    }
    return left;
  };
  const term = chain(() => unary(), ['*', '/']);
  const expr = chain(term, ['+', '-']);
  const unary = (): Formula => {
    if (isOp('-')) {
      i++;
      return { kind: 'neg', operand: unary() };
    }
    return power();
  };
  const power = (): Formula => {
    const base = call();
    if (isOp('^')) {
      i++;
      return { kind: 'bin', op: '^', left: base, right: unary() };
    }
    return base;
  };
  const call = (): Formula => {
    const t = tokens[i++];
    if (!t) fail(src, 'unexpected end');
    if (t.t === 'num') return { kind: 'num', value: t.v };
    if (t.t === 'op') {
      if (t.v !== '(') fail(src, `unexpected '${t.v}'`);
      const inner = expr();
      expect(')');
      return inner;
    }
    if (!t.quoted && isOp('(')) {
      if (!(FORMULA_FUNCTIONS as readonly string[]).includes(t.v)) fail(src, `unknown function '${t.v}'`);
      i++;
      const arg = expr();
      expect(')');
      return { kind: 'fn', fn: t.v as FormulaFn, arg };
    }
    return { kind: 'col', name: t.v };
  };
  if (!tokens.length) fail(src, 'nothing');
  const tree = expr();
  if (i < tokens.length) fail(src, `unexpected '${(tokens[i] as { v: unknown }).v}'`);
  return tree;
}

/** The columns a formula reads, in first-use order. */
export function formulaColumns(f: Formula, out: string[] = []): string[] {
  if (f.kind === 'col' && !out.includes(f.name)) out.push(f.name);
  else if (f.kind === 'neg') formulaColumns(f.operand, out);
  else if (f.kind === 'fn') formulaColumns(f.arg, out);
  else if (f.kind === 'bin') {
    formulaColumns(f.left, out);
    formulaColumns(f.right, out);
  }
  return out;
}

/** DuckDB SQL computing the formula in DOUBLE. */
export function formulaSql(f: Formula): string {
  switch (f.kind) {
    case 'num':
      return `${f.value}::DOUBLE`;
    case 'col':
      return `${ident(f.name)}::DOUBLE`;
    case 'neg':
      return `(-${formulaSql(f.operand)})`;
    case 'fn':
      return `${f.fn}(${formulaSql(f.arg)})`;
    case 'bin':
      return f.op === '^'
        ? `power(${formulaSql(f.left)}, ${formulaSql(f.right)})`
        : `(${formulaSql(f.left)} ${f.op} ${formulaSql(f.right)})`;
  }
}
