"""Objectives: the metric a project optimizes, computed on predictions, and the decision
threshold that serves it best. No Django here.

Every objective is computed from two arrays: the true labels and the probabilities (one
column per project class). Decisions (which class a case is given) come from `decide`, so the
threshold that the objective chose is applied the same way in evaluation, in stored
predictions and in the predict API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    fbeta_score,
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


def objective_value(
    spec: ObjectiveSpec,
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    threshold: float | None = None,
) -> float | None:
    """The objective on these cases, or None where it is undefined (e.g. ROC AUC on a slice
    holding one class only)."""
    if len(y_true) == 0:
        return None
    pos = positive_index(spec, classes)
    is_pos = np.asarray(y_true) == classes[pos]
    scores = proba[:, pos]
    metric = spec.metric
    if metric in ("roc_auc", "pr_auc", "recall_at_precision") and (
        is_pos.all() or not is_pos.any()
    ):
        return None
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
    decided = np.asarray(classes, dtype=object)[decide(proba, threshold, pos)]
    if metric == "accuracy":
        return float(accuracy_score(y_true, decided))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y_true, decided))
    if metric == "f_beta":
        return float(fbeta_score(is_pos, decided == classes[pos], beta=spec.beta, zero_division=0))
    if metric == "expected_cost":
        matrix = np.asarray(spec.cost_matrix, dtype=float)
        index = {c: i for i, c in enumerate(classes)}
        true_i = np.fromiter((index[v] for v in y_true), dtype=np.int64, count=len(y_true))
        decided_i = decide(proba, threshold, pos)
        return float(matrix[true_i, decided_i].mean())
    raise ObjectiveError(f"Unknown metric {metric!r}")


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
    best_t, best_v = None, None
    for t in candidates:
        value = objective_value(spec, y_true, proba, classes, float(t))
        if better(spec, value, best_v):
            best_t, best_v = float(t), value
    return best_t
