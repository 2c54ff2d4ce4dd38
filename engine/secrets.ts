/**
 * What a step's processes may see of the worker's environment, and the scrubbing of secret values
 * out of text that leaves the worker (failures, manifests, outputs, tracking).
 *
 * Pure: the environment comes in as an argument.
 */

export type Env = Record<string, string | undefined>;

/** Worker variables every step process gets: enough to find programs and behave like a login shell. */
export const BASE_ENV_NAMES = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'] as const;

/** Names whose values are treated as secrets. */
const SECRET_NAME = /(_TOKEN$|_SECRET|_PASSWORD|_KEY$|^MLFLOW_TRACKING_|^GOOGLE_APPLICATION_CREDENTIALS$|^AWS_)/i;

/** Values too short or too common to be worth scrubbing (they would wreck unrelated text). */
const NOT_A_SECRET = /^(.{0,3}|true|false|yes|no|on|off|\d+)$/i;

export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

/**
 * The environment of a step's processes: the base variables of the worker, plus the worker
 * variables the step asked for by name (`env: [NAME]`). Nothing else: not the worker's credentials.
 */
export function stepEnvironment(worker: Env, requested: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of [...BASE_ENV_NAMES, ...requested]) {
    const v = worker[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** The values to scrub: those of secret-looking worker variables and of the variables the step asked for. */
export function secretValues(worker: Env, requested: readonly string[] = []): string[] {
  const values = new Set<string>();
  for (const [name, v] of Object.entries(worker)) {
    if (v !== undefined && (isSecretName(name) || requested.includes(name)) && !NOT_A_SECRET.test(v)) values.add(v);
  }
  // Longest first, so a secret that contains another is replaced whole.
  return [...values].sort((a, b) => b.length - a.length);
}

/** Replaces every occurrence of every secret value by `***`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join('***');
  return out;
}

/** A scrubber over the given environment: `(text) => text without secret values`. */
export function scrubberFor(worker: Env, requested: readonly string[] = []): (text: string) => string {
  const secrets = secretValues(worker, requested);
  return (text) => scrub(text, secrets);
}

/**
 * Scrubs an error and its causes in place (message, stack, hint, details): Temporal serialises all of them
 * into the failure it records. Returns the same error.
 */
export function scrubError<E>(e: E, redact: (text: string) => string): E {
  let cur: unknown = e;
  for (let depth = 0; cur instanceof Error && depth < 10; depth++) {
    const err = cur as Error & { hint?: string };
    err.message = redact(err.message);
    if (err.stack) err.stack = redact(err.stack);
    if (typeof err.hint === 'string') Object.defineProperty(err, 'hint', { value: redact(err.hint) });
    if ((err as { details?: unknown }).details !== undefined)
      Object.defineProperty(err, 'details', { value: redactStrings((err as { details?: unknown }).details, redact) });
    cur = err.cause;
  }
  return e;
}

/** A copy of a JSON value with every string in it redacted. */
function redactStrings(value: unknown, redact: (text: string) => string, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (value === null || typeof value !== 'object' || depth > 64) return value;
  if (Array.isArray(value)) return value.map((v) => redactStrings(v, redact, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactStrings(v, redact, depth + 1)]));
}
