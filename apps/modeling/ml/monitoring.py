"""Figures behind the alerts: population stability, staleness and a degenerate model. No
Django here; the modeling services feed these arrays from the database."""

from __future__ import annotations

from typing import Any

import numpy as np

# Fewer labeled cases than this are too noisy to call a model stale on.
from apps.modeling.ml.training import MIN_SLICE_CASES

PSI_BINS = 10


def population_stability(
    reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS
) -> float | None:
    """Population stability index of one feature: bins are the reference's deciles (missing
    values a bin of their own), PSI = Σ (cur − ref) · ln(cur / ref), with empty bins floored at
    1e-4 so that a bin appearing from nothing counts heavily but finitely.

    Rule of thumb: below 0.1 stable, 0.1–0.25 moderate shift, above 0.25 a major shift.
    """
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    if len(reference) == 0 or len(current) == 0:
        return None
    ref_ok = reference[~np.isnan(reference)]
    if len(ref_ok) == 0:
        return None
    edges = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]))

    def shares(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        counts = np.bincount(
            np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1
        )
        return np.append(counts, missing.sum()) / len(values)

    ref_share = np.maximum(shares(reference), 1e-4)
    cur_share = np.maximum(shares(current), 1e-4)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def staleness(
    recent: dict[str, Any], older: dict[str, Any], greater_is_better: bool, margin: float
) -> dict[str, Any] | None:
    """Compare the objective on recent cases with the objective on older ones.

    Each side is {"value", "n", "periods": [first, last], "what"}, with the objective computed
    on all of its cases pooled (a month of a rare class holds too few cases for a stable ROC
    AUC of its own). Returns both figures, the drop (positive = worse recently) and whether it
    passes the margin; None when either side has no value or too few cases.
    """
    if recent.get("value") is None or older.get("value") is None:
        return None
    if recent.get("n", 0) < MIN_SLICE_CASES or older.get("n", 0) < MIN_SLICE_CASES:
        return None
    drop = (
        older["value"] - recent["value"] if greater_is_better else recent["value"] - older["value"]
    )
    return {
        "recent": recent["value"],
        "older": older["value"],
        "recent_n": recent["n"],
        "older_n": older["n"],
        "recent_periods": recent.get("periods"),
        "older_periods": older.get("periods"),
        "recent_what": recent.get("what", ""),
        "older_what": older.get("what", ""),
        "drop": drop,
        "stale": drop > margin,
    }


def degenerate(
    predicted_share: dict[str, float],
    recall: dict[str, float],
    share_limit: float = 0.99,
    recall_floor: float = 0.05,
) -> dict[str, Any] | None:
    """A model that predicts one class for nearly every case, or never finds a class."""
    dominant = max(predicted_share, key=predicted_share.get) if predicted_share else None
    if dominant is not None and predicted_share[dominant] >= share_limit:
        return {"kind": "one_class", "class": dominant, "share": predicted_share[dominant]}
    missed = [c for c, r in recall.items() if r is not None and r <= recall_floor]
    if missed:
        return {"kind": "recall", "classes": missed, "recall": {c: recall[c] for c in missed}}
    return None
