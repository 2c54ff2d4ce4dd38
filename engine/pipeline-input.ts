/**
 * The pipeline workflow's input schema (zod), which `compilePipeline` checks every input against,
 * and the types inferred from it (engine/contracts.ts re-exports them). Not imported by workflow
 * code: a workflow evaluates its modules at each run's start, and zod has no place there.
 */
import { z } from 'zod';
import { STEP_ID } from './contracts.js';
import { LIMITS } from './limits.js';

/** A file of the client's project that a submitted pipeline reads, by digest: the client put it in the artifact store. */
export const submittedFileSchema = z
  .object({
    sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex characters'),
    size: z.number().int().min(0),
  })
  .strict();

/** The `submitted` field of the pipeline input (bounds: engine/limits.ts `checkSubmitted`). */
export const submittedPipelineSchema = z
  .object({
    /** Where the spec was on the client (pipelines/x.yaml): for messages, and to recognise the worker's own copy. */
    file: z.string().min(1).max(LIMITS.pipelineRefChars),
    /** The spec's YAML text. */
    text: z.string().max(LIMITS.fileBytes),
    /** The config files the compile read: path relative to conf/ -> YAML text. */
    conf: z.record(z.string().max(LIMITS.pipelineRefChars), z.string().max(LIMITS.fileBytes)).optional(),
    /** Local files that steps' path params name (the value as written, e.g. pipelines/data/x.csv) -> their digest in the store. */
    files: z.record(z.string().max(1024), submittedFileSchema).optional(),
    /** The plugins the client compiled with: name -> version. The worker must have the same. */
    plugins: z.record(z.string().max(200), z.string().max(100)).optional(),
  })
  .strict();

/**
 * The pipeline workflow's input: small JSON, written by hand in `temporal workflow start --input`,
 * and untrusted (whoever may start a workflow on the queue writes it), so bounded everywhere.
 * `compilePipeline` checks it against this schema before it uses any of it.
 */
export const pipelineInputSchema = z
  .object({
    /** A pipeline name (pipelines/<name>.yaml on the worker) or a path to a YAML file; with `submitted`, the name it was started as. */
    pipeline: z.string().min(1).max(LIMITS.pipelineRefChars),
    /** Hydra-style overrides: model=wide, training.lr=0.01, +new.key=1, params.target=x. */
    overrides: z.array(z.string().max(LIMITS.overrideChars)).max(LIMITS.overrides).optional(),
    /** Free-form labels recorded with the run. */
    labels: z.record(z.string().max(LIMITS.labelKeyChars), z.string().max(LIMITS.labelValueChars)).optional(),
    /** Run-level cache switch (default true). */
    cache: z.boolean().optional(),
    /** Overrides the pipeline's maxParallel. */
    maxParallel: z.number().int().min(1).max(LIMITS.maxParallel).optional(),
    /** Run only this step and the steps it needs (an HPO trial stops at its metric step). */
    until: z.string().regex(STEP_ID, 'a step id').optional(),
    /** Set for an HPO trial: the trial registers no model. */
    trial: z
      .object({
        hpo: z.string().min(1),
        index: z.number().int().min(0),
        /** The search's MLflow run, which the trial's run nests under. */
        parentMlflowRunId: z.string().optional(),
        /** @deprecated The name of `parentMlflowRunId` in trials started before it; still read. */
        parentRunId: z.string().optional(),
        /** Extra params for named steps (the search's median stopping bar for the training step). */
        stepParams: z.record(z.string().regex(STEP_ID), z.record(z.string(), z.unknown())).optional(),
      })
      .strict()
      .optional(),
    /**
     * A pipeline compiled and sent by the client (`mlpipe run`): the spec's text and the config files
     * it composed, so a worker needs the plugins, not the project's files. Untrusted, like the rest of
     * the input: the worker compiles it with its own plugins (engine/submitted.ts says what it refuses).
     */
    submitted: submittedPipelineSchema.optional(),
  })
  .strict();

export type PipelineInput = z.infer<typeof pipelineInputSchema>;
export type SubmittedPipeline = z.infer<typeof submittedPipelineSchema>;
