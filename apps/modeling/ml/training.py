"""Build, select, train and evaluate a tabular classifier on a label snapshot. No Django here.

A run is judged the way it will be used: the held-out set is the most recent cases (when cases
are dated), the decision threshold and the model family are chosen on out-of-fold predictions
of the training part only, and every figure is computed under the project's objective.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import calibration_curve
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from apps.modeling.ml.cancellation import Cancellation, working_in
from apps.modeling.ml.hyperparameters import (
    HYPERPARAMETER_RANGES,
    HyperparameterError,
    hyperparameter_value,
)
from apps.modeling.ml.objectives import (
    ObjectiveSpec,
    better,
    class_indices,
    decide,
    objective_scorer,
    objective_undefined,
    objective_value,
    positive_index,
    threshold_choose,
)

MODEL_FAMILIES = ("logistic_regression", "hist_gradient_boosting", "random_forest")
AUTO_FAMILY = "auto"
# Unweighted classes by default: on imbalanced data the model then shows the majority-class
# failure that error analysis is there to find, instead of hiding it behind a default.
DEFAULT_PARAMS: dict[str, Any] = {
    "model_family": "logistic_regression",
    "class_weight": None,
    "test_fraction": 0.2,
    "cv_folds": 5,
    # Cross-validation (threshold and model choice) runs on at most this many training cases:
    # on a million cases it would otherwise cost five more fits for little more certainty.
    "cv_max_cases": 50_000,
}
MIN_LABELED_CASES = 10
# Fewer cases than this in a month: the month's objective is not computed.
MIN_SLICE_CASES = 20
CURVE_POINTS = 200
CALIBRATION_BINS = 10
# Permutation importance is measured on a seeded sample of at most this many held-out cases
# (for 30 features; fewer for more), each feature shuffled IMPORTANCE_REPEATS times: whatever
# the run's size, it costs features × repeats predictions of a few thousand cases, about a
# second for logistic regression. Families that predict more slowly get a smaller sample.
# Fixed by family, not measured: the same run always draws the same sample.
IMPORTANCE_CASES = {
    "logistic_regression": 5_000,
    "hist_gradient_boosting": 2_000,
    "random_forest": 1_000,
}
IMPORTANCE_MIN_CASES = 300
IMPORTANCE_REPEATS = 5
# Pipeline steps that transform each column on its own (see importance).
_COLUMNWISE = (SimpleImputer, StandardScaler)

Progress = Callable[[int, str], None]


class TrainingError(Exception):
    """The snapshot cannot train a model; the message says why in the user's terms."""


@dataclass
class TrainingResult:
    pipeline: Pipeline
    classes: list[str]
    metrics: dict[str, Any]
    evaluation: dict[str, Any]
    threshold: float | None
    model_family: str
    train_index: np.ndarray
    test_index: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def build_pipeline(params: dict[str, Any], seed: int, family: str | None = None) -> Pipeline:
    family = family or params.get("model_family", DEFAULT_PARAMS["model_family"])
    class_weight = params.get("class_weight")
    if class_weight not in (None, "balanced"):
        raise TrainingError(f"class_weight must be none or 'balanced', not {class_weight!r}")
    hyper = params.get("hyperparameters") or {}

    def value(name: str, cast: type) -> Any:
        default = HYPERPARAMETER_RANGES[family][name].default
        raw = hyper.get(name, params.get(name, cast(default)))
        # Checked again here, not only when the configuration is saved: a configuration kept
        # from before the bounds, or a run's own override, must not hold the worker either.
        try:
            return cast(hyperparameter_value(family, name, raw))
        except HyperparameterError as error:
            raise TrainingError(str(error)) from error

    if family == "logistic_regression":
        model = LogisticRegression(
            C=value("C", float),
            max_iter=value("max_iter", int),
            class_weight=class_weight,
            random_state=seed,
        )
        steps = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", model),
        ]
    elif family == "hist_gradient_boosting":
        # Handles missing values natively: no imputer, so missingness itself can carry signal.
        model = HistGradientBoostingClassifier(
            max_iter=value("max_iter", int),
            learning_rate=value("learning_rate", float),
            max_leaf_nodes=value("max_leaf_nodes", int),
            class_weight=class_weight,
            random_state=seed,
        )
        steps = [("model", model)]
    elif family == "random_forest":
        model = RandomForestClassifier(
            n_estimators=value("n_estimators", int),
            min_samples_leaf=value("min_samples_leaf", int),
            class_weight=class_weight,
            random_state=seed,
            n_jobs=1,
        )
        steps = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("model", model),
        ]
    else:
        raise TrainingError(
            f"Unknown model family {family!r}; choose one of "
            f"{', '.join((*MODEL_FAMILIES, AUTO_FAMILY))}."
        )
    return Pipeline(steps)


