"""Objectives: the metric a project optimizes, computed on predictions, and the decision
threshold that serves it best. No Django here.

Every objective is computed from two arrays: the true labels and the probabilities (one
column per project class). Decisions (which class a case is given) come from `decide`, so the
threshold that the objective chose is applied the same way in evaluation, in stored
predictions and in the predict API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

METRICS: dict[str, str] = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC (average precision)",
    "f_beta": "F-beta",
    "recall_at_precision": "Recall at a fixed precision",
    "precision_at_k": "Precision at k",
    "expected_cost": "Expected cost (cost matrix)",
}
# Ranking metrics do not depend on a threshold: the decision stays the most probable class.
THRESHOLD_FREE = {"roc_auc", "pr_auc", "precision_at_k"}
LOWER_IS_BETTER = {"expected_cost"}
NEEDS_POSITIVE_CLASS = {"roc_auc", "pr_auc", "f_beta", "recall_at_precision", "precision_at_k"}
# Metrics that compare the class of interest with the others: undefined on cases of one side
# only. F-beta needs a case of the class (its recall is 0/0 without one) but not the others.
NEEDS_BOTH_SIDES = {"roc_auc", "pr_auc", "recall_at_precision"}
NEEDS_A_POSITIVE = NEEDS_BOTH_SIDES | {"f_beta"}


class ObjectiveError(ValueError):
    """An objective that cannot be computed as asked; the message says why."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """What to optimize. `positive_class` is the class of interest (the rare or actionable one);
    `cost_matrix[i][j]` is the cost of deciding class j for a case of class i."""

    metric: str = "accuracy"
    positive_class: str = ""
    beta: float = 1.0
    min_precision: float = 0.8
    k: int = 100
    cost_matrix: list[list[float]] = field(default_factory=list)

    @property
    def greater_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER

    def describe(self) -> str:
        name = METRICS.get(self.metric, self.metric)
        if self.metric == "f_beta":
            name = f"F{self.beta:g}"
        elif self.metric == "recall_at_precision":
            name = f"Recall at precision ≥ {self.min_precision:g}"
        elif self.metric == "precision_at_k":
            name = f"Precision at {self.k}"
        if self.positive_class and self.metric in NEEDS_POSITIVE_CLASS:
            name += f" ({self.positive_class})"
        return name

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "positive_class": self.positive_class,
            "beta": self.beta,
            "min_precision": self.min_precision,
            "k": self.k,
            "cost_matrix": self.cost_matrix,
        }


def objective_check(spec: ObjectiveSpec, classes: list[str]) -> None:
    """Refuse an objective that cannot be computed for these classes, naming the problem."""
    if spec.metric not in METRICS:
        raise ObjectiveError(f"Unknown metric {spec.metric!r}; choose one of {', '.join(METRICS)}.")
    if spec.positive_class and spec.positive_class not in classes:
        raise ObjectiveError(
            f"Positive class {spec.positive_class!r} is not one of the project's classes "
            f"({', '.join(classes)})."
        )
    if spec.metric == "f_beta" and not spec.beta > 0:
        raise ObjectiveError("F-beta needs beta > 0.")
    if spec.metric == "recall_at_precision" and not 0 < spec.min_precision <= 1:
        raise ObjectiveError("The fixed precision must be between 0 and 1.")
    if spec.metric == "precision_at_k" and spec.k < 1:
        raise ObjectiveError("k must be at least 1.")
    if spec.metric == "expected_cost":
        rows = spec.cost_matrix or []
        ragged = any(not isinstance(r, list | tuple) or len(r) != len(rows[0]) for r in rows)
        matrix = None if ragged or not rows else np.asarray(rows, dtype=float)
        if matrix is None or matrix.shape != (len(classes), len(classes)):
            raise ObjectiveError(
                f"The cost matrix must be {len(classes)}×{len(classes)} "
                f"(rows: true class, columns: decided class, in the order {', '.join(classes)})."
            )
        if not np.isfinite(matrix).all() or (matrix < 0).any():
            raise ObjectiveError("Costs must be non-negative numbers.")


def positive_index(spec: ObjectiveSpec, classes: list[str]) -> int:
    """The column of the class of interest: the one named, else the last class (in a binary
    project, the second class is the positive one by convention)."""
    return classes.index(spec.positive_class) if spec.positive_class else len(classes) - 1


def decide(proba: np.ndarray, threshold: float | None, positive: int) -> np.ndarray:
    """Class index per case: the positive class when its probability reaches the threshold,
    otherwise the most probable of the other classes. Without a threshold, the most probable."""
    if threshold is None or proba.shape[1] < 2:
        return proba.argmax(axis=1)
    others = proba.copy()
    others[:, positive] = -1.0
    return np.where(proba[:, positive] >= threshold, positive, others.argmax(axis=1))


def objective_undefined(spec: ObjectiveSpec, y_true: np.ndarray, classes: list[str]) -> str | None:
    """Why the objective has no value on these cases, in words for a chart or a table ("no
    heart_failure case"); None when it has one. A value of 0 there would read as a model that
    finds nothing, when there was nothing to find."""
    if len(y_true) == 0:
        return "no case"
    positive = classes[positive_index(spec, classes)]
    is_pos = np.asarray(y_true) == positive
    if spec.metric in NEEDS_A_POSITIVE and not is_pos.any():
        return f"no {positive} case"
    if spec.metric in NEEDS_BOTH_SIDES and is_pos.all():
        return f"only {positive} cases"
    return None


def objective_value(
    spec: ObjectiveSpec,
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    threshold: float | None = None,
) -> float | None:
    """The objective on these cases, or None where it is undefined (`objective_undefined`
    says why: ROC AUC on a slice holding one class only, F-beta on one without a case of the
    class of interest)."""
    if objective_undefined(spec, y_true, classes) is not None:
        return None
    pos = positive_index(spec, classes)
    is_pos = np.asarray(y_true) == classes[pos]
    scores = proba[:, pos]
    metric = spec.metric
    if metric == "roc_auc":
        return float(roc_auc_score(is_pos, scores))
    if metric == "pr_auc":
        return float(average_precision_score(is_pos, scores))
    if metric == "recall_at_precision":
        precision, recall, _ = precision_recall_curve(is_pos, scores)
        reachable = recall[precision >= spec.min_precision]
        return float(reachable.max()) if len(reachable) else 0.0
    if metric == "precision_at_k":
        k = min(spec.k, len(scores))
        top = np.argsort(-scores, kind="stable")[:k]
        return float(is_pos[top].mean())
    if metric not in DECISION_METRICS:
        raise ObjectiveError(f"Unknown metric {metric!r}")
    y_index = class_indices(y_true, classes)
    return _decision_value(
        spec, _confusion(y_index, decide(proba, threshold, pos), len(classes)), pos
    )


DECISION_METRICS = {"accuracy", "balanced_accuracy", "f_beta", "expected_cost"}


def objective_scorer(
    spec: ObjectiveSpec,
    y_true: np.ndarray,
    classes: list[str],
    threshold: float | None = None,
) -> Callable[[np.ndarray], float | None]:
    """`objective_value` for many probability matrices of the same cases: the labels are read
    once, and the ranking metrics come from one sort of the scores, without scikit-learn's
    checks on every call. Permutation importance scores one held-out sample some hundred
    times; there the checks cost more than the predictions. Gives what `objective_value`
    gives (ROC AUC from average ranks, which is the trapezoidal area, ties included; PR AUC
    and recall at precision from the precision-recall curve at each distinct score)."""
    n = len(y_true)
    pos = positive_index(spec, classes)
    is_pos = np.asarray(y_true) == classes[pos]
    metric = spec.metric
    if objective_undefined(spec, y_true, classes) is not None:
        return lambda proba: None
    n_pos = int(is_pos.sum())
    if metric == "roc_auc":
        n_neg = n - n_pos

        def roc_auc(proba: np.ndarray) -> float:
            ranks = rankdata(proba[:, pos])
            return float((ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))

        return roc_auc

    def curve(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = proba[:, pos]
        order = np.argsort(-scores, kind="mergesort")
        ordered = scores[order]
        last = np.r_[np.flatnonzero(np.diff(ordered)), n - 1]  # each distinct score's last
        tps = np.cumsum(is_pos[order])[last]
        return tps / (last + 1), tps / n_pos  # precision, recall

    if metric == "pr_auc":

        def pr_auc(proba: np.ndarray) -> float:
            precision, recall = curve(proba)
            return float(np.sum(np.diff(recall, prepend=0.0) * precision))

        return pr_auc
    if metric == "recall_at_precision":

        def recall_at_precision(proba: np.ndarray) -> float:
            precision, recall = curve(proba)
            reachable = recall[precision >= spec.min_precision]
            return float(reachable.max()) if len(reachable) else 0.0

        return recall_at_precision
    if metric == "precision_at_k":
        k = min(spec.k, n)

        def precision_at_k(proba: np.ndarray) -> float:
            return float(is_pos[np.argsort(-proba[:, pos], kind="stable")[:k]].mean())

        return precision_at_k
    if metric not in DECISION_METRICS:
        raise ObjectiveError(f"Unknown metric {metric!r}")
    y_index = class_indices(y_true, classes)
    width = len(classes)
    return lambda proba: _decision_value(
        spec, _confusion(y_index, decide(proba, threshold, pos), width), pos
    )


def class_indices(values: np.ndarray, classes: list[str]) -> np.ndarray:
    """Each label's position in `classes`, as integers (labels outside them are refused)."""
    codes = pd.Categorical(np.asarray(values, dtype=object), categories=classes).codes
    if (codes < 0).any():
        unknown = sorted({str(v) for v in np.asarray(values)[codes < 0]})[:5]
        raise ObjectiveError(f"Labels outside the project's classes: {', '.join(unknown)}.")
    return codes.astype(np.int64)


def _confusion(y_index: np.ndarray, decided: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_index * k + decided, minlength=k * k).reshape(k, k)


def _decision_value(spec: ObjectiveSpec, confusion: np.ndarray, pos: int) -> float | None:
    """A threshold-dependent objective from the confusion matrix (rows: true, columns:
    decided), as scikit-learn defines it, except that F-beta without a case of the class is
    None (scikit-learn's zero_division would make it 0); counting from integers is what lets
    the threshold search try two hundred thresholds on fifty thousand cases in
    milliseconds."""
    n = confusion.sum()
    if spec.metric == "accuracy":
        return float(np.trace(confusion) / n)
    if spec.metric == "balanced_accuracy":
        support = confusion.sum(axis=1)
        present = support > 0
        return float(np.mean(np.diag(confusion)[present] / support[present]))
    if spec.metric == "f_beta":
        tp = confusion[pos, pos]
        fp = confusion[:, pos].sum() - tp
        fn = confusion[pos, :].sum() - tp
        if tp + fn == 0:
            return None  # recall is 0/0: there was no case of the class to find
        b2 = spec.beta**2
        return float((1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp))
    matrix = np.asarray(spec.cost_matrix, dtype=float)
    return float((confusion * matrix).sum() / n)


def better(spec: ObjectiveSpec, a: float | None, b: float | None) -> bool:
    """Whether objective value a beats b (None never beats anything)."""
    if a is None:
        return False
    if b is None:
        return True
    return a > b if spec.greater_is_better else a < b


def threshold_choose(
    spec: ObjectiveSpec, y_true: np.ndarray, proba: np.ndarray, classes: list[str]
) -> float | None:
    """The threshold on the positive class's probability that serves the objective best on
    these (out-of-sample) predictions; None for ranking metrics, which need no threshold.

    Recall at a fixed precision takes the lowest threshold whose precision still reaches the
    target (the most recall the target allows)."""
    if spec.metric in THRESHOLD_FREE or len(y_true) == 0:
        return None
    pos = positive_index(spec, classes)
    scores = proba[:, pos]
    candidates = np.unique(np.concatenate([np.quantile(scores, np.linspace(0, 1, 201)), [0.5]]))
    if spec.metric == "recall_at_precision":
        is_pos = np.asarray(y_true) == classes[pos]
        if is_pos.all() or not is_pos.any():
            return None
        precision, _, thresholds = precision_recall_curve(is_pos, scores)
        ok = np.flatnonzero(precision[:-1] >= spec.min_precision)
        return float(thresholds[ok[0]]) if len(ok) else float(thresholds[-1])
    y_index = class_indices(y_true, classes)
    others = proba.copy()
    others[:, pos] = -1.0
    fallback = others.argmax(axis=1)
    k = len(classes)
    best_t, best_v = None, None
    for t in candidates:
        decided = np.where(scores >= t, pos, fallback)
        value = _decision_value(spec, _confusion(y_index, decided, k), pos)
        if better(spec, value, best_v):
            best_t, best_v = float(t), value
    return best_t
