/**
 * What the compiler needs to know about plugins, without importing them (the engine stays pure).
 * The plugin registry implements this.
 */
export interface ParamIssue {
  path: (string | number)[];
  message: string;
}

export interface PluginInfo {
  name: string;
  version: string;
  /** Declared inputs for these params: name -> kind ('dataset', 'model', 'any', ...). Names ending in '?' are optional. */
  inputNames(params: Record<string, unknown>): Record<string, string>;
  /** Declared output names for these params; undefined when a plugin cannot say before it runs. */
  outputNames(params: Record<string, unknown>): string[] | undefined;
  /** Validates params; [] when they are acceptable. */
  checkParams(params: Record<string, unknown>): ParamIssue[];
  /** Whether results may be reused from the cache by default. */
  cacheable: boolean;
  /** Param paths that are code: no `${...}` inside them (see PluginDefinition.codeParams). */
  codeParams?: string[];
  /** How to pass values to this plugin's code instead. */
  codeHint?: string;
  /** Top-level params that name local files or folders (confined to the project when set by an override). */
  pathParams?: readonly string[];
  /** The plugin executes commands or code from its params (PluginDefinition.runsCode). */
  runsCode?: boolean;
  /** The longest the plugin may block the event loop, in ms: its default heartbeat timeout scales with it. */
  blocksEventLoopMs?: number;
  /** Dataset outputs the plugin can pass on deferred, and inputs that take a deferred dataset (PluginDefinition.deferred). */
  deferredOutputs?(params: Record<string, unknown>): string[];
  deferredInputs?(params: Record<string, unknown>): string[];
}

export interface PluginCatalog {
  get(name: string): PluginInfo | undefined;
  names(): string[];
}