class FoldMedianImputer(TransformerMixin, BaseEstimator):
    """Median imputation exactly as `SimpleImputer(strategy="median", keep_empty_features=True)`
    does it (the same statistics and output, tested), each column's median taken by numpy's
    partition instead of the masked-array median scikit-learn uses: 0.02 s instead of 0.17 s on
    40,000 cases × 30, and seconds less per fold at a million. Only for the models of
    cross-validation folds, which are never saved: a saved model keeps scikit-learn's own
    imputer, so the final fit stays the pipeline a data scientist would write."""

    def fit(self, X: np.ndarray, y: Any = None) -> FoldMedianImputer:
        X = np.asarray(X, dtype=np.float64)
        statistics = np.zeros(X.shape[1])  # a column with no value at all is filled with 0
        for j in range(X.shape[1]):
            column = X[:, j]
            present = column[~np.isnan(column)]
            if len(present):
                statistics[j] = np.median(present)
        self.statistics_ = statistics
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.array(X, dtype=np.float64)  # a copy: the caller's matrix is never written
        missing = np.isnan(X)
        if missing.any():
            X[missing] = np.broadcast_to(self.statistics_, X.shape)[missing]
        return X


def fold_pipeline(params: dict[str, Any], seed: int, family: str) -> Pipeline:
    """`build_pipeline` for a cross-validation fold: the same model, its median imputer swapped
    for the faster one that computes the same numbers."""
    pipeline = build_pipeline(params, seed, family)
    steps = []
    for name, step in pipeline.steps:
        if (
            isinstance(step, SimpleImputer)
            and step.strategy == "median"
            and step.keep_empty_features
            and not step.add_indicator
            and isinstance(step.missing_values, float)
            and np.isnan(step.missing_values)
        ):
            step = FoldMedianImputer()
        steps.append((name, step))
    return Pipeline(steps)


