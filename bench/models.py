"""The Python side of npm run bench:models: on mlpipe's own transformed train / validation / test
rows (Parquet files written by the pipeline's split and transform steps), scikit-learn's
HistGradientBoostingRegressor tuned on the validation split, and the Python xgboost and lightgbm
packages with the params mlpipe's trainers use (early stopping on the validation split).

usage: models.py CONFIG.json   -> JSON on stdout (the virtualenv of provision.sh --with-boosting-bench)
CONFIG: {"train", "validation", "test": parquet paths, "target", "features", "seed",
         "xgboost": {params, "rounds", "early_stopping"}, "lightgbm": {...}, "threads"}
"""
import itertools
import json
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb
from sklearn.ensemble import HistGradientBoostingRegressor

cfg = json.load(open(sys.argv[1]))
features, target, seed = cfg["features"], cfg["target"], cfg["seed"]


def load(name):
    df = pd.read_parquet(cfg[name])
    return df[features].to_numpy(dtype=np.float32), df[target].to_numpy(dtype=np.float64)


(xt, yt), (xv, yv), (xs, ys) = load("train"), load("validation"), load("test")
rmse = lambda y, p: float(np.sqrt(np.mean((np.asarray(p, dtype=np.float64) - y) ** 2)))
out = {"versions": {"xgboost": xgb.__version__, "lightgbm": lgb.__version__, "scikit-learn": sklearn.__version__}}

# HistGradientBoosting: grid over the validation split (the test split stays out of the choice).
grid = {
    "learning_rate": [0.05, 0.1],
    "max_leaf_nodes": [31, 63],
    "min_samples_leaf": [20],
    "l2_regularization": [0.0, 1.0],
}
best = None
start = time.time()
for values in itertools.product(*grid.values()):
    params = dict(zip(grid.keys(), values))
    m = HistGradientBoostingRegressor(max_iter=cfg.get("hgb_max_iter", 1000), early_stopping=False, random_state=seed, **params)
    # Rounds chosen on validation too: staged predictions, every 50 iterations.
    m.fit(xt, yt)
    for i, pv in enumerate(m.staged_predict(xv)):
        if (i + 1) % min(50, cfg.get("hgb_max_iter", 1000)):
            continue
        score = rmse(yv, pv)
        if best is None or score < best[0]:
            best = (score, {**params, "max_iter": i + 1})
hgb = HistGradientBoostingRegressor(early_stopping=False, random_state=seed, **best[1]).fit(xt, yt)
out["hgb"] = {"validation_rmse": best[0], "test_rmse": rmse(ys, hgb.predict(xs)), "params": best[1], "seconds": time.time() - start}

x = cfg["xgboost"]
start = time.time()
booster = xgb.train(
    x["params"],
    xgb.DMatrix(xt, label=yt),
    num_boost_round=x["rounds"],
    evals=[(xgb.DMatrix(xv, label=yv), "valid")],
    early_stopping_rounds=x["early_stopping"],
    verbose_eval=False,
)
rng = (0, booster.best_iteration + 1)
out["xgboost"] = {
    "validation_rmse": rmse(yv, booster.predict(xgb.DMatrix(xv), iteration_range=rng)),
    "test_rmse": rmse(ys, booster.predict(xgb.DMatrix(xs), iteration_range=rng)),
    "rounds": booster.best_iteration + 1,
    "seconds": time.time() - start,
}

g = cfg["lightgbm"]
start = time.time()
booster = lgb.train(
    g["params"],
    lgb.Dataset(xt, label=yt),
    num_boost_round=g["rounds"],
    valid_sets=[lgb.Dataset(xv, label=yv)],
    callbacks=[lgb.early_stopping(g["early_stopping"], verbose=False)],
)
out["lightgbm"] = {
    "validation_rmse": rmse(yv, booster.predict(xv, num_iteration=booster.best_iteration)),
    "test_rmse": rmse(ys, booster.predict(xs, num_iteration=booster.best_iteration)),
    "rounds": booster.best_iteration,
    "seconds": time.time() - start,
}
json.dump(out, sys.stdout)
