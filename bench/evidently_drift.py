"""Evidently's legacy DataDriftPreset on the data bench/drift.ts wrote (same data, same run).

    python evidently_drift.py DIR ROWS            raw arrays DIR/{reference,current}/*.f64|*.i32 (in memory)
    python evidently_drift.py --parquet DIR       writes DIR/{reference,current}.parquet from the raw arrays
    python evidently_drift.py --files REF CUR OUT pandas reads REF and CUR (Parquet or CSV), the report goes to OUT
"""
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


def read(path):
    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


def summary(result, seconds):
    table = result["metrics"][1]["result"]["drift_by_columns"]
    return {
        "seconds": seconds,
        "drifted": result["metrics"][0]["result"]["number_of_drifted_columns"],
        "decisions": {k: bool(v["drift_detected"]) for k, v in table.items()},
    }


if sys.argv[1] == "--parquet":
    for side in ("reference", "current"):
        load(os.path.join(sys.argv[2], side)).to_parquet(os.path.join(sys.argv[2], side + ".parquet"), index=False)
elif sys.argv[1] == "--files":
    start = time.perf_counter()
    ref = read(sys.argv[2])
    cur = read(sys.argv[3])
    loaded = time.perf_counter()
    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=ref, current_data=cur)
    with open(sys.argv[4], "w") as f:
        f.write(report.json())
    print(json.dumps({"loadSeconds": loaded - start, "seconds": time.perf_counter() - start}))
else:
    ref = load(os.path.join(sys.argv[1], "reference"))
    cur = load(os.path.join(sys.argv[1], "current"))
    start = time.perf_counter()
    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=ref, current_data=cur)
    print(json.dumps(summary(report.as_dict(), time.perf_counter() - start)))
