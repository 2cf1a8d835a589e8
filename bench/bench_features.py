"""Derived features at a million cases: `.venv/bin/python -m bench.bench_features [--quick]`.

1. Ten realistic derived features (BMI, mean arterial pressure, an age band, a sex-specific
   anaemia flag, …) evaluated by Casebook's evaluator (`apps.features.compute.derive`, the path
   training and prediction take: parse, order, evaluate over the raw matrix's columns) over
   1,000,000 cases × 30 raw features (1% missing), next to the same expressions written
   directly in numpy with the same missing-value rule. Both sides must give the same values;
   the target is ours/numpy ≤ 2. Also the model's whole matrix (30 raw + 10 derived columns).
2. The cost of permutation importance in a training run at 1,000,000 cases: the step
   `apps.modeling.ml.training.importance` on the 200,000 held-out cases of a fitted model
   (logistic regression; gradient boosting, which predicts more slowly, on a smaller sample).

No database: numpy arrays generated with a fixed seed, in this process. --quick: 100,000 cases.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps.features.compute import Definition, derive, feature_columns  # noqa: E402

RAW = [
    "age", "sex", "weight", "height", "sbp", "dbp", "heart_rate", "nt_pro_bnp", "creatinine",
    "egfr", "bun", "sodium", "potassium", "hemoglobin", "glucose", "hba1c", "ldl", "hdl",
    "cholesterol", "crp", "wbc", "platelets", "alt", "ast", "albumin", "bilirubin", "lactate",
    "spo2", "temperature", "troponin",
]  # fmt: skip
REPEATS = 3
TARGET_RATIO = 2.0


def raw_matrix(n: int, seed: int = 0) -> np.ndarray:
    """(n, 30) float64, C order as the feature store loads it, 1% of cells missing."""
    rng = np.random.default_rng(seed)
    columns = {
        "age": rng.normal(64, 14, n).clip(18, 100),
        "sex": rng.integers(0, 2, n).astype(float),
        "weight": rng.normal(80, 16, n).clip(35, 200),
        "height": rng.normal(170, 10, n).clip(140, 205),
        "sbp": rng.normal(132, 18, n).clip(70, 230),
        "dbp": rng.normal(78, 11, n).clip(40, 130),
        "heart_rate": rng.normal(76, 13, n).clip(35, 180),
        "nt_pro_bnp": rng.lognormal(5.5, 1.3, n),
        "creatinine": rng.lognormal(0.0, 0.35, n),
        "egfr": rng.normal(75, 22, n).clip(5, 130),
        "bun": rng.lognormal(2.8, 0.4, n),
        "crp": rng.lognormal(1.2, 1.2, n),
        "ast": rng.lognormal(3.2, 0.4, n),
        "alt": rng.lognormal(3.1, 0.5, n),
        "hemoglobin": rng.normal(13.5, 1.7, n),
    }
    values = np.empty((n, len(RAW)))
    for j, name in enumerate(RAW):
        values[:, j] = columns[name] if name in columns else rng.normal(50, 10, n)
    values[rng.random(values.shape) < 0.01] = np.nan
    return values


def _kleene_and(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.minimum(a, b)
    out[(a == 0) | (b == 0)] = 0.0
    return out


def _known(x: np.ndarray, result: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), np.nan, result)


# name, expression, the same in numpy (c: column by name), with the missing-value rule.
DERIVED: list[tuple[str, str, Callable[[dict[str, np.ndarray]], np.ndarray]]] = [
    ("bmi", "weight / (height / 100) ** 2", lambda c: c["weight"] / (c["height"] / 100) ** 2),
    (
        "mean_arterial_pressure",
        "(sbp + 2 * dbp) / 3",
        lambda c: (c["sbp"] + 2 * c["dbp"]) / 3,
    ),
    ("shock_index", "heart_rate / sbp", lambda c: c["heart_rate"] / c["sbp"]),
    ("log_bnp", "log(nt_pro_bnp)", lambda c: np.log(c["nt_pro_bnp"])),
    (
        "age_band",
        "band(age, [40, 50, 60, 70, 80])",
        lambda c: _known(c["age"], np.digitize(c["age"], [40, 50, 60, 70, 80]).astype(float)),
    ),
    (
        "ckd_elderly",
        "egfr < 60 and age >= 65",
        lambda c: _kleene_and(_known(c["egfr"], c["egfr"] < 60), _known(c["age"], c["age"] >= 65)),
    ),
    (
        "anaemia",
        "hemoglobin < where(sex == 1, 13, 12)",
        lambda c: _known(
            c["sex"],
            _known(c["hemoglobin"], c["hemoglobin"] < np.where(c["sex"] == 1, 13.0, 12.0)),
        ),
    ),
    ("bun_creatinine", "bun / creatinine", lambda c: c["bun"] / c["creatinine"]),
    ("crp_capped", "clip(crp, 0, 200)", lambda c: np.clip(c["crp"], 0, 200)),
    (
        "egfr_filled",
        "where(missing(egfr), 90, egfr)",
        lambda c: np.where(np.isnan(c["egfr"]), 90.0, c["egfr"]),
    ),
]


def _best(step: Callable[[], Any], repeats: int = REPEATS) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - started)
    return best, result


def measure_expressions(n: int) -> dict[str, Any]:
    values = raw_matrix(n)
    definitions = [Definition(name, text) for name, text, _ in DERIVED]
    # The columns as views of the matrix, as the evaluator reads them.
    columns = {name: values[:, j] for j, name in enumerate(RAW)}
    rows = []
    for name, text, by_hand in DERIVED:
        one = [Definition(name, text)]
        ours_s, ours = _best(lambda one=one: derive(one, values, RAW)[one[0].name].values)
        with np.errstate(all="ignore"):
            numpy_s, theirs = _best(lambda by_hand=by_hand: by_hand(columns))
        rows.append(
            {
                "name": name,
                "expression": text,
                "ours_s": ours_s,
                "numpy_s": numpy_s,
                "same": bool(np.allclose(ours, theirs, equal_nan=True, rtol=0, atol=0)),
            }
        )
    all_ours_s, _ = _best(lambda: derive(definitions, values, RAW))
    with np.errstate(all="ignore"):
        all_numpy_s, _ = _best(lambda: [f(columns) for _, _, f in DERIVED])
    names = [*RAW, *(d.name for d in definitions)]
    matrix_s, matrix = _best(lambda: feature_columns(names, values, RAW, definitions))

    def numpy_matrix() -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.column_stack([values, *(f(columns) for _, _, f in DERIVED)])

    numpy_matrix_s, theirs = _best(numpy_matrix)
    return {
        "n": n,
        "rows": rows,
        "all": {"ours_s": all_ours_s, "numpy_s": all_numpy_s},
        "matrix": {
            "ours_s": matrix_s,
            "numpy_s": numpy_matrix_s,
            "same": bool(np.allclose(matrix, theirs, equal_nan=True, rtol=0, atol=0)),
            "shape": matrix.shape,
        },
    }


def measure_importance(n: int) -> list[dict[str, Any]]:
    """The importance step of a run of n labeled cases: a fitted model, the most recent 20%
    held out, timed as `train_and_evaluate` calls it."""
    from apps.modeling.ml.objectives import ObjectiveSpec
    from apps.modeling.ml.training import build_pipeline, importance

    values = raw_matrix(n, seed=1)
    rng = np.random.default_rng(2)
    logit = (
        0.04 * (np.nan_to_num(values[:, 0], nan=64) - 64)
        + 0.8 * (np.log(np.nan_to_num(values[:, 7], nan=250)) - 5.5)
        + rng.normal(0, 1, n)
    )
    y = np.where(logit > 1.2, "heart_failure", "no_heart_failure").astype(object)
    classes = ["no_heart_failure", "heart_failure"]
    split = int(n * 0.8)
    objective = ObjectiveSpec(metric="roc_auc", positive_class="heart_failure")
    out = []
    for family, fit_cases in (("logistic_regression", split), ("hist_gradient_boosting", 100_000)):
        pipeline = build_pipeline({"model_family": family}, seed=0)
        fit_rows = slice(0, min(split, fit_cases))
        started = time.perf_counter()
        pipeline.fit(values[fit_rows], y[fit_rows])
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        held_out = (values[split:], y[split:])
        effect = importance(pipeline, *held_out, classes, objective, None, 0, RAW, family)
        out.append(
            {
                "family": family,
                "fit_s": fit_s,
                "fit_cases": min(split, fit_cases),
                "seconds": time.perf_counter() - started,
                "cases": effect["cases"],
                "held_out": effect["held_out"],
                "top": [row["name"] for row in effect["features"][:3]],
            }
        )
    return out


def report(expressions: dict[str, Any], effect: list[dict[str, Any]]) -> str:
    n = expressions["n"]
    lines = [
        f"Derived features: {len(DERIVED)} expressions over {n:,} cases × {len(RAW)} raw "
        "features (1% missing); best of 3",
        "",
        f"{'feature':<24} {'expression':<38} {'ours ms':>8} {'numpy ms':>9} {'ratio':>6}  same",
        "-" * 96,
    ]
    for row in expressions["rows"]:
        lines.append(
            f"{row['name']:<24} {row['expression']:<38} {row['ours_s'] * 1000:8.1f} "
            f"{row['numpy_s'] * 1000:9.1f} {row['ours_s'] / row['numpy_s']:6.2f}  "
            f"{'yes' if row['same'] else 'NO'}"
        )
    whole = expressions["all"]
    ratio = whole["ours_s"] / whole["numpy_s"]
    lines += [
        "-" * 96,
        f"{'all ten (one derive call)':<63} {whole['ours_s'] * 1000:8.1f} "
        f"{whole['numpy_s'] * 1000:9.1f} {ratio:6.2f}  target ≤ {TARGET_RATIO:g}: "
        + ("met" if ratio <= TARGET_RATIO else "MISSED"),
    ]
    matrix = expressions["matrix"]
    shape = f"{matrix['shape'][0]:,} × {matrix['shape'][1]}"
    lines.append(
        f"{'model matrix ' + shape + ' (raw + derived)':<63} {matrix['ours_s'] * 1000:8.1f} "
        f"{matrix['numpy_s'] * 1000:9.1f} {matrix['ours_s'] / matrix['numpy_s']:6.2f}  "
        f"{'yes' if matrix['same'] else 'NO'}"
    )
    lines += ["", f"Permutation importance in a run of {n:,} labeled cases (5 repeats, seeded):"]
    for row in effect:
        lines.append(
            f"  {row['family']:<24} {row['seconds']:5.2f} s on {row['cases']:,} of "
            f"{row['held_out']:,} held-out cases (fit on {row['fit_cases']:,}: "
            f"{row['fit_s']:.1f} s); largest: {', '.join(row['top'])}"
        )
    return "\n".join(lines)


def run(quick: bool, workdir: Path | None = None) -> str:
    """The whole benchmark; returns the text to print. `workdir` is unused (no files)."""
    n = 100_000 if quick else 1_000_000
    print(f"[{time.strftime('%H:%M:%S')}] derived features over {n:,} cases", file=sys.stderr)
    expressions = measure_expressions(n)
    print(f"[{time.strftime('%H:%M:%S')}] permutation importance at {n:,}", file=sys.stderr)
    effect = measure_importance(n)
    return report(expressions, effect)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 cases")
    args = parser.parse_args(argv)
    print(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