def split_holdout(
    occurred_at: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Train on older cases and test on the most recent when cases are dated.

    A random split would let the model peek at the period it is judged on and hide staleness;
    undated cases fall back to a stratified random split.
    """
    n = len(y)
    index = np.arange(n)
    dated = ~np.isnat(occurred_at)
    n_test = max(1, round(n * test_fraction))
    if dated.mean() >= 0.9:
        # Undated cases sort first, i.e. into training. The cut is what a stable sort by date
        # would give (ties in case order), found by a partition: linear, not n log n.
        when = np.where(dated, occurred_at, np.datetime64("1900-01-01")).view(np.int64)
        n_train = n - n_test
        if n_train == 0:
            return index[:0], index, "time"
        cut = np.partition(when, n_train - 1)[n_train - 1]  # the newest date in training
        older = when < cut
        ties = np.flatnonzero(when == cut)
        train = np.zeros(n, dtype=bool)
        train[older] = True
        train[ties[: n_train - int(older.sum())]] = True
        return np.flatnonzero(train), np.flatnonzero(~train), "time"
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 else None
    train, test = train_test_split(index, test_size=n_test, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test), "random"


def window_select(occurred_at: np.ndarray, months: int | None) -> np.ndarray:
    """Positions of the cases inside a training window of the last `months` months, counted
    back from the newest dated case (not from today, so that a run can be repeated later).
    Undated cases fall outside any window."""
    if not months:
        return np.arange(len(occurred_at))
    dated = ~np.isnat(occurred_at)
    if not dated.any():
        raise TrainingError("A training window needs dated cases (occurred_at); none has a date.")
    newest = occurred_at[dated].max().astype("datetime64[M]")
    start = (newest - np.timedelta64(int(months) - 1, "M")).astype("datetime64[us]")
    return np.flatnonzero(dated & (occurred_at >= start))


def predict_proba_aligned(pipeline: Pipeline, X: np.ndarray, classes: list[str]) -> np.ndarray:
    """Probabilities with one column per project class, zero for classes the model never saw."""
    raw = pipeline.predict_proba(X)
    aligned = np.zeros((X.shape[0], len(classes)))
    for j, cls in enumerate(pipeline.classes_):
        aligned[:, classes.index(cls)] = raw[:, j]
    return aligned


def _proba_by_steps(pipeline: Any, X: np.ndarray, classes: list[str]) -> np.ndarray:
    """`predict_proba_aligned` through the pipeline's steps one by one (or of a bare model):
    the same numbers, without the Pipeline's own checks, which cost more than a small batch's
    prediction."""
    data = X
    model = pipeline
    if isinstance(pipeline, Pipeline):
        for _, step in pipeline.steps[:-1]:
            data = step.transform(data)
        model = pipeline.steps[-1][1]
    raw = model.predict_proba(data)
    aligned = np.zeros((X.shape[0], len(classes)))
    for j, cls in enumerate(model.classes_):
        aligned[:, classes.index(cls)] = raw[:, j]
    return aligned


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    """At most CURVE_POINTS points of a curve, ends kept, as plain lists for JSON."""
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int))
    return [np.round(a[keep].astype(float), 5).tolist() for a in arrays]


def curves(y_true: np.ndarray, proba: np.ndarray, classes: list[str], positive: int) -> dict:
    """ROC, precision-recall and calibration of the positive class, for the run's charts."""
    is_pos = np.asarray(y_true) == classes[positive]
    scores = proba[:, positive]
    if is_pos.all() or not is_pos.any():
        return {}
    fpr, tpr, _ = roc_curve(is_pos, scores)
    precision, recall, _ = precision_recall_curve(is_pos, scores)
    prob_true, prob_pred = calibration_curve(is_pos, scores, n_bins=CALIBRATION_BINS)
    counts, _ = np.histogram(scores, bins=CALIBRATION_BINS, range=(0, 1))
    roc_x, roc_y = _thin(fpr, tpr)
    pr_x, pr_y = _thin(recall[::-1], precision[::-1])
    return {
        "class": classes[positive],
        "roc": {"fpr": roc_x, "tpr": roc_y},
        "pr": {"recall": pr_x, "precision": pr_y, "base_rate": float(is_pos.mean())},
        "calibration": {
            "predicted": np.round(prob_pred, 5).tolist(),
            "observed": np.round(prob_true, 5).tolist(),
            "bin_counts": counts.tolist(),
        },
    }


def evaluate(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    objective: ObjectiveSpec | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    objective = objective or ObjectiveSpec()
    positive = positive_index(objective, classes)
    # Integer class positions rather than class names: scikit-learn's metrics sort and compare
    # labels, which on a few hundred thousand Python strings took seconds.
    y_index = class_indices(y_true, classes)
    decided = decide(proba, threshold, positive)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_index, decided, labels=labels, zero_division=0
    )
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_index, decided)),
        "balanced_accuracy": float(balanced_accuracy_score(y_index, decided)),
        "macro_f1": float(
            f1_score(y_index, decided, labels=labels, average="macro", zero_division=0)
        ),
        "roc_auc": None,
        "pr_auc": None,
        "objective": objective_value(objective, y_true, proba, classes, threshold),
        "per_class": {
            cls: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted_share": float(np.mean(decided == i)),
            }
            for i, cls in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_index, decided, labels=labels).tolist(),
    }
    if len(np.unique(y_index)) == len(classes):
        if len(classes) == 2:
            metrics["roc_auc"] = float(roc_auc_score(y_index == 1, proba[:, 1]))
        else:
            metrics["roc_auc"] = float(
                roc_auc_score(y_index, proba, labels=labels, multi_class="ovr")
            )
    is_pos = y_index == positive
    if is_pos.any() and not is_pos.all():
        metrics["pr_auc"] = float(average_precision_score(is_pos, proba[:, positive]))
    return metrics


