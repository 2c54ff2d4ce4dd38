"""Regenerates test/fixtures/drift/evidently-cases.json with real Evidently.

Run through `bash deploy/provision.sh --with-evidently && npm run fixtures:drift`. Each case is a
reference and a current dataset (seeded numpy data), the DataDriftPreset options, and what
Evidently's legacy Report computed: per column the test, threshold, score, decision and small
distributions, and the dataset-level drift.
"""
import io
import json
import math
import sys

import numpy as np
import pandas as pd
import evidently
from evidently.metric_preset import DataDriftPreset
from evidently.report import Report


def enc(v):
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)


def case(name, ref, cur, **options):
    ref = pd.DataFrame(ref)
    cur = pd.DataFrame(cur)
    report = Report(metrics=[DataDriftPreset(**options)])
    report.run(reference_data=ref, current_data=cur)
    result = json.loads(report.json())
    return {
        "name": name,
        "options": options,
        "types": {c: ("num" if pd.api.types.is_numeric_dtype(ref[c]) else "cat") for c in ref.columns},
        "reference": {c: [enc(v) for v in ref[c].tolist()] for c in ref.columns},
        "current": {c: [enc(v) for v in cur[c].tolist()] for c in cur.columns},
        "expected": result["metrics"],
    }


def csv_case(name, ref_text, cur_text, **options):
    """A case read from CSV text by pandas.read_csv (its typing: NA markers, True/False, text dates)."""
    ref = pd.read_csv(io.StringIO(ref_text))
    cur = pd.read_csv(io.StringIO(cur_text))
    report = Report(metrics=[DataDriftPreset(**options)])
    report.run(reference_data=ref, current_data=cur)
    return {
        "name": name,
        "options": options,
        "csv": {"reference": ref_text, "current": cur_text},
        "pandas_dtypes": {c: str(ref[c].dtype) for c in ref.columns},
        "expected": json.loads(report.json())["metrics"],
    }


def error_case(name, ref, cur, **options):
    """A case Evidently refuses: the error it raises."""
    report = Report(metrics=[DataDriftPreset(**options)])
    try:
        report.run(reference_data=pd.DataFrame(ref), current_data=pd.DataFrame(cur))
        report.json()
    except Exception as e:  # noqa: BLE001 - the error is the expected result
        return {
            "name": name,
            "options": options,
            "types": {c: "num" for c in ref},
            "reference": {c: [enc(v) for v in pd.Series(ref[c]).tolist()] for c in ref},
            "current": {c: [enc(v) for v in pd.Series(cur[c]).tolist()] for c in cur},
            "expected": None,
            "error": f"{type(e).__name__}: {e}",
        }
    raise AssertionError(f"{name}: Evidently accepted it")


def to_csv(columns):
    return pd.DataFrame(columns).to_csv(index=False)


