/**
 * What an exported model promises its clients, recorded as `mlpipe.contract` metadata in the ONNX file:
 * the builder (lib/onnx-graph.ts) writes it, the runtime and the prediction server read it.
 */
import { PipelineError } from '../../engine/errors.js';
import type { ModelProto } from './proto.js';

export interface OnnxInput {
  name: string;
  type: 'number' | 'string';
  /** null is accepted (it is imputed); otherwise a value is required. */
  nullable: boolean;
}

/** What a served model promises: recorded as `mlpipe.*` metadata in the file. */
export interface OnnxContract {
  inputs: OnnxInput[];
  task: 'regression' | 'classification';
  target: string;
  /** Output tensor: `prediction` [N,1] (regression) or `probabilities` [N,C] / [N,1] (binary: P(classes[1])). */
  output: string;
  classes?: (string | number)[];
}

/** The contract recorded in an exported model's metadata. */
export function readContract(model: Pick<ModelProto, 'metadata_props'>): OnnxContract {
  const entry = model.metadata_props?.find((p) => p.key === 'mlpipe.contract');
  if (!entry)
    throw new PipelineError(
      'DATA_INVALID',
      'This ONNX file was not exported by mlpipe (no mlpipe.contract metadata), so its input records are unknown.',
    );
  return JSON.parse(entry.value) as OnnxContract;
}
