/**
 * Bounds on everything a run's input and its pipeline files can make the worker do, and the checks
 * that apply them. The workflow input (pipeline name, overrides, labels) is untrusted: anyone who
 * may start a workflow on the task queue controls it. Pure: no Node imports.
 */
import { PipelineError, type Location } from './errors.js';

export const LIMITS = {
  /** A pipeline or config file. */
  fileBytes: 256 * 1024,
  /** YAML aliases expanded per document (a billion-laughs file stops here). */
  yamlAliases: 100,
  /** Nesting depth of maps and lists in a file or an override value. */
  depth: 64,
  overrides: 200,
  overrideChars: 4096,
  /** The pipeline field of the workflow input: a name or a relative path. */
  pipelineRefChars: 255,
  labels: 64,
  labelKeyChars: 64,
  labelValueChars: 256,
  /** The whole workflow input as JSON, a submitted pipeline's spec and config files included. */
  inputBytes: 256 * 1024,
  /** Config files a submitted pipeline carries. */
  submittedConfigFiles: 100,
  /** Data files (digests in the store) a submitted pipeline names. */
  submittedDataFiles: 100,
  steps: 1000,
  /** Problems one compile reports: past this it stops looking (the report travels in the run's failure). */
  problems: 100,
  /** The compiled pipeline travels through history as one payload (Temporal warns at 512 KB, fails at 2 MB). */
  compiledBytes: 1024 * 1024,
  maxParallel: 2000,
  maximumAttempts: 10_000,
  backoffCoefficient: 100,
  /**
   * Longest duration Temporal accepts: the server turns protobuf Durations into Go's time.Duration,
   * int64 nanoseconds, so about 292 years.
   */
  durationMs: Math.floor(Number(2n ** 63n - 1n) / 1e6),
} as const;

/** Label keys: letters, digits and _ . / - ; values: printable text without control characters. */
export const LABEL_KEY = /^[A-Za-z0-9_][A-Za-z0-9_./-]*$/;
const CONTROL = /[\u0000-\u001f\u007f]/;

function inputError(message: string, hint?: string, where?: Location): PipelineError {
  return new PipelineError('INPUT_INVALID', message, { hint, where });
}

/** Short, printable form of an untrusted value for messages. */
export function shown(value: string, max = 80): string {
  const s = JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
  return s.slice(1, -1);
}

/**
 * Text that arrived through the workflow input must be well-formed: no lone surrogates, and no
 * U+FFFD (what a decoder puts where the bytes were not valid UTF-8).
 */
export function checkText(value: string, what: string): void {
  const m = /\uFFFD|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.exec(value);
  if (m) {
    const at = m.index;
    throw inputError(
      `${what} '${shown(value)}' is not valid UTF-8 text (character ${at}).`,
      'Send UTF-8 text; the input was decoded with replacement characters.',
    );
  }
}

/** The first offset at which `bytes` is not valid UTF-8, or -1. */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    const n = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    if (n < 0) return i;
    for (let k = 1; k <= n; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
    }
    const c1 = bytes[i + 1] ?? 0;
    if ((b === 0xe0 && c1 < 0xa0) || (b === 0xed && c1 > 0x9f) || (b === 0xf0 && c1 < 0x90) || (b === 0xf4 && c1 > 0x8f)) return i;
    i += n + 1;
  }
  return -1;
}

/** Decodes a file's bytes as UTF-8, or throws SPEC_YAML naming the file and the first bad byte. */
export function decodeUtf8(file: string, bytes: Uint8Array): string {
  if (bytes.length > LIMITS.fileBytes) {
    throw new PipelineError(
      'SPEC_INVALID',
      `${file} is ${bytes.length} bytes; pipeline and config files are limited to ${LIMITS.fileBytes} bytes.`,
      {
        where: { file },
        hint: 'Keep data out of the spec: put it in a data file and pass its path.',
      },
    );
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const offset = invalidUtf8Offset(bytes);
    const before = new TextDecoder().decode(bytes.subarray(0, Math.max(0, offset)));
    const line = before.split('\n').length;
    throw new PipelineError(
      'SPEC_YAML',
      `${file} is not valid UTF-8: byte ${offset} (0x${(bytes[offset] ?? 0).toString(16).padStart(2, '0')}) on line ${line}.`,
      {
        where: { file, line },
        hint: 'Save the file as UTF-8.',
      },
    );
  }
}

/** Checks the overrides of a run: count, length, text. Throws INPUT_INVALID. */
export function checkOverrides(overrides: readonly unknown[]): void {
  if (overrides.length > LIMITS.overrides) {
    throw inputError(
      `${overrides.length} overrides; a run takes at most ${LIMITS.overrides}.`,
      'Put larger changes in a config group option.',
    );
  }
  overrides.forEach((o, i) => {
    if (typeof o !== 'string') throw inputError(`Override #${i + 1} is not a string.`);
    if (o.length > LIMITS.overrideChars) {
      throw inputError(
        `Override #${i + 1} ('${shown(o, 40)}') is ${o.length} characters; overrides are limited to ${LIMITS.overrideChars}.`,
        'Pass large values through a file.',
        {
          file: '<overrides>',
          path: [i],
        },
      );
    }
    checkText(o, `Override #${i + 1}`);
  });
}

