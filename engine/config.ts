/**
 * Hydra-style config composition. Pure: files are read through the `ConfigFiles` port.
 *
 * A primary config `conf/<name>/config.yaml` (or `conf/<name>.yaml`) may start with a defaults list:
 *
 *   defaults:
 *     - model: small        # merges <root>/model/small.yaml under the key `model`
 *     - training: default
 *     - _self_              # where this file's own keys go (default: last, so they win)
 *
 * `<root>` is the folder of the primary config. A group option lands under its group name unless its
 * first line says `# @package _global_` (merge at the top) or `# @package a.b` (merge under a.b).
 *
 * Overrides, applied in order after composition:
 *   model=wide          select another option of a group in the defaults list
 *   +extra=fast         add a group that is not in the defaults list
 *   training.lr=0.01    set a value that exists (a typo is an error, with a suggestion)
 *   +new.key=1          add a value that does not exist yet
 *   ++any.key=1         set or add
 *   ~training.decay     delete
 * Values are read as YAML: 0.01 is a number, [64, 32] a list, true a boolean, 'x' a string.
 */
import { parse as parseYamlValue } from 'yaml';
import { PipelineError, SpecErrors } from './errors.js';
import { checkTree, LIMITS, shown } from './limits.js';
import { didYouMean } from './suggest.js';
import { parseYaml } from './yaml-doc.js';

export interface ConfigFiles {
  /** Reads a file by path relative to the conf/ folder, or undefined when it does not exist. */
  read(relPath: string): { file: string; text: string } | undefined;
  /** Names of the entries of a folder relative to conf/ (files with extension), [] when missing. */
  list(relDir: string): string[];
}

export type Override =
  | { kind: 'set' | 'add' | 'upsert'; key: string; path: string[]; value: unknown; text: string }
  | { kind: 'delete'; key: string; path: string[]; text: string };

export interface ComposedConfig {
  config: Record<string, unknown>;
  /** Selected option per group, e.g. { model: 'wide' }. */
  choices: Record<string, string>;
  /** Files merged, in order. */
  sources: string[];
  /** Key paths set or deleted by value overrides (not group selections), with the override's index. */
  overridden: { path: string[]; index: number }[];
}

/** Config option names (and `config:` names): no separators or dot segments, so a name stays a file in its group. */
export const OPTION_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

function checkOption(ov: Override, option: string, index: number): PipelineError | undefined {
  if (OPTION_NAME.test(option) && !option.includes('..') && option.length <= 128) return undefined;
  return new PipelineError('INPUT_INVALID', `Override '${shown(ov.text)}': '${shown(option)}' is not a config option name.`, {
    where: { file: '<overrides>', path: [index] },
    hint: 'Options are file names in the group folder (letters, digits, _ . -), without paths.',
  });
}

const KEY = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$/;
const OVERRIDE_HELP =
  'Overrides look like key=value (set), +key=value (add), ++key=value (set or add), ~key (delete), or group=option (choose a config group option).';

/** Parses `a.b=1`, `+a=x`, `++a=[1,2]`, `~a.b`. Throws OVERRIDE_MALFORMED with the override's index. */
export function parseOverride(text: string, index = 0): Override {
  const where = { file: '<overrides>', path: [index] };
  const m = /^(\+\+|\+|~)?([^=]*)(?:=(.*))?$/s.exec(text.trim());
  const prefix = m?.[1] ?? '';
  const key = m?.[2]?.trim() ?? '';
  const raw = m?.[3];
  if (!m || !KEY.test(key)) {
    throw new PipelineError('OVERRIDE_MALFORMED', `Override '${shown(text)}' is malformed: '${shown(key)}' is not a key path.`, {
      where,
      hint: OVERRIDE_HELP,
    });
  }
  const path = key.split('.');
  if (path.includes('__proto__')) {
    throw new PipelineError('OVERRIDE_MALFORMED', `Override '${shown(text)}': '__proto__' cannot be a key.`, {
      where,
      hint: OVERRIDE_HELP,
    });
  }
  if (prefix === '~') return { kind: 'delete', key, path, text };
  if (raw === undefined) {
    throw new PipelineError('OVERRIDE_MALFORMED', `Override '${text}' has no '=value'.`, { where, hint: OVERRIDE_HELP });
  }
  let value: unknown;
  try {
    value = raw.trim() === '' ? '' : parseYamlValue(raw, { maxAliasCount: LIMITS.yamlAliases });
  } catch (e) {
    throw new PipelineError(
      'OVERRIDE_MALFORMED',
      `Override '${shown(text)}': the value '${shown(raw)}' is not valid YAML (${(e as Error).message.split('\n')[0]}).`,
      {
        where,
        hint: "Quote values with special characters, e.g. key='a: b'; write lists as [1, 2].",
      },
    );
  }
  let bad: string | undefined;
  checkTree(value, (p, message) => (bad ??= `${p.length ? `'${p.join('.')}' ` : ''}${message}`));
  if (bad) throw new PipelineError('OVERRIDE_MALFORMED', `Override '${shown(text)}': its value ${bad}`, { where, hint: OVERRIDE_HELP });
  return { kind: prefix === '++' ? 'upsert' : prefix === '+' ? 'add' : 'set', key, path, value, text };
}