def month_slices(
    occurred_at: np.ndarray,
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    objective: ObjectiveSpec,
    threshold: float | None,
    source: str,
) -> list[dict[str, Any]]:
    """The objective per calendar month of the cases' dates (undated cases are left out).
    A month without a value (None, never NaN: the rows are stored as JSON and compared when a
    run is reproduced) says why in `undefined`."""
    dated = ~np.isnat(occurred_at)
    if not dated.any():
        return []
    months = occurred_at[dated].astype("datetime64[M]")
    rows = []
    positive = classes[positive_index(objective, classes)]
    for month in np.unique(months):
        here = np.flatnonzero(dated)[months == month]
        # A month with a handful of cases says nothing: counted, not scored.
        if len(here) < MIN_SLICE_CASES:
            undefined: str | None = (
                f"not scored: only {len(here)} cases, fewer than {MIN_SLICE_CASES}"
            )
        else:
            why = objective_undefined(objective, y_true[here], classes)
            undefined = f"not defined: {why} that month" if why else None
        rows.append(
            {
                "period": str(month),
                "n": len(here),
                "positives": int(np.sum(y_true[here] == positive)),
                "objective": None
                if undefined
                else objective_value(objective, y_true[here], proba[here], classes, threshold),
                "undefined": undefined,
                "source": source,
            }
        )
    return rows


