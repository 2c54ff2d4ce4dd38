"""Times Evidently's legacy DataDriftPreset on the raw arrays bench/drift.ts wrote (same data)."""
import json
import os
import sys
import time

import numpy as np
import pandas as pd
from evidently.metric_preset import DataDriftPreset
from evidently.report import Report


def load(path):
    cols = {}
    for f in sorted(os.listdir(path)):
        name, ext = f.split(".", 1)
        if ext == "f64":
            cols[name] = np.fromfile(os.path.join(path, f), dtype=np.float64)
        elif ext == "i32":
            labels = np.array(json.load(open(os.path.join(path, name + ".labels.json"))), dtype=object)
            cols[name] = pd.Categorical.from_codes(np.fromfile(os.path.join(path, f), dtype=np.int32), labels).astype(object)
    return pd.DataFrame(cols)


ref = load(os.path.join(sys.argv[1], "reference"))
cur = load(os.path.join(sys.argv[1], "current"))
start = time.perf_counter()
report = Report(metrics=[DataDriftPreset()])
report.run(reference_data=ref, current_data=cur)
result = report.as_dict()
seconds = time.perf_counter() - start
table = result["metrics"][1]["result"]["drift_by_columns"]
print(json.dumps({"seconds": seconds, "drifted": result["metrics"][0]["result"]["number_of_drifted_columns"], "decisions": {k: bool(v["drift_detected"]) for k, v in table.items()}}))