interface DefaultEntry {
  group?: string;
  option?: string | null;
  self?: boolean;
  optional?: boolean;
  /** A plain config of the root (not a group), e.g. `- base`. */
  config?: string;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = Object.hasOwn(out, k) ? out[k] : undefined;
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

function packageOf(text: string, group: string): string[] {
  const m = /^#\s*@package\s+(\S+)/m.exec(text.split('\n').slice(0, 3).join('\n'));
  const pkg = m?.[1] ?? '_group_';
  if (pkg === '_global_') return [];
  if (pkg === '_group_') return group.split('/');
  return pkg.split('.');
}

function nest(path: string[], value: Record<string, unknown>): Record<string, unknown> {
  return path.reduceRight<Record<string, unknown>>((acc, k) => ({ [k]: acc }), value);
}

const keyPathCache = new WeakMap<object, string[]>();

/** All dotted leaf-ish key paths of an object, for "did you mean" (remembered per object: suggestions for many problems stay cheap). */
export function keyPaths(obj: unknown, prefix = ''): string[] {
  if (!isPlainObject(obj)) return [];
  if (prefix === '') {
    const known = keyPathCache.get(obj);
    if (known) return known;
  }
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const p = prefix ? `${prefix}.${k}` : k;
    out.push(p, ...keyPaths(v, p));
  }
  if (prefix === '') keyPathCache.set(obj, out);
  return out;
}

function getPath(obj: Record<string, unknown>, path: string[]): { found: boolean; value?: unknown } {
  let cur: unknown = obj;
  for (const k of path) {
    if (!isPlainObject(cur) || !Object.hasOwn(cur, k)) return { found: false };
    cur = cur[k];
  }
  return { found: true, value: cur };
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = path;
  if (head === undefined) return obj;
  const child = Object.hasOwn(obj, head) ? obj[head] : undefined;
  return { ...obj, [head]: rest.length === 0 ? value : setPath(isPlainObject(child) ? child : {}, rest, value) };
}

function deletePath(obj: Record<string, unknown>, path: string[]): Record<string, unknown> {
  const [head, ...rest] = path;
  if (head === undefined || !Object.hasOwn(obj, head)) return obj;
  if (rest.length === 0) {
    const { [head]: _removed, ...others } = obj;
    return others;
  }
  const child = obj[head];
  return isPlainObject(child) ? { ...obj, [head]: deletePath(child, rest) } : obj;
}

/**
 * Applies value overrides to a plain object (used for both config and pipeline params).
 * `label` names the object in messages ("config", "params").
 */
export function applyValueOverrides(
  target: Record<string, unknown>,
  overrides: { ov: Override; index: number }[],
  label: string,
  prefix: string[] = [],
  problems?: PipelineError[],
): Record<string, unknown> {
  let out = target;
  for (const { ov, index } of overrides) {
    try {
      out = applyOne(out, ov, index, label, prefix);
    } catch (e) {
      if (!problems || !(e instanceof PipelineError)) throw e;
      problems.push(e);
    }
  }
  return out;
}

