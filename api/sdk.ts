/**
 * `mlpipe/sdk`: what a plugin is written against. `z` is the zod mlpipe itself uses, so a plugin's
 * params schema is understood by the compiler (one zod in the project).
 */
export { z } from 'zod';
export { definePlugin } from '../plugins/sdk.js';
export type {
  AnyPlugin,
  ArtifactRef,
  ArtifactStore,
  Checkpoint,
  Checkpoints,
  InputsOf,
  InputValue,
  IoKind,
  IoMap,
  Logger,
  OutputsOf,
  OutputValue,
  PluginDefinition,
  ProgressReport,
  ServiceRef,
  StepContext,
  StepHeartbeatDetails,
  StepProgress,
} from '../plugins/sdk.js';
export { isArtifactRef } from '../engine/types.js';
export { stepProgressOf } from '../engine/progress.js';
export { PipelineError, type ErrorCode, type PipelineErrorOptions } from '../engine/errors.js';