/** Checks a run's labels: count, key charset and length, value length and text. Throws INPUT_INVALID. */
export function checkLabels(labels: Record<string, unknown>): void {
  const entries = Object.entries(labels);
  if (entries.length > LIMITS.labels) throw inputError(`${entries.length} labels; a run takes at most ${LIMITS.labels}.`);
  for (const [k, v] of entries) {
    if (k.length > LIMITS.labelKeyChars || !LABEL_KEY.test(k)) {
      throw inputError(
        `Label key '${shown(k)}' is not allowed: keys are up to ${LIMITS.labelKeyChars} letters, digits, _ . / - (starting with a letter, digit or _).`,
      );
    }
    if (typeof v !== 'string') throw inputError(`Label '${k}' must have a string value.`);
    if (v.length > LIMITS.labelValueChars)
      throw inputError(`Label '${k}' is ${v.length} characters; values are limited to ${LIMITS.labelValueChars}.`);
    if (CONTROL.test(v)) throw inputError(`Label '${k}' contains a control character.`);
    checkText(v, `Label '${k}'`);
  }
}

/**
 * Walks a parsed document: depth within the bound, no `__proto__` key (which would reach an
 * object's prototype). Calls `fail` with the key path of the first problem of each kind.
 */
export function checkTree(
  value: unknown,
  fail: (path: (string | number)[], message: string) => void,
  maxDepth: number = LIMITS.depth,
): void {
  let deep = false;
  const walk = (v: unknown, path: (string | number)[]): void => {
    if (v === null || typeof v !== 'object') return;
    if (path.length >= maxDepth) {
      if (!deep) fail(path, `is nested deeper than ${maxDepth} levels.`);
      deep = true;
      return;
    }
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, [...path, i]));
      return;
    }
    for (const k of Object.keys(v)) {
      if (k === '__proto__') {
        fail([...path, k], "cannot be a key: '__proto__' would reach the object's prototype.");
        continue;
      }
      walk((v as Record<string, unknown>)[k], [...path, k]);
    }
  };
  walk(value, []);
}

/** Size, text and labels of a workflow input, before any of it is used. Throws INPUT_INVALID. */
export function checkInput(input: unknown): void {
  let bytes: number;
  try {
    bytes = new TextEncoder().encode(JSON.stringify(input) ?? '').length;
  } catch {
    throw new PipelineError('INPUT_INVALID', 'The workflow input is not JSON.');
  }
  const o = (input ?? {}) as Record<string, unknown>;
  const submitted = o['submitted'] !== null && typeof o['submitted'] === 'object' ? (o['submitted'] as Record<string, unknown>) : undefined;
  if (bytes > LIMITS.inputBytes) {
    const carried = submitted ? new TextEncoder().encode(JSON.stringify(submitted)).length : 0;
    throw new PipelineError(
      'INPUT_INVALID',
      `The workflow input is ${bytes} bytes${submitted ? ` (the submitted pipeline, its config files and file digests: ${carried})` : ''}; it is limited to ${LIMITS.inputBytes}.`,
      {
        hint: submitted
          ? 'Keep data out of the spec and config (data files travel through the artifact store), or start the pipeline by name on a worker that has it (mlpipe run --by-name).'
          : 'Pass large values through files in the project.',
      },
    );
  }
  let proto: string | undefined;
  checkTree(input, (path, message) => (proto ??= `${path.join('.')} ${message}`));
  if (proto) throw new PipelineError('INPUT_INVALID', `Workflow input: ${proto}`);
  if (typeof o['pipeline'] === 'string') checkText(o['pipeline'], 'Pipeline');
  if (submitted) checkSubmitted(submitted);
  if (o['labels'] !== null && typeof o['labels'] === 'object') checkLabels(o['labels'] as Record<string, unknown>);
}

/** Config file names of a submitted pipeline: relative paths of name segments (no '..', no absolute path). */
const CONF_PATH = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(\/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$/;

/** The bounds of a submitted pipeline: file counts, config file names, text. Throws INPUT_INVALID. */
export function checkSubmitted(submitted: Record<string, unknown>): void {
  const conf = submitted['conf'] !== null && typeof submitted['conf'] === 'object' ? Object.entries(submitted['conf'] as object) : [];
  const files = submitted['files'] !== null && typeof submitted['files'] === 'object' ? Object.keys(submitted['files'] as object) : [];
  if (conf.length > LIMITS.submittedConfigFiles) {
    throw inputError(
      `The submitted pipeline carries ${conf.length} config files; at most ${LIMITS.submittedConfigFiles}.`,
      'Compose fewer files, or start the pipeline by name on a worker that has its conf/.',
    );
  }
  if (files.length > LIMITS.submittedDataFiles) {
    throw inputError(
      `The submitted pipeline names ${files.length} data files; at most ${LIMITS.submittedDataFiles}.`,
      'Read a folder of files through one step (util.fetch of an archive, a query), or start the pipeline by name on a worker that has the files.',
    );
  }
  for (const [name, text] of conf) {
    if (!CONF_PATH.test(name) || name.split('/').some((s) => s === '..' || s === '.') || name.length > LIMITS.pipelineRefChars) {
      throw inputError(`Submitted config file '${shown(name)}' is not a path inside conf/ (name segments of letters, digits, _ . -).`);
    }
    if (typeof text === 'string') checkText(text, `Submitted config file '${name}'`);
  }
  if (typeof submitted['text'] === 'string') checkText(submitted['text'], 'The submitted pipeline');
  if (typeof submitted['file'] === 'string') checkText(submitted['file'], 'The submitted pipeline file');
  for (const f of files) checkText(f, 'A submitted data file');
}