function applyOne(target: Record<string, unknown>, ov: Override, index: number, label: string, prefix: string[]): Record<string, unknown> {
  const path = ov.path.slice(prefix.length);
  const where = { file: '<overrides>', path: [index] };
  const existing = getPath(target, path);
  if (ov.kind === 'set' && !existing.found) {
    const suggestion = didYouMean(path.join('.'), keyPaths(target));
    throw new PipelineError('OVERRIDE_UNKNOWN_KEY', `Override '${ov.text}': ${label} has no key '${path.join('.')}'.${suggestion}`, {
      where,
      hint: `To add a new key, write +${ov.key}=... ; to see the ${label}, run 'mlpipe validate <pipeline> --show-config'.`,
    });
  }
  if (ov.kind === 'add' && existing.found) {
    throw new PipelineError(
      'OVERRIDE_KEY_EXISTS',
      `Override '${ov.text}': ${label} already has '${path.join('.')}' (= ${JSON.stringify(existing.value)}).`,
      {
        where,
        hint: `To change it write ${ov.key}=... (no '+'); ++${ov.key}=... sets or adds.`,
      },
    );
  }
  if (ov.kind === 'delete') {
    if (!existing.found) {
      throw new PipelineError(
        'OVERRIDE_UNKNOWN_KEY',
        `Override '${ov.text}': ${label} has no key '${path.join('.')}' to delete.${didYouMean(path.join('.'), keyPaths(target))}`,
        { where },
      );
    }
    return deletePath(target, path);
  }
  return setPath(target, path, ov.value);
}

function readDefaults(raw: unknown, file: string, locate: (p: (string | number)[]) => object): DefaultEntry[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    throw new PipelineError('CONFIG_INVALID', `'defaults' must be a list.`, {
      where: { file, ...locate(['defaults']) },
      hint: 'Write defaults as a YAML list: - model: small',
    });
  }
  return raw.map((item, i): DefaultEntry => {
    if (item === '_self_') return { self: true };
    if (typeof item === 'string') return { config: item };
    if (isPlainObject(item) && Object.keys(item).length === 1) {
      const [rawKey, option] = Object.entries(item)[0]!;
      const optional = rawKey.startsWith('optional ');
      const group = rawKey.replace(/^(optional|override)\s+/, '');
      if (option === null || typeof option === 'string') return { group, option: option as string | null, optional };
    }
    throw new PipelineError('CONFIG_INVALID', `Entry ${i} of 'defaults' must be '_self_', a config name, or 'group: option'.`, {
      where: { file, ...locate(['defaults', i]) },
      hint: 'Example:\n    defaults:\n      - model: small\n      - _self_',
    });
  });
}

