"""Reference fits of additive-error ETS models by statsmodels' ETSModel, for test/unit/ets.test.ts.

    ~/.cache/mlpipe/forecast-bench-venv/bin/python test/tools/ets_fixtures.py test/fixtures/ets/statsmodels.json

Two series: the first 96 months of one industry of pipelines/data/unemployment-by-industry.csv, and
a seeded synthetic monthly series (level, trend, season, noise). For each, every model lib/ets.ts
fits (error A; trend N, A, Ad; season N, A with period 12), fitted by maximum likelihood with
estimated initial states: the smoothing parameters, the initial states (seasonal[j] is the season
the observation at index j uses), the one-step fitted values, the SSE, the log-likelihood, the
AICc, and the six forecasts after the series.
"""

import csv
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import statsmodels
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

ROOT = Path(__file__).resolve().parents[2]
PERIOD = 12
HORIZON = 6


def industry(name: str, months: int) -> list[float]:
    with open(ROOT / "pipelines" / "data" / "unemployment-by-industry.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["industry"] == name]
    rows.sort(key=lambda r: r["month"])
    return [float(r["unemployed"]) for r in rows[:months]]


def synthetic(n: int) -> list[float]:
    rng = np.random.default_rng(7)
    t = np.arange(n)
    y = 50 + 0.3 * t + 6 * np.sin(2 * np.pi * t / PERIOD) + np.cumsum(rng.normal(0, 0.8, n)) + rng.normal(0, 1.5, n)
    return [float(round(v, 3)) for v in y]


def fit(y: np.ndarray, trend: str, seasonal: str) -> dict:
    model = ETSModel(
        y,
        error="add",
        trend=None if trend == "none" else "add",
        damped_trend=trend == "damped",
        seasonal=None if seasonal == "none" else "add",
        seasonal_periods=PERIOD if seasonal == "additive" else None,
        initialization_method="estimated",
    )
    r = model.fit(disp=False, maxiter=2000)
    fitted = np.asarray(r.fittedvalues, dtype=float)
    # The observation at index j uses statsmodels' initial_seasonal[j] (its last state is fixed at 0;
    # lib/ets.ts's sum to zero instead: the same model, a constant moved to the level).
    seasonal_states = list(np.asarray(r.initial_seasonal, dtype=float)) if seasonal == "additive" else []
    return {
        "trend": trend,
        "seasonal": seasonal,
        "params": {
            "alpha": float(r.smoothing_level),
            "beta": float(r.smoothing_trend) if trend != "none" else 0.0,
            "gamma": float(r.smoothing_seasonal) if seasonal == "additive" else 0.0,
            "phi": float(r.damping_trend) if trend == "damped" else 1.0,
        },
        "initial": {
            "level": float(r.initial_level),
            "trend": float(r.initial_trend) if trend != "none" else 0.0,
            "seasonal": [float(v) for v in seasonal_states],
        },
        "fitted": [float(v) for v in fitted],
        "sse": float(np.sum((y - fitted) ** 2)),
        "logLik": float(r.llf),
        "aicc": float(r.aicc),
        "forecast": [float(v) for v in r.forecast(HORIZON)],
    }


def main() -> None:
    out = {"statsmodels": statsmodels.__version__, "period": PERIOD, "horizon": HORIZON, "series": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, y in (("Construction, 2000-01 to 2007-12", industry("Construction", 96)), ("synthetic", synthetic(96))):
            arr = np.asarray(y, dtype=float)
            models = [fit(arr, t, s) for s in ("none", "additive") for t in ("none", "additive", "damped")]
            out["series"].append({"name": name, "y": y, "models": models})
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
