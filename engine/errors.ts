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

/** What a code means, and whether retrying the same work can help (the default of `retryable`). */
export interface CodeInfo {
  meaning: string;
  retryable: boolean;
  /** The HTTP status the prediction server answers with (codes in the `error` field of its error bodies). */
  httpStatus?: number;
}

/**
 * The catalogue: every code mlpipe raises, once. `NON_RETRYABLE_CODES`, the failure types Temporal
 * never retries, the prediction server's HTTP statuses and docs/errors.md all come from it (a unit
 * test checks that every code the sources use is here and documented).
 */
export const ERROR_CODES = {
  // The pipeline file and config: found at compile time, nothing runs.
  SPEC_INVALID: {
    retryable: false,
    meaning: 'The pipeline file breaks the schema or a limit, or names something it lacks (a section, a step).',
  },
  SPEC_YAML: {
    retryable: false,
    meaning: 'A pipeline or config file is not UTF-8 or not YAML, or expands too many aliases or nests too deep.',
  },
  SPEC_UNKNOWN_KEY: { retryable: false, meaning: 'A key the schema does not know (usually a typo; the message suggests the nearest).' },
  SPEC_NOT_FOUND: { retryable: false, meaning: 'No pipeline of that name or path.' },
  DAG_CYCLE: { retryable: false, meaning: 'The steps depend on each other in a circle.' },
  DAG_MISSING_NEED: { retryable: false, meaning: 'A step needs, or reads the output of, a step that does not exist.' },
  EXPR_SYNTAX: { retryable: false, meaning: 'A ${...} expression does not parse.' },
  EXPR_REFERENCE: { retryable: false, meaning: 'An expression reads something that is not there (a param, a config key, a step output).' },
  EXPR_EVAL: { retryable: false, meaning: 'An expression cannot be evaluated with these values (e.g. comparing a number with a string).' },
  EXPR_IN_CODE: {
    retryable: false,
    meaning: 'A ${...} inside a param that is code (a shell line, SQL): values reach code only through data params.',
  },
  CONFIG_NOT_FOUND: { retryable: false, meaning: 'A config, config group or group option that conf/ does not have.' },
  CONFIG_INVALID: { retryable: false, meaning: 'A config file is not a mapping, or its defaults list is malformed.' },
  OVERRIDE_MALFORMED: {
    retryable: false,
    meaning: 'An override is not key=value (or +key=value, ++key=value, ~key) with a valid key and value.',
  },
  OVERRIDE_UNKNOWN_KEY: {
    retryable: false,
    meaning: 'An override sets or deletes a key the config does not have (add one with +key=value).',
  },
  OVERRIDE_KEY_EXISTS: { retryable: false, meaning: 'A +key=value override adds a key the config already has.' },
  // Plugins and steps.
  PLUGIN_UNKNOWN: { retryable: false, meaning: 'A step uses a plugin this worker does not have.' },
  PLUGIN_VERSION_MISMATCH: {
    retryable: false,
    meaning: 'The worker has another version of a plugin than the run was compiled with (the message names both and the task queue).',
  },
  SUBMITTED_CODE_REFUSED: {
    retryable: false,
    meaning:
      "A pipeline sent with the run (not from the worker's project) has a step that runs code (util.shell, a plugin with runsCode) or asks for worker variables (env:), and the worker does not trust submitted pipelines.",
  },
  PLUGIN_DUPLICATE: { retryable: false, meaning: 'Two plugins have the same name.' },
  PLUGIN_INVALID: { retryable: false, meaning: "The project's plugin module does not load or does not export plugins." },
  PLUGIN_PARAMS: { retryable: false, meaning: "A step's params do not match its plugin's schema." },
  PLUGIN_INPUT: { retryable: false, meaning: 'A step input is missing, of the wrong kind, or not what the plugin can read.' },
  PLUGIN_OUTPUT: { retryable: false, meaning: "A plugin did not return its declared outputs, or returned too much (a plugin's bug)." },
  STEP_FAILED: {
    retryable: true,
    meaning: "A step's own work failed (a process exit, a remote job); the run's failure type when a step failed.",
  },
  DATA_INVALID: { retryable: false, meaning: 'The data cannot be used: unreadable, empty, wrong columns or types.' },
  QUALITY_GATE: { retryable: false, meaning: 'A model missed a quality bar the pipeline sets (evaluate thresholds, export parity).' },
  HPO_FAILED: { retryable: false, meaning: 'A search failed: more trials failed than hpo.maxFailed allows, or none produced the metric.' },
  ALERT_FAILED: {
    retryable: true,
    meaning: 'The alert webhook did not take the message (retried; not when it refused it outright, HTTP 3xx/4xx).',
  },
  // The artifact store.
  STORAGE_ERROR: { retryable: true, meaning: 'The store failed to read or write (after its own retries).' },
  STORAGE_DIGEST_MISMATCH: { retryable: false, meaning: 'Stored bytes do not match their sha256 name: altered or corrupt.' },
  STORAGE_NOT_FOUND: { retryable: true, meaning: 'An artifact, run or record is not in the store.' },
  STORAGE_KEY_INVALID: {
    retryable: false,
    meaning: 'A store key that could escape its folder (absolute, .., backslashes, percent-encoding).',
  },
  STORAGE_RECORD_CORRUPT: { retryable: false, meaning: 'A JSON record in the store does not parse.' },
  // Inputs and the environment.
  INPUT_INVALID: { retryable: false, meaning: 'A workflow input or command-line argument is invalid.' },
  TOOL_MISSING: {
    retryable: true,
    meaning:
      'A server, tool, library or optional package mlpipe needs is not there (Temporal, the Temporal CLI, MLflow, the GCS emulator, the XGBoost/LightGBM libraries, an optional npm package such as onnxruntime-node); the message names it and the line that installs it. Retryable by default (a server may come up), not when another attempt on the same worker cannot help.',
  },
  PORT_IN_USE: { retryable: true, meaning: 'A port mlpipe should listen on is taken or not allowed.' },
  TRACKING_ERROR: {
    retryable: true,
    meaning:
      "An MLflow request failed or was refused (MLflow's own code and the HTTP status in mlflowCode and httpStatus), or MLflow lacks what the run needs (a registry, a run).",
  },
  SERVICE_UNAVAILABLE: {
    retryable: true,
    meaning: 'A service (MLflow) cannot be reached for now: a step waits up to retry.serviceWait, tracking delivery until it comes back.',
  },
  INTERNAL: { retryable: false, httpStatus: 500, meaning: 'A bug in mlpipe: please report it with the message.' },
  // The prediction server's answers (the `error` field of its JSON error bodies).
  INVALID_INPUT: {
    retryable: false,
    httpStatus: 400,
    meaning: 'POST /predict: records that do not fit the model (details list each field).',
  },
  INVALID_JSON: { retryable: false, httpStatus: 400, meaning: 'POST /predict: the body is not JSON.' },
  NOT_FOUND: { retryable: false, httpStatus: 404, meaning: 'No such route.' },
  METHOD_NOT_ALLOWED: { retryable: false, httpStatus: 405, meaning: '/predict takes POST only.' },
  BODY_TOO_LARGE: { retryable: false, httpStatus: 413, meaning: 'The body exceeds --max-body.' },
  TOO_MANY_INSTANCES: { retryable: false, httpStatus: 413, meaning: 'More records in one request than --max-instances.' },
  UNSUPPORTED_MEDIA_TYPE: { retryable: false, httpStatus: 415, meaning: 'The body is not sent as application/json.' },
  PREDICTION_NOT_FINITE: {
    retryable: false,
    httpStatus: 422,
    meaning: 'The model produced NaN or Infinity for some records (details list them).',
  },
  CLIENT_ABORTED: {
    retryable: false,
    httpStatus: 499,
    meaning: 'The client closed the connection before its request was read (counted in /metrics, not answered).',
  },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * A code defined outside the catalogue, by a project's plugin: `<namespace>/<CODE>`, e.g.
 * `acme/FORECAST_HORIZON`. Retryable unless the error says otherwise.
 */
export type CustomErrorCode = `${string}/${string}`;

export type PipelineErrorCode = ErrorCode | CustomErrorCode;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** Codes for which retrying the same step can never help. */
export const NON_RETRYABLE_CODES: readonly ErrorCode[] = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => !ERROR_CODES[c].retryable);

