"""Figures behind the alerts: population stability, staleness and a degenerate model. No
Django here; the modeling services feed these arrays from the database."""

from __future__ import annotations

from typing import Any

import numpy as np

PSI_BINS = 10
# A slice with fewer labeled cases than this is too noisy to call a model stale on.
MIN_SLICE_CASES = 20


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
    slices: list[dict[str, Any]], greater_is_better: bool, margin: float, recent_months: int
) -> dict[str, Any] | None:
    """Compare the objective on the most recent months with the months before them.

    `slices` are per-month rows {period, n, objective} of out-of-sample predictions. The recent
    part is the last `recent_months` months that have enough cases; the older part, the months
    before. Returns the two figures (case-weighted means), the drop and whether it passes
    the margin; None when either part has no usable month.
    """
    usable = sorted(
        (s for s in slices if s.get("objective") is not None and s["n"] >= MIN_SLICE_CASES),
        key=lambda s: s["period"],
    )
    if len(usable) < 2:
        return None
    recent_n = min(recent_months, len(usable) - 1)
    recent, older = usable[-recent_n:], usable[:-recent_n]

    def weighted(rows: list[dict[str, Any]]) -> float:
        n = np.array([r["n"] for r in rows], dtype=float)
        v = np.array([r["objective"] for r in rows], dtype=float)
        return float(np.sum(n * v) / np.sum(n))

    recent_value, older_value = weighted(recent), weighted(older)
    drop = older_value - recent_value if greater_is_better else recent_value - older_value
    return {
        "recent_periods": [recent[0]["period"], recent[-1]["period"]],
        "older_periods": [older[0]["period"], older[-1]["period"]],
        "recent": recent_value,
        "older": older_value,
        "recent_n": int(sum(r["n"] for r in recent)),
        "older_n": int(sum(r["n"] for r in older)),
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
