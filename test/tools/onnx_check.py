"""Checks an ONNX file with the official checker (full check, with shape inference) and, given
records, predicts them with onnx's reference evaluator (a second, independent runtime).

usage: onnx_check.py MODEL.onnx [RECORDS.json]   -> JSON on stdout
RECORDS.json is a list of records (one value per graph input each), or {"tensors": {name: {"dims": [...],
"data": [...]}}} for a model whose inputs are tensors (an exported forecaster).
"""
import json
import sys

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
out = {
    "onnx_version": onnx.__version__,
    "ir_version": model.ir_version,
    "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
    "inputs": [i.name for i in model.graph.input],
    "outputs": [o.name for o in model.graph.output],
    "op_types": sorted({n.op_type for n in model.graph.node}),
    "metadata": {p.key: p.value for p in model.metadata_props},
}
NUMPY = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.INT64: np.int64}
if len(sys.argv) > 2 and isinstance(json.load(open(sys.argv[2])), dict):
    tensors = json.load(open(sys.argv[2]))["tensors"]
    feeds = {}
    for i in model.graph.input:
        t = tensors[i.name]
        feeds[i.name] = np.array(t["data"], dtype=NUMPY[i.type.tensor_type.elem_type]).reshape(t["dims"])
    (result,) = ReferenceEvaluator(model).run(None, feeds)
    out["predictions"] = np.asarray(result, dtype=np.float64).reshape(-1).tolist()
elif len(sys.argv) > 2:
    records = json.load(open(sys.argv[2]))
    feeds = {}
    for i in model.graph.input:
        elem = i.type.tensor_type.elem_type
        values = [r.get(i.name) for r in records]
        if elem == onnx.TensorProto.STRING:
            feeds[i.name] = np.array(["" if v is None else str(v) for v in values], dtype=object).reshape(-1, 1)
        else:
            feeds[i.name] = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64).reshape(-1, 1)
    (result,) = ReferenceEvaluator(model).run(None, feeds)
    out["predictions"] = np.asarray(result, dtype=np.float64).reshape(len(records), -1).tolist()
json.dump(out, sys.stdout)
