"""The Python side of bench/boosting.ts: trains with the xgboost / lightgbm packages (the same library
versions as mlpipe's), the same params, the same data (Parquet files), evaluating train and validation
every round as train.xgboost / train.lightgbm do, and prints one JSON line: load and train seconds,
the validation metric, and the process's peak resident memory.

    python bench/boosting.py <xgboost|lightgbm> <train.parquet> <validation.parquet> '<params json>'
"""
import json
import resource
import sys
import time

import numpy as np
import pandas as pd

lib, train_path, valid_path, spec = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
target, params, rounds = spec["target"], spec["params"], spec["rounds"]

t0 = time.perf_counter()
train = pd.read_parquet(train_path)
valid = pd.read_parquet(valid_path)
# Every column but the target, as mlpipe takes them (one-hot columns arrive as decimals: objects in pandas).
features = [c for c in train.columns if c != target]
x = train[features].astype(np.float32).to_numpy()
y = train[target].to_numpy(dtype=np.float32)
vx = valid[features].astype(np.float32).to_numpy()
vy = valid[target].to_numpy(dtype=np.float32)
load_seconds = time.perf_counter() - t0

t1 = time.perf_counter()
if lib == "xgboost":
    import xgboost as xgb

    p = dict(params)
    metrics = p.pop("eval_metric").split(",")
    dtrain = xgb.DMatrix(x, label=y, missing=np.nan, nthread=int(p["nthread"]))
    dvalid = xgb.DMatrix(vx, label=vy, missing=np.nan, nthread=int(p["nthread"]))
    history = {}
    booster = xgb.train(
        {**p, "eval_metric": metrics},
        dtrain,
        num_boost_round=rounds,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=history,
        verbose_eval=False,
    )
    booster.save_raw("json")
    booster.save_raw("ubj")
    val = history["valid"][metrics[0]][-1]
    version = xgb.__version__
else:
    import lightgbm as lgb

    dtrain = lgb.Dataset(x, label=y, params=params, free_raw_data=False)
    dvalid = lgb.Dataset(vx, label=vy, reference=dtrain, params=params, free_raw_data=False)
    history = {}
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=rounds,
        valid_sets=[dtrain, dvalid],
        valid_names=["train", "valid"],
        callbacks=[lgb.record_evaluation(history)],
    )
    booster.dump_model()
    booster.model_to_string()
    metric = params["metric"].split(",")[0]
    val = history["valid"][metric][-1]
    version = lgb.__version__
train_seconds = time.perf_counter() - t1

print(
    json.dumps(
        {
            "impl": f"python {lib} {version}",
            "loadSeconds": load_seconds,
            "trainSeconds": train_seconds,
            "valMetric": val,
            "maxRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rows": int(x.shape[0]),
            "features": len(features),
        }
    )
)
