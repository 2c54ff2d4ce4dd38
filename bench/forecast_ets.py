"""ETS forecasts for bench/forecast.ts: statsmodels' ETSModel fitted on each window's full history.

Reads JSON from stdin: {"season": m, "horizon": H, "windows": [{"history": [...]}, ...]} (the
series' values before the window's origin, target units); writes {"forecasts": [[...H values], ...],
"seconds": s, "statsmodels": version} to stdout. Per window, additive-error ETS with additive
seasonality, with no trend and with a damped additive trend: the one with the lower AICc forecasts
(the usual automatic ETS choice, restricted to additive models so every series fits).
"""

import json
import sys
import time
import warnings

import numpy as np
import statsmodels
from statsmodels.tsa.exponential_smoothing.ets import ETSModel


def forecast(history: np.ndarray, season: int, horizon: int) -> list[float]:
    best = None
    for trend, damped in ((None, False), ("add", True)):
        try:
            model = ETSModel(
                history,
                error="add",
                trend=trend,
                damped_trend=damped,
                seasonal="add" if len(history) >= 2 * season else None,
                seasonal_periods=season if len(history) >= 2 * season else None,
                initialization_method="estimated",
            )
            fit = model.fit(disp=False, maxiter=200)
        except Exception:  # noqa: BLE001 - a model that does not fit is skipped
            continue
        if best is None or fit.aicc < best.aicc:
            best = fit
    if best is None:
        return [float(history[-1])] * horizon
    return [float(v) for v in best.forecast(horizon)]


def main() -> None:
    job = json.load(sys.stdin)
    season = int(job["season"])
    horizon = int(job["horizon"])
    started = time.perf_counter()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for w in job["windows"]:
            out.append(forecast(np.asarray(w["history"], dtype=float), season, horizon))
    json.dump({"forecasts": out, "seconds": time.perf_counter() - started, "statsmodels": statsmodels.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
