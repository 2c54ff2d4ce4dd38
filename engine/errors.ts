/**
 * Errors with stable codes. Every error the engine raises on purpose is a PipelineError:
 * `code` is stable (tests, scripts and Temporal failure types rely on it), `where` says which
 * file / line / key it is about, and `hint` says what to do.
 *
 * Pure: no Node imports, safe in workflow code.
 */

export interface Location {
  file?: string;
  line?: number;
  column?: number;
  /** Key path inside the document, e.g. ["steps", "train", "with", "epochs"]. */
  path?: (string | number)[];
}

export type ErrorCode =
  | 'SPEC_INVALID'
  | 'SPEC_YAML'
  | 'SPEC_UNKNOWN_KEY'
  | 'SPEC_NOT_FOUND'
  | 'DAG_CYCLE'
  | 'DAG_MISSING_NEED'
  | 'EXPR_SYNTAX'
  | 'EXPR_REFERENCE'
  | 'EXPR_EVAL'
  | 'EXPR_IN_CODE'
  | 'CONFIG_NOT_FOUND'
  | 'CONFIG_INVALID'
  | 'OVERRIDE_MALFORMED'
  | 'OVERRIDE_UNKNOWN_KEY'
  | 'OVERRIDE_KEY_EXISTS'
  | 'PLUGIN_UNKNOWN'
  | 'PLUGIN_DUPLICATE'
  | 'PLUGIN_INVALID'
  | 'PLUGIN_PARAMS'
  | 'PLUGIN_INPUT'
  | 'PLUGIN_OUTPUT'
  | 'STEP_FAILED'
  | 'DATA_INVALID'
  | 'QUALITY_GATE'
  | 'STORAGE_ERROR'
  | 'STORAGE_DIGEST_MISMATCH'
  | 'STORAGE_NOT_FOUND'
  | 'STORAGE_KEY_INVALID'
  | 'STORAGE_RECORD_CORRUPT'
  | 'INPUT_INVALID'
  | 'TOOL_MISSING'
  | 'PORT_IN_USE'
  | 'TRACKING_ERROR'
  | 'SERVICE_UNAVAILABLE';

/** Codes for which retrying the same step can never help. */
export const NON_RETRYABLE_CODES: readonly ErrorCode[] = [
  'STORAGE_KEY_INVALID',
  'SPEC_INVALID',
  'SPEC_YAML',
  'SPEC_UNKNOWN_KEY',
  'SPEC_NOT_FOUND',
  'DAG_CYCLE',
  'DAG_MISSING_NEED',
  'EXPR_SYNTAX',
  'EXPR_REFERENCE',
  'EXPR_EVAL',
  'EXPR_IN_CODE',
  'CONFIG_NOT_FOUND',
  'CONFIG_INVALID',
  'OVERRIDE_MALFORMED',
  'OVERRIDE_UNKNOWN_KEY',
  'OVERRIDE_KEY_EXISTS',
  'PLUGIN_UNKNOWN',
  'PLUGIN_DUPLICATE',
  'PLUGIN_INVALID',
  'PLUGIN_PARAMS',
  'PLUGIN_INPUT',
  'PLUGIN_OUTPUT',
  'STORAGE_DIGEST_MISMATCH',
  'STORAGE_RECORD_CORRUPT',
  'INPUT_INVALID',
  'DATA_INVALID',
  'QUALITY_GATE',
];

export interface PipelineErrorOptions {
  where?: Location;
  hint?: string;
  cause?: unknown;
  /** Override the default retryability derived from the code. */
  retryable?: boolean;
}

export class PipelineError extends Error {
  readonly code: ErrorCode;
  readonly where?: Location;
  readonly hint?: string;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: PipelineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.where = options.where;
    this.hint = options.hint;
    this.retryable = options.retryable ?? !NON_RETRYABLE_CODES.includes(code);
  }

  /** One readable block: `file:line:col  steps.train.with.epochs`, the message, then the hint. */
  format(): string {
    return formatProblem(this.code, this.message, this.where, this.hint);
  }
}

export class SpecError extends PipelineError {}
export class ConfigError extends PipelineError {}
export class ExpressionError extends PipelineError {}
export class PluginInputError extends PipelineError {}
export class StorageError extends PipelineError {}
export class DataError extends PipelineError {}

/** Several problems found in one pass (validation reports all it can, not just the first). */
export class SpecErrors extends PipelineError {
  readonly problems: PipelineError[];
  constructor(list: PipelineError[]) {
    // Nested aggregates (a config's problems inside a pipeline's) are listed flat.
    const problems = list.flatMap((p) => (p instanceof SpecErrors ? p.problems : [p]));
    const first = problems[0];
    // The message travels in the run's failure: the first 100 in full, then a count.
    const shown = problems.slice(0, 100).map((p) => p.format());
    if (problems.length > 100) shown.push(`… and ${problems.length - 100} more.`);
    super(first?.code ?? 'SPEC_INVALID', shown.join('\n\n'), {
      where: first?.where,
    });
    this.problems = problems;
  }
  override format(): string {
    const n = this.problems.length;
    return `${n} problem${n === 1 ? '' : 's'} found:\n\n${this.message}`;
  }
}

export function formatPath(path: readonly (string | number)[] | undefined): string {
  if (!path || path.length === 0) return '';
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`))
    .join('');
}

export function formatProblem(code: string, message: string, where?: Location, hint?: string): string {
  const loc: string[] = [];
  if (where?.file === '<overrides>') {
    const i = where.path?.[0];
    return `override #${typeof i === 'number' ? i + 1 : '?'}\n  error ${code}: ${message}${hint ? `\n  hint: ${hint}` : ''}`;
  }
  if (where?.file) {
    let f = where.file;
    if (where.line !== undefined) f += `:${where.line}`;
    if (where.line !== undefined && where.column !== undefined) f += `:${where.column}`;
    loc.push(f);
  }
  const keyPath = formatPath(where?.path);
  if (keyPath) loc.push(`at ${keyPath}`);
  const head = loc.length ? `${loc.join(' ')}\n` : '';
  return `${head}  error ${code}: ${message}${hint ? `\n  hint: ${hint}` : ''}`;
}

export function isPipelineError(e: unknown): e is PipelineError {
  return e instanceof PipelineError;
}