def main(out):
    rng = np.random.default_rng(20261125)
    r4 = lambda a: np.round(a, 4)
    cats = np.array(["red", "green", "blue", "black"])
    cases = []

    # Small numeric samples: K-S (exact p-values), with and without a shift, equal and unequal sizes.
    cases.append(case("ks-small-same", {"x": r4(rng.normal(0, 1, 200))}, {"x": r4(rng.normal(0, 1, 150))}))
    cases.append(case("ks-small-shift", {"x": r4(rng.normal(0, 1, 300))}, {"x": r4(rng.normal(0.3, 1, 300))}))
    cases.append(case("ks-unequal-997-1000", {"x": r4(rng.normal(0, 1, 997))}, {"x": r4(rng.normal(0.05, 1.1, 1000))}))
    cases.append(case("ks-ties", {"x": rng.integers(0, 30, 400).astype(float)}, {"x": rng.integers(2, 32, 350).astype(float)}))
    # Large current sample: the asymptotic kstwo path (max(n1, n2) > 10000).
    cases.append(case("ks-asymptotic", {"x": r4(rng.normal(0, 1, 800))}, {"x": r4(rng.normal(0.08, 1, 12000))}))
    # Large numeric samples: normed Wasserstein.
    cases.append(case("wasserstein-same", {"x": r4(rng.normal(5, 2, 3000))}, {"x": r4(rng.normal(5, 2, 2500))}))
    cases.append(case("wasserstein-shift", {"x": r4(rng.lognormal(0, 0.5, 3000))}, {"x": r4(rng.lognormal(0.2, 0.5, 2000))}))
    cases.append(case("wasserstein-constant-ref", {"x": np.full(1500, 3.0)}, {"x": r4(rng.normal(3, 0.001, 1500))}))
    # Few unique numeric values: chi-square / z when small, Jensen-Shannon by value when large.
    cases.append(case("num-4-values-small", {"x": rng.choice([1.0, 2.0, 3.0, 4.0], 500)}, {"x": rng.choice([1.0, 2.0, 3.0, 4.0], 400, p=[0.4, 0.2, 0.2, 0.2])}))
    cases.append(case("num-binary-small", {"x": rng.choice([0.0, 1.0], 300, p=[0.7, 0.3])}, {"x": rng.choice([0.0, 1.0], 300, p=[0.6, 0.4])}))
    cases.append(case("num-4-values-large", {"x": rng.choice([1.0, 2.0, 3.0, 4.0], 4000)}, {"x": rng.choice([1.0, 2.0, 3.0, 4.0], 3000, p=[0.3, 0.3, 0.2, 0.2])}))
    cases.append(case("num-constant-small", {"x": np.full(100, 7.0)}, {"x": np.full(80, 7.0)}))
    # Categorical.
    cases.append(case("cat-small-chisquare", {"c": rng.choice(cats, 500)}, {"c": rng.choice(cats, 450, p=[0.3, 0.3, 0.2, 0.2])}))
    cases.append(case("cat-small-binary", {"c": rng.choice(cats[:2], 200)}, {"c": rng.choice(cats[:2], 220, p=[0.65, 0.35])}))
    cases.append(case("cat-large-js", {"c": rng.choice(cats, 5000)}, {"c": rng.choice(cats, 4000, p=[0.28, 0.24, 0.24, 0.24])}))
    cases.append(case("cat-only-in-current", {"c": rng.choice(cats[:3], 300)}, {"c": rng.choice(cats, 300)}))
    cases.append(case("cat-only-in-current-large", {"c": rng.choice(cats[:3], 3000)}, {"c": rng.choice(cats, 3000)}))
    # Missing values (NaN and infinities are dropped per dataset when the column holds a NaN).
    x_ref = r4(rng.normal(0, 1, 600)); x_ref[::17] = np.nan; x_ref[5] = np.inf
    x_cur = r4(rng.normal(0.1, 1, 500)); x_cur[::11] = np.nan; x_cur[7] = -np.inf
    c_ref = rng.choice(cats, 600).astype(object); c_ref[::13] = None
    c_cur = rng.choice(cats, 500).astype(object); c_cur[::7] = None
    cases.append(case("nan-and-inf", {"x": x_ref, "c": c_ref}, {"x": x_cur, "c": c_cur}))
    xl_ref = r4(rng.normal(0, 1, 2500)); xl_ref[::9] = np.nan
    xl_cur = r4(rng.normal(0, 1.2, 2500)); xl_cur[::10] = np.nan
    cases.append(case("nan-large", {"x": xl_ref}, {"x": xl_cur}))
    # Every other test, by override, on numeric (histogram path: > 20 unique) and categorical columns.
    num_ref = r4(rng.gamma(2, 2, 2000)); num_cur = r4(rng.gamma(2.2, 2, 1800))
    few_ref = rng.integers(0, 8, 2000).astype(float); few_cur = rng.integers(0, 9, 1800).astype(float)
    cat_ref = rng.choice(cats, 2000); cat_cur = rng.choice(cats, 1800, p=[0.3, 0.3, 0.25, 0.15])
    for test in ["psi", "kl_div", "hellinger", "jensenshannon", "wasserstein", "ks", "chisquare", "z"]:
        columns = {"num": (num_ref, num_cur), "few": (few_ref, few_cur), "cat": (cat_ref, cat_cur)}
        if test in ("wasserstein", "ks"):
            columns.pop("cat")
        if test == "chisquare":
            columns = {"cat": (cat_ref, cat_cur)}
        if test == "z":
            columns = {"catbin": (rng.choice(cats[:2], 800), rng.choice(cats[:2], 700, p=[0.45, 0.55]))}
        ref = {k: v[0] for k, v in columns.items()}
        cur = {k: v[1] for k, v in columns.items()}
        cases.append(case(f"override-{test}", ref, cur, stattest=test))
    # Per-column tests and thresholds, per-type tests, and the dataset drift share.
    cases.append(
        case(
            "per-column-and-share",
            {"a": r4(rng.normal(0, 1, 900)), "b": r4(rng.normal(0, 1, 900)), "c": rng.choice(cats, 900), "d": rng.choice(cats, 900)},
            {"a": r4(rng.normal(0.2, 1, 800)), "b": r4(rng.normal(0, 1, 800)), "c": rng.choice(cats, 800, p=[0.4, 0.2, 0.2, 0.2]), "d": rng.choice(cats, 800)},
            per_column_stattest={"a": "wasserstein", "c": "psi"},
            per_column_stattest_threshold={"a": 0.05, "d": 0.5},
            num_stattest="kl_div",
            cat_stattest_threshold=0.2,
            drift_share=0.25,
        )
    )
    cases.append(
        case(
            "global-threshold",
            {"a": r4(rng.normal(0, 1, 500)), "c": rng.choice(cats, 500)},
            {"a": r4(rng.normal(0.1, 1, 500)), "c": rng.choice(cats, 500)},
            stattest_threshold=0.5,
        )
    )
    # Typing of CSV data as pandas reads it: yes/no stays text, True/False is boolean (categorical in
    # Evidently), NA/null markers are missing, ISO timestamps stay text; int64 beyond 2^53 is exact.
    def typed(n, shift):
        yn = rng.choice(["yes", "no"], n, p=[0.5 + shift, 0.5 - shift])
        tf = rng.choice(["True", "False", "true", "FALSE"], n)
        na = rng.integers(0, 40, n).astype(object)
        na[rng.random(n) < 0.1] = "NA"
        na[rng.random(n) < 0.05] = "null"
        ts = rng.choice([f"2026-11-{d:02d}T{h:02d}:00:00" for d in range(20, 24) for h in (9, 17)], n)
        big = (2**53 + rng.integers(0, 60, n) * 3 + (1 if shift else 0)).astype(np.int64)
        return to_csv({"yn": yn, "tf": tf, "na": na, "ts": ts, "big": big})
    cases.append(csv_case("csv-typing-small", typed(400, 0.0), typed(350, 0.15), per_column_stattest={"ts": "chisquare", "yn": "chisquare"}))
    cases.append(csv_case("csv-typing-large", typed(3000, 0.0), typed(2500, 0.05), per_column_stattest={"ts": "chisquare"}))
    # Infinities in a column without missing values: Evidently cannot bin it.
    inf_ref = r4(rng.normal(0, 1, 2000)); inf_ref[3] = np.inf
    cases.append(error_case("inf-without-nan", {"x": inf_ref}, {"x": r4(rng.normal(0, 1, 2000))}))
    ninf_cur = r4(rng.normal(0, 1, 300)); ninf_cur[10] = -np.inf
    cases.append(error_case("minus-inf-without-nan-small", {"x": r4(rng.normal(0, 1, 300))}, {"x": ninf_cur}))
    # Values near the float maximum: Evidently overflows (a NaN score, or numpy fails to bin); the score is
    # scale-invariant, so the expected result is Evidently's on the same values times 2^-1000.
    big_ref = rng.normal(0, 1, 2500) * 5e307
    big_cur = rng.normal(0.5, 1, 2500) * 5e307
    near = case("near-float-max", {"x": big_ref * 2.0**-1000}, {"x": big_cur * 2.0**-1000})
    near["reference"] = {"x": [enc(v) for v in big_ref.tolist()]}
    near["current"] = {"x": [enc(v) for v in big_cur.tolist()]}
    near["expected_scale"] = 2.0**-1000
    try:
        raw = case("near-float-max-raw", {"x": big_ref}, {"x": big_cur})
        near["evidently_unscaled"] = raw["expected"][1]["result"]["drift_by_columns"]["x"]["drift_score"]
    except Exception as e:  # noqa: BLE001 - numpy overflows on these values
        near["evidently_unscaled"] = f"{type(e).__name__}: {e}"
    cases.append(near)
    doc = {
        "generator": f"evidently {evidently.__version__}, numpy {np.__version__}, pandas {pd.__version__}",
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"{len(cases)} cases written to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