def importance(
    pipeline: Pipeline,
    X: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    objective: ObjectiveSpec,
    threshold: float | None,
    seed: int,
    feature_names: list[str] | None = None,
    family: str = "logistic_regression",
) -> dict[str, Any]:
    """Permutation importance on (a seeded sample of) the held-out cases: how much the
    objective gets worse when one feature's values are shuffled among the cases (scikit-learn's
    `permutation_importance`, scored by the project's objective under the version's threshold).

    Positive: the model relies on the feature; about zero: it does not; negative: shuffling it
    helped, i.e. noise. Held-out cases, so that a feature the model merely memorized does not
    look useful."""
    n, width = X.shape
    if n < MIN_SLICE_CASES or width == 0:
        return {}
    names = list(feature_names or [f"feature {j + 1}" for j in range(width)])
    rng = np.random.default_rng(seed)
    cap = IMPORTANCE_CASES.get(family, min(IMPORTANCE_CASES.values()))
    wanted = max(IMPORTANCE_MIN_CASES, cap * 30 // max(30, width))
    take = np.arange(n)
    if n > wanted:
        take = np.sort(rng.choice(n, wanted, replace=False))
    started = time.perf_counter()
    X_sample, y_sample = X[take], y[take]
    metric, spec = objective.describe(), objective
    scorer = objective_scorer(objective, y_sample, classes, threshold)
    with threadpool_limits(limits=1):
        baseline = scorer(_proba_by_steps(pipeline, X_sample, classes))
    if baseline is None:
        # Undefined on these cases (one class only, say): fall back to balanced accuracy.
        spec = ObjectiveSpec(metric="balanced_accuracy")
        metric = spec.describe()
        if len(set(y_sample.tolist())) < 2:
            return {}
        scorer = objective_scorer(spec, y_sample, classes)
    sign = 1.0 if spec.greater_is_better else -1.0
    estimator: Any = pipeline
    shuffled = X_sample
    if all(isinstance(step, _COLUMNWISE) for _, step in pipeline.steps[:-1]):
        # Imputing a column's median and scaling it each work on one column alone, so that
        # shuffling a column before them is shuffling it after them: the sample goes through
        # them once, and only the model predicts on every call. The same shuffles (the same
        # seed), the same scores.
        for _, step in pipeline.steps[:-1]:
            shuffled = step.transform(shuffled)
        estimator = pipeline.steps[-1][1]

    def score(estimator: Any, X_: np.ndarray, y_: np.ndarray) -> float:
        # The labels are the sample's, read once by the scorer (permutation_importance passes
        # the same y on every call).
        value = scorer(_proba_by_steps(estimator, X_, classes))
        return sign * (value if value is not None else 0.0)

    # One thread: on a few thousand rows, starting threads (gradient boosting's OpenMP) costs
    # more than it saves, and twice that on a busy machine.
    with threadpool_limits(limits=1):
        result = permutation_importance(
            estimator,
            shuffled,
            y_sample,
            scoring=score,
            n_repeats=IMPORTANCE_REPEATS,
            random_state=seed,
            n_jobs=1,
        )
    rows = [
        {
            "name": name,
            "mean": round(float(result.importances_mean[j]), 6),
            "std": round(float(result.importances_std[j]), 6),
        }
        for j, name in enumerate(names)
    ]
    rows.sort(key=lambda row: -row["mean"])
    return {
        "features": rows,
        "metric": metric,
        "greater_is_better": spec.greater_is_better,
        "cases": len(take),
        "held_out": n,
        "repeats": IMPORTANCE_REPEATS,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _cv_folds(codes: np.ndarray, wanted: int) -> int:
    """Folds possible with `codes` (class positions): no more than the rarest class present
    has cases; none with fewer than two classes."""
    counts = np.bincount(codes)
    counts = counts[counts > 0]
    return int(min(wanted, counts.min())) if len(counts) >= 2 else 0


def out_of_fold(
    X: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    params: dict[str, Any],
    seed: int,
    family: str,
    folds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities and each case's fold number."""
    proba = np.zeros((len(y), len(classes)))
    fold_of = np.zeros(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (fit_i, held_i) in enumerate(splitter.split(X, class_indices(y, classes))):
        if len(set(y[fit_i].tolist())) < 2:
            raise TrainingError("A cross-validation fold holds only one class.")
        model = fold_pipeline(params, seed, family).fit(X[fit_i], y[fit_i])
        proba[held_i] = predict_proba_aligned(model, X[held_i], classes)
        fold_of[held_i] = fold
    return proba, fold_of


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    params: dict[str, Any],
    seed: int,
    objective: ObjectiveSpec,
    families: tuple[str, ...],
    report: Progress,
    y_codes: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Cross-validate each candidate family on (a sample of) the training part.

    Returns the summary (per family: the threshold chosen on its out-of-fold predictions and
    the objective per fold) and the positions of the cases used. `y_codes`: `y` as class
    positions, when the caller has them (on a million labels, working them out here held the
    interpreter for a tenth of a second or more, beside the final fit).
    """
    # Integer class positions, not names: counting and stratifying on strings sorted or hashed
    # a Python object per case.
    codes = class_indices(y, classes) if y_codes is None else y_codes
    folds = _cv_folds(codes, int(params.get("cv_folds", DEFAULT_PARAMS["cv_folds"])))
    limit = int(params.get("cv_max_cases", DEFAULT_PARAMS["cv_max_cases"]))
    used = np.arange(len(y))
    if len(y) > limit:
        used, _ = train_test_split(used, train_size=limit, random_state=seed, stratify=codes)
        used = np.sort(used)
        folds = _cv_folds(codes[used], folds)
    if folds < 2:
        return {
            "folds": 0,
            "families": {},
            "note": "too few cases of a class to cross-validate",
        }, used
    summary: dict[str, Any] = {"folds": folds, "n": len(used), "families": {}}
    for i, family in enumerate(families):
        report(25 + int(20 * i / len(families)), f"Cross-validating {family} ({folds} folds)")
        proba, fold_of = out_of_fold(X[used], y[used], classes, params, seed, family, folds)
        threshold = threshold_choose(objective, y[used], proba, classes)
        per_fold = [
            objective_value(
                objective, y[used][fold_of == f], proba[fold_of == f], classes, threshold
            )
            for f in range(folds)
        ]
        defined = [v for v in per_fold if v is not None]
        summary["families"][family] = {
            "threshold": threshold,
            "per_fold": per_fold,
            "mean": float(np.mean(defined)) if defined else None,
            "std": float(np.std(defined)) if defined else None,
            "_proba": proba,
        }
    return summary, used


def train_and_evaluate(
    X: np.ndarray,
    y: np.ndarray,
    occurred_at: np.ndarray,
    classes: list[str],
    params: dict[str, Any],
    seed: int,
    progress: Progress | None = None,
    objective: ObjectiveSpec | None = None,
    feature_names: list[str] | None = None,
    after_fit: Callable[[Pipeline], Any] | None = None,
    y_codes: np.ndarray | None = None,
    cancellation: Cancellation | None = None,
) -> TrainingResult:
    """Split, cross-validate, fit, evaluate. `after_fit(pipeline)`, if given, runs in a thread
    once the final model is fitted; its result is `extra["after_fit"]`. `y_codes`: `y` as
    positions in `classes`, when the caller has them. The side threads work under
    `cancellation`, so that cancelling a run stops them too."""
    report = progress or (lambda percent, message: None)
    objective = objective or ObjectiveSpec()
    if len(y) < MIN_LABELED_CASES:
        raise TrainingError(
            f"Only {len(y)} labeled cases; training needs at least {MIN_LABELED_CASES}."
        )
    seen = sorted(set(y.tolist()))
    if len(seen) < 2:
        raise TrainingError(
            f"All labeled cases are {seen[0]!r}; training needs labels of at least two classes."
        )
    test_fraction = float(params.get("test_fraction", DEFAULT_PARAMS["test_fraction"]))
    train_index, test_index, split = split_holdout(occurred_at, y, test_fraction, seed)
    if len(set(y[train_index].tolist())) < 2:
        raise TrainingError("The training part of the split holds only one class.")
    requested = params.get("model_family", DEFAULT_PARAMS["model_family"])
    families = MODEL_FAMILIES if requested == AUTO_FAMILY else (requested,)
    build_pipeline(params, seed, families[0])  # refuse bad parameters before any work
    X_train, y_train = X[train_index], y[train_index]
    codes_train = None if y_codes is None else y_codes[train_index]
    if len(families) == 1:
        # The final fit does not need the threshold that cross-validation chooses: the two
        # run side by side, on the second core. The side thread reports no progress (it has
        # no database connection of its own to report with).
        family = families[0]
        report(25, f"Cross-validating and training {family} on {len(train_index)} cases")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cross-validate") as side:
            pending = side.submit(
                working_in(cancellation, cross_validate),
                X_train,
                y_train,
                classes,
                params,
                seed,
                objective,
                families,
                lambda percent, message: None,
                codes_train,
            )
            pipeline = build_pipeline(params, seed, family)
            pipeline.fit(X_train, y_train)  # on failure, leaving the block waits for the side
            cv, cv_used = pending.result()
    else:
        cv, cv_used = cross_validate(
            X_train, y_train, classes, params, seed, objective, families, report, codes_train
        )
        family = families[0]
        for candidate in families[1:]:
            if better(
                objective,
                cv["families"].get(candidate, {}).get("mean"),
                cv["families"].get(family, {}).get("mean"),
            ):
                family = candidate
        pipeline = build_pipeline(params, seed, family)
        report(50, f"Training {family} on {len(train_index)} cases")
        pipeline.fit(X_train, y_train)
    # The training rows' copy is not needed any more: freed before every case is predicted.
    del X_train
    # What needs only the fitted model (predicting every case) runs beside the evaluation.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="after-fit") as after:
        pending = (
            after.submit(working_in(cancellation, after_fit), pipeline)
            if after_fit is not None
            else None
        )
        chosen = cv["families"].get(family, {})
        threshold = chosen.get("threshold")
        report(70, f"Evaluating on {len(test_index)} held-out cases")
        proba = predict_proba_aligned(pipeline, X[test_index], classes)
        metrics = evaluate(y[test_index], proba, classes, objective, threshold)
        metrics.update(
            {
                "split": split,
                "n_train": len(train_index),
                "n_test": len(test_index),
                "label_counts": {cls: int(np.sum(y == cls)) for cls in classes},
                "model_family": family,
                "threshold": threshold,
                "cv_objective": chosen.get("mean"),
                "cv_objective_std": chosen.get("std"),
            }
        )
        if split == "time":
            test_times = occurred_at[test_index]
            test_times = test_times[~np.isnat(test_times)]
            if len(test_times):
                metrics["test_period"] = [str(test_times.min())[:10], str(test_times.max())[:10]]
        positive = positive_index(objective, classes)
        slices = []
        if "_proba" in chosen:
            slices += month_slices(
                occurred_at[train_index][cv_used],
                y_train[cv_used],
                chosen["_proba"],
                classes,
                objective,
                threshold,
                "cross-validation",
            )
        slices += month_slices(
            occurred_at[test_index], y[test_index], proba, classes, objective, threshold, "held-out"
        )
        for summary in cv["families"].values():
            summary.pop("_proba", None)
        report(75, "Measuring each feature's effect (permutation importance)")
        effect = importance(
            pipeline,
            X[test_index],
            y[test_index],
            classes,
            objective,
            threshold,
            seed,
            feature_names,
            family,
        )
        evaluation = {
            "objective": objective.to_dict(),
            "objective_label": objective.describe(),
            "greater_is_better": objective.greater_is_better,
            "threshold": threshold,
            "curves": curves(y[test_index], proba, classes, positive),
            "slices": slices,
            "cross_validation": cv,
            "importance": effect,
        }
        return TrainingResult(
            pipeline=pipeline,
            classes=classes,
            metrics=metrics,
            evaluation=evaluation,
            threshold=threshold,
            model_family=family,
            train_index=train_index,
            test_index=test_index,
            extra={"after_fit": pending.result()} if pending is not None else {},
        )