export interface PipelineErrorOptions {
  where?: Location;
  hint?: string;
  cause?: unknown;
  /** Override the default retryability derived from the code. */
  retryable?: boolean;
  /** Structured facts that go with the error (JSON): the prediction server's field problems, a run's status. */
  details?: unknown;
}

export class PipelineError extends Error {
  readonly code: PipelineErrorCode;
  readonly where?: Location;
  readonly hint?: string;
  readonly retryable: boolean;
  readonly details?: unknown;

  constructor(code: PipelineErrorCode, message: string, options: PipelineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.where = options.where;
    this.hint = options.hint;
    this.retryable = options.retryable ?? (isErrorCode(code) ? ERROR_CODES[code].retryable : true);
    if (options.details !== undefined) this.details = options.details;
  }

  /** One readable block: `file:line:col  steps.train.with.epochs`, the message, then the hint. */
  format(): string {
    return formatProblem(this.code, this.message, this.where, this.hint);
  }
}

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
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** Where a problem is, as one line: `file:line:col at steps.train.with.epochs`, `override #2`, or ''. */
export function formatLocation(where: Location | undefined): string {
  if (where?.file === '<overrides>') {
    const i = where.path?.[0];
    return `override #${typeof i === 'number' ? i + 1 : '?'}`;
  }
  const loc: string[] = [];
  if (where?.file) {
    let f = where.file;
    if (where.line !== undefined) f += `:${where.line}`;
    if (where.line !== undefined && where.column !== undefined) f += `:${where.column}`;
    loc.push(f);
  }
  const keyPath = formatPath(where?.path);
  if (keyPath) loc.push(`at ${keyPath}`);
  return loc.join(' ');
}

