"""Writes the boosted-tree fixtures of the ONNX converter's tests: small XGBoost and LightGBM models
trained by the Python packages on generated data (with missing values), their JSON dumps, held-out
rows and the library's own predictions of them.

usage: boosting_fixtures.py OUT_DIR   (npm run fixtures:boosting: the virtualenv of provision.sh --with-boosting-bench)

The rows are float32, as mlpipe's trainers pass them to the libraries.
"""
import json
import os
import sys

import lightgbm as lgb
import numpy as np
import xgboost as xgb

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
rng = np.random.default_rng(17)
n, f = 1150, 5
X = rng.normal(size=(n, f)).astype(np.float32)
X[:, 3] = np.round(X[:, 3] * 2).astype(np.float32)  # repeated values: thresholds between steps
X[rng.random(X.shape) < 0.08] = np.nan  # missing values in every column
x0, x1, x2, x3 = (np.nan_to_num(X[:, i], nan=0.5) for i in range(4))
signal = 2 * x0 + np.sin(3 * x1) + x2 * x3 + 0.3 * rng.normal(size=n)
targets = {
    "regression": (1000 + 250 * signal).astype(np.float64),
    "binary": (signal > 0.4).astype(np.int32),
    "multiclass": np.digitize(signal, [-1.0, 1.0]).astype(np.int32),
}
train, test = slice(0, 1000), slice(1000, n)
features = [f"f{i}" for i in range(f)]


def write(name, library, task, num_class, objective, model, pred, y_test):
    doc = {
        "library": library,
        "libraryVersion": xgb.__version__ if library == "xgboost" else lgb.__version__,
        "task": task,
        "numClass": num_class,
        "objective": objective,
        "features": features,
        "target": "y",
        "targetStd": float(np.std(targets["regression"][train])) if task == "regression" else 1.0,
        "model": model,
        "predictions": [[float(np.float32(v)) for v in row] for row in np.asarray(pred).reshape(len(y_test), -1)],
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))


# The held-out rows (null: missing), shared by every model's file.
with open(os.path.join(out_dir, "rows.json"), "w") as fh:
    json.dump({"features": features, "rows": [[None if np.isnan(v) else float(v) for v in row] for row in X[test]]}, fh, separators=(",", ":"))

xgb_objectives = {"regression": "reg:squarederror", "binary": "binary:logistic", "multiclass": "multi:softprob"}
lgb_objectives = {"regression": "regression", "binary": "binary", "multiclass": "multiclass"}
for task, y in targets.items():
    num_class = 3 if task == "multiclass" else 1
    extra = {"num_class": 3} if task == "multiclass" else {}
    rounds = 3 if task == "multiclass" else 8
    booster = xgb.train(
        {"objective": xgb_objectives[task], "max_depth": 3, "eta": 0.3, "seed": 1, "nthread": 1, **extra},
        xgb.DMatrix(X[train], label=y[train]),
        num_boost_round=rounds,
    )
    model = json.loads(booster.save_raw("json"))
    write(f"xgboost-{task}", "xgboost", task, num_class, xgb_objectives[task], model, booster.predict(xgb.DMatrix(X[test])), y[test])

    params = {"objective": lgb_objectives[task], "num_leaves": 8, "learning_rate": 0.3, "seed": 1, "num_threads": 1, "verbose": -1, **extra}
    if task == "binary":
        params["sigmoid"] = 1.5  # the dump's objective carries it ("binary sigmoid:1.5")
    booster = lgb.train(params, lgb.Dataset(X[train], label=y[train], params={"min_data_in_bin": 1, "verbose": -1}), num_boost_round=rounds)
    write(f"lightgbm-{task}", "lightgbm", task, num_class, lgb_objectives[task], booster.dump_model(), booster.predict(X[test]), y[test])

# LightGBM without NaN handling: missing values go where 0 goes.
booster = lgb.train(
    {"objective": "regression", "num_leaves": 6, "learning_rate": 0.3, "seed": 1, "num_threads": 1, "verbose": -1, "use_missing": False},
    lgb.Dataset(X[train], label=targets["regression"][train]),
    num_boost_round=5,
)
write("lightgbm-regression-no-missing", "lightgbm", "regression", 1, "regression", booster.dump_model(), booster.predict(X[test]), targets["regression"][test])