/** Composes a primary config with its defaults list and the overrides. */
export function composeConfig(name: string, files: ConfigFiles, overrides: Override[] = [], overrideIndex: number[] = []): ComposedConfig {
  const candidates = [`${name}/config.yaml`, `${name}.yaml`, `${name}/config.yml`, `${name}.yml`];
  let primaryRel: string | undefined;
  let primary: { file: string; text: string } | undefined;
  for (const c of candidates) {
    primary = files.read(c);
    if (primary) {
      primaryRel = c;
      break;
    }
  }
  if (!primary || !primaryRel) {
    const available = [...new Set(files.list('').map((n) => n.replace(/\.ya?ml$/, '')))];
    throw new PipelineError(
      'CONFIG_NOT_FOUND',
      `Config '${name}' not found: looked for conf/${candidates[0]} and conf/${candidates[1]}.${didYouMean(name, available)}`,
      {
        hint: available.length
          ? `Configs in conf/: ${available.join(', ')}.`
          : 'Create conf/<name>/config.yaml, or remove `config:` from the pipeline.',
      },
    );
  }
  const root = primaryRel.includes('/') ? primaryRel.slice(0, primaryRel.lastIndexOf('/') + 1) : '';
  const doc = parseYaml(primary.file, primary.text);
  if (doc.value !== null && doc.value !== undefined && !isPlainObject(doc.value)) {
    throw new PipelineError('CONFIG_INVALID', `Config ${primary.file} must be a mapping of keys to values.`, {
      where: { file: primary.file, line: 1 },
    });
  }
  const own = { ...((doc.value as Record<string, unknown> | null) ?? {}) };
  const defaults = readDefaults(own['defaults'], primary.file, (p) => doc.locate(p));
  delete own['defaults'];
  if (!defaults.some((d) => d.self)) defaults.push({ self: true });

  // Group selections from overrides.
  const groupNames = new Set(defaults.filter((d) => d.group).map((d) => d.group!));
  const valueOverrides: { ov: Override; index: number }[] = [];
  const problems: PipelineError[] = [];
  overrides.forEach((ov, i) => {
    const index = overrideIndex[i] ?? i;
    const isGroupDir = files.list(`${root}${ov.key}`).length > 0;
    if ((ov.kind === 'set' || ov.kind === 'upsert') && groupNames.has(ov.key)) {
      if (typeof ov.value !== 'string' && ov.value !== null) {
        problems.push(
          new PipelineError(
            'OVERRIDE_MALFORMED',
            `Override '${shown(ov.text)}': '${ov.key}' is a config group; its value must be an option name.`,
            {
              where: { file: '<overrides>', path: [index] },
              hint: `Options: ${optionsOf(files, root, ov.key).join(', ')}.`,
            },
          ),
        );
        return;
      }
      const bad = typeof ov.value === 'string' ? checkOption(ov, ov.value, index) : undefined;
      if (bad) return void problems.push(bad);
      for (const d of defaults) if (d.group === ov.key) d.option = ov.value as string | null;
    } else if ((ov.kind === 'add' || ov.kind === 'upsert') && !ov.key.includes('.') && isGroupDir && typeof ov.value === 'string') {
      const bad = checkOption(ov, ov.value, index);
      if (bad) return void problems.push(bad);
      defaults.splice(
        defaults.findIndex((d) => d.self),
        0,
        { group: ov.key, option: ov.value },
      );
      groupNames.add(ov.key);
    } else if (ov.kind === 'delete' && groupNames.has(ov.key)) {
      for (const d of defaults) if (d.group === ov.key) d.option = null;
    } else {
      valueOverrides.push({ ov, index });
    }
  });

  let config: Record<string, unknown> = {};
  const sources: string[] = [];
  const choices: Record<string, string> = {};
  for (const d of defaults) {
    if (d.self) {
      config = deepMerge(config, own);
      sources.push(primary.file);
      continue;
    }
    const rel = d.group ? `${root}${d.group}/${d.option}` : `${root}${d.config}`;
    if (d.group && (d.option === null || d.option === undefined)) continue;
    const f = files.read(`${rel}.yaml`) ?? files.read(`${rel}.yml`);
    if (!f) {
      if (d.optional) continue;
      const options = d.group ? optionsOf(files, root, d.group) : [];
      problems.push(
        new PipelineError(
          'CONFIG_NOT_FOUND',
          d.group
            ? `Config group '${d.group}' has no option '${d.option}'.${didYouMean(d.option!, options)}`
            : `Config '${d.config}' (in the defaults of ${primary.file}) not found.`,
          {
            where: { file: primary.file, ...doc.locate(['defaults']) },
            hint: d.group
              ? options.length
                ? `Options in conf/${root}${d.group}/: ${options.join(', ')}.`
                : `Create conf/${root}${d.group}/${d.option}.yaml.`
              : `Create conf/${rel}.yaml.`,
          },
        ),
      );
      continue;
    }
    const gdoc = parseYaml(f.file, f.text);
    const body = gdoc.value ?? {};
    if (!isPlainObject(body)) {
      problems.push(
        new PipelineError('CONFIG_INVALID', `Config ${f.file} must be a mapping of keys to values.`, { where: { file: f.file, line: 1 } }),
      );
      continue;
    }
    if ('defaults' in body) {
      problems.push(
        new PipelineError('CONFIG_INVALID', `Config ${f.file} has its own defaults list; nested defaults are not supported.`, {
          where: { file: f.file, ...gdoc.locate(['defaults']) },
          hint: 'List every group in the primary config instead.',
        }),
      );
      continue;
    }
    config = deepMerge(config, d.group ? nest(packageOf(f.text, d.group), body) : body);
    sources.push(f.file);
    if (d.group) choices[d.group] = d.option!;
  }
  config = applyValueOverrides(config, valueOverrides, 'config', [], problems);
  if (problems.length === 1) throw problems[0]!;
  if (problems.length > 1) throw new SpecErrors(problems);
  return { config, choices, sources, overridden: valueOverrides.map(({ ov, index }) => ({ path: ov.path, index })) };
}

function optionsOf(files: ConfigFiles, root: string, group: string): string[] {
  return files
    .list(`${root}${group}`)
    .filter((n) => /\.ya?ml$/.test(n))
    .map((n) => n.replace(/\.ya?ml$/, ''))
    .sort();
}