export function formatProblem(code: string, message: string, where?: Location, hint?: string): string {
  const loc = formatLocation(where);
  return `${loc ? `${loc}\n` : ''}  error ${code}: ${message}${hint ? `\n  hint: ${hint}` : ''}`;
}

export function isPipelineError(e: unknown): e is PipelineError {
  return e instanceof PipelineError;
}

/** A zod issue, as far as messages need it (engine/ code may run in workflows: no zod import here). */
export interface ZodIssueLike {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/** zod issues on one line: `training.lr: Too small: expected number to be >0; seed: ...`. `root` names an empty path. */
export function formatZodIssues(issues: readonly ZodIssueLike[], root?: string): string {
  return issues
    .map((i) => {
      const at = i.path.map(String).join('.') || root;
      return at ? `${at}: ${i.message}` : i.message;
    })
    .join('; ');
}

// ---- Temporal failures ---------------------------------------------------------------------------
// engine/ imports no SDK, yet workflows (deterministic, sandboxed), activities and the CLI all need
// to build and read Temporal failures the same way. So this part is duck-typed: it produces the
// plain options of `ApplicationFailure.create` and reads failures by their fields and class names
// (Temporal sets `name` on the prototype of each of its failure classes). test/unit/errors.test.ts
// checks it against the real @temporalio/common classes and failure converter.

/** The fields of a PipelineError, as an ApplicationFailure carries them in `details[0]`. */
export interface ErrorFields {
  code: PipelineErrorCode;
  message: string;
  where?: Location;
  hint?: string;
  retryable: boolean;
  details?: unknown;
}

/** What `ApplicationFailure.create` takes to carry `e`: type = code, non-retryable as the error says, the fields in details. */
export function failureOptions(e: PipelineError): { type: string; message: string; nonRetryable: boolean; details: [ErrorFields] } {
  const fields: ErrorFields = { code: e.code, message: e.message, retryable: e.retryable };
  if (e.where) fields.where = e.where;
  if (e.hint !== undefined) fields.hint = e.hint;
  if (e.details !== undefined) fields.details = e.details;
  return { type: e.code, message: failureText(e), nonRetryable: !e.retryable, details: [fields] };
}

/** The failure's message, what users see in the CLI and the Temporal UI: where, the problem, the hint. */
function failureText(e: PipelineError): string {
  if (e instanceof SpecErrors) return e.format();
  const loc = formatLocation(e.where);
  return `${loc ? `${loc}: ` : ''}${e.message}${e.hint ? `\n  hint: ${e.hint}` : ''}`;
}

/** The PipelineError a failure carries (see `failureOptions`), under any Temporal wrappers; undefined for other failures. */
export function errorFromFailure(err: unknown): PipelineError | undefined {
  const root = rootFailure(err) as { type?: unknown; details?: unknown } | undefined;
  const d = Array.isArray(root?.details) ? (root.details[0] as Partial<ErrorFields> | undefined) : undefined;
  if (!d || typeof d !== 'object' || d.code !== root!.type || typeof d.message !== 'string' || typeof d.retryable !== 'boolean')
    return undefined;
  return new PipelineError(d.code!, d.message, {
    retryable: d.retryable,
    ...(d.where ? { where: d.where } : {}),
    ...(typeof d.hint === 'string' ? { hint: d.hint } : {}),
    ...(d.details !== undefined ? { details: d.details } : {}),
  });
}

/** Temporal's failures that only say where the real one happened (an activity, a child, the workflow). */
const WRAPPERS = new Set([
  'ActivityFailure',
  'ChildWorkflowFailure',
  'NexusOperationFailure',
  'WorkflowFailedError',
  'WorkflowUpdateFailedError',
]);

/**
 * The failure that says what went wrong: `err` without the Temporal wrappers around it
 * (WorkflowFailedError -> ChildWorkflowFailure -> ActivityFailure -> ApplicationFailure gives the
 * ApplicationFailure). Anything else is returned as it is.
 */
export function rootFailure(err: unknown): unknown {
  let e = err;
  for (let depth = 0; depth < 32; depth++) {
    const w = e as { name?: unknown; cause?: unknown } | null;
    if (typeof w !== 'object' || w === null || !WRAPPERS.has(String(w.name)) || w.cause === undefined || w.cause === null) break;
    e = w.cause;
  }
  return e;
}

/** The root failure's type (an ApplicationFailure's type, else the error's name) and message. */
export function describeFailure(err: unknown): { type?: string; message: string } {
  const e = rootFailure(err);
  if (!(typeof e === 'object' && e !== null && 'message' in e)) return { message: String(e) };
  const f = e as { name?: unknown; type?: unknown; message: unknown };
  const type =
    f.name === 'ApplicationFailure'
      ? typeof f.type === 'string' && f.type
        ? f.type
        : undefined
      : typeof f.name === 'string'
        ? f.name
        : undefined;
  return { ...(type ? { type } : {}), message: String(f.message) };
}
