"""Agreement between orders of the same cases: a model's (by its scores) and reviewers'.

scikit-learn's `ndcg_score` and SciPy's `kendalltau` do the arithmetic; this module only says
what is compared with what. A reviewer's order is turned into graded relevance by position: of
n cases, the one they put first is worth n, the last 1. NDCG@k then asks how much of that
worth a model's top k captures, 1.0 when its top k are the reviewer's top k in their order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau
from sklearn.metrics import ndcg_score


def relevance_from_order(order: Sequence[int], case_ids: Sequence[int]) -> np.ndarray:
    """Graded relevance of `case_ids` under a reviewer's `order` (first of n: n, last: 1)."""
    position = {case_id: i for i, case_id in enumerate(order)}
    n = len(order)
    return np.array([n - position[c] for c in case_ids], dtype=float)


def ndcg_at_k(order: Sequence[int], scores: dict[int, float], k: int) -> float | None:
    """NDCG@k of ranking `order`'s cases by `scores` (higher first) against `order` itself.
    None with fewer than two cases (a single case is trivially in place)."""
    cases = [c for c in order if c in scores]
    if len(cases) < 2:
        return None
    relevance = relevance_from_order([c for c in order if c in scores], cases)
    predicted = np.array([scores[c] for c in cases], dtype=float)
    return float(ndcg_score(relevance[None, :], predicted[None, :], k=min(k, len(cases))))


def kendall_tau_scores(order: Sequence[int], scores: dict[int, float]) -> float | None:
    """Kendall's tau-b between a reviewer's order and the order of `scores` (higher first):
    1 the same order, -1 reversed, about 0 unrelated."""
    cases = [c for c in order if c in scores]
    if len(cases) < 2:
        return None
    reviewer_position = np.arange(len(cases))
    model_score = np.array([scores[c] for c in cases], dtype=float)
    tau = kendalltau(reviewer_position, -model_score).statistic
    return None if np.isnan(tau) else float(tau)


def kendall_tau_orders(first: Sequence[int], second: Sequence[int]) -> float | None:
    """Kendall's tau-b between two orders of (the cases both hold of) the same worklist."""
    common = [c for c in first if c in set(second)]
    if len(common) < 2:
        return None
    where = {c: i for i, c in enumerate(second)}
    tau = kendalltau(np.arange(len(common)), [where[c] for c in common]).statistic
    return None if np.isnan(tau) else float(tau)


def precision_at_k(
    scores: dict[int, float], judged: dict[int, bool], k: int
) -> tuple[float | None, int]:
    """Of the judged cases, the share judged actionable among the k a model scores highest
    (ties by case id); and how many cases that was (fewer than k when fewer are judged)."""
    ranked = sorted((c for c in judged if c in scores), key=lambda c: (-scores[c], c))[:k]
    if not ranked:
        return None, 0
    return sum(judged[c] for c in ranked) / len(ranked), len(ranked)
