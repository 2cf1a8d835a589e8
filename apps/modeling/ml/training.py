"""Build, train and evaluate a tabular classifier on a label snapshot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MODEL_FAMILIES = ("logistic_regression", "hist_gradient_boosting", "random_forest")
# Unweighted classes by default: on imbalanced data the model then shows the majority-class
# failure that error analysis is there to find, instead of hiding it behind a default.
DEFAULT_PARAMS: dict[str, Any] = {
    "model_family": "logistic_regression",
    "class_weight": None,
    "test_fraction": 0.2,
}
MIN_LABELED_CASES = 10

Progress = Callable[[int, str], None]


class TrainingError(Exception):
    """The snapshot cannot train a model; the message says why in the user's terms."""


@dataclass
class TrainingResult:
    pipeline: Pipeline
    classes: list[str]
    metrics: dict[str, Any]
    train_index: np.ndarray
    test_index: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def build_pipeline(params: dict[str, Any], seed: int) -> Pipeline:
    family = params.get("model_family", DEFAULT_PARAMS["model_family"])
    class_weight = params.get("class_weight")
    if class_weight not in (None, "balanced"):
        raise TrainingError(f"class_weight must be none or 'balanced', not {class_weight!r}")
    if family == "logistic_regression":
        model = LogisticRegression(
            C=float(params.get("C", 1.0)),
            max_iter=int(params.get("max_iter", 1000)),
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
            max_iter=int(params.get("max_iter", 200)),
            learning_rate=float(params.get("learning_rate", 0.1)),
            class_weight=class_weight,
            random_state=seed,
        )
        steps = [("model", model)]
    elif family == "random_forest":
        model = RandomForestClassifier(
            n_estimators=int(params.get("n_estimators", 200)),
            min_samples_leaf=int(params.get("min_samples_leaf", 1)),
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
            f"Unknown model family {family!r}; choose one of {', '.join(MODEL_FAMILIES)}."
        )
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
        # Undated cases sort first, i.e. into training.
        order = np.argsort(np.where(dated, occurred_at, np.datetime64("1900-01-01")), kind="stable")
        return np.sort(order[: n - n_test]), np.sort(order[n - n_test :]), "time"
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 else None
    train, test = train_test_split(index, test_size=n_test, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test), "random"


def evaluate(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=classes, zero_division=0
    )
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)),
        "macro_f1": float(
            f1_score(y_true, predicted, labels=classes, average="macro", zero_division=0)
        ),
        "roc_auc": None,
        "per_class": {
            cls: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted_share": float(np.mean(predicted == cls)),
            }
            for i, cls in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=classes).tolist(),
    }
    present = set(np.unique(y_true))
    if present == set(classes):
        if len(classes) == 2:
            metrics["roc_auc"] = float(roc_auc_score(y_true == classes[1], proba[:, 1]))
        else:
            metrics["roc_auc"] = float(
                roc_auc_score(y_true, proba, labels=classes, multi_class="ovr")
            )
    return metrics


def predict_proba_aligned(pipeline: Pipeline, X: np.ndarray, classes: list[str]) -> np.ndarray:
    """Probabilities with one column per project class, zero for classes the model never saw."""
    raw = pipeline.predict_proba(X)
    aligned = np.zeros((X.shape[0], len(classes)))
    for j, cls in enumerate(pipeline.classes_):
        aligned[:, classes.index(cls)] = raw[:, j]
    return aligned


def train_and_evaluate(
    X: np.ndarray,
    y: np.ndarray,
    occurred_at: np.ndarray,
    classes: list[str],
    params: dict[str, Any],
    seed: int,
    progress: Progress | None = None,
) -> TrainingResult:
    report = progress or (lambda percent, message: None)
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
    pipeline = build_pipeline(params, seed)
    report(40, f"Training on {len(train_index)} cases")
    pipeline.fit(X[train_index], y[train_index])
    report(70, f"Evaluating on {len(test_index)} held-out cases")
    proba = predict_proba_aligned(pipeline, X[test_index], classes)
    metrics = evaluate(y[test_index], proba, classes)
    metrics.update(
        {
            "split": split,
            "n_train": len(train_index),
            "n_test": len(test_index),
            "label_counts": {cls: int(np.sum(y == cls)) for cls in classes},
        }
    )
    if split == "time":
        test_times = occurred_at[test_index]
        test_times = test_times[~np.isnat(test_times)]
        if len(test_times):
            metrics["test_period"] = [str(test_times.min())[:10], str(test_times.max())[:10]]
    return TrainingResult(
        pipeline=pipeline,
        classes=classes,
        metrics=metrics,
        train_index=train_index,
        test_index=test_index,
    )
