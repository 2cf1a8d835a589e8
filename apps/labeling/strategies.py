"""Queue strategies: pure functions from case data and model scores to an order of cases.

Each returns positions into the arrays it was given, first case first. They are deterministic
for a given seed, so the order a clinician was served in can be recomputed and explained.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UNCERTAINTY_MEASURES = ("least_confident", "margin", "entropy")


def _seed_key(seed: int) -> str:
    # pandas' hash takes a 16-character key; the seed picks it.
    return f"{seed:016d}"[-16:]


def seeded_hash(values: np.ndarray, seed: int) -> np.ndarray:
    """A stable pseudo-random uint64 per value: the same value and seed give the same number
    in every process and version, and adding values leaves the others' numbers unchanged."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        # pandas hashes numbers without the key: shift them by a seed-derived constant first.
        # The mixing is a bijection on 64 bits, so distinct ids keep distinct hashes.
        with np.errstate(over="ignore"):
            shifted = values.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        return pd.util.hash_array(pd.util.hash_array(shifted), categorize=False)
    return pd.util.hash_array(values, hash_key=_seed_key(seed), categorize=False)


def in_overlap(external_ids: list[str] | np.ndarray, share: float, seed: int) -> np.ndarray:
    """Which cases are chosen for overlap: a seeded hash of the external id below the share.

    Hashing the external id (not the database id) lets the import decide before ids exist.
    """
    if share <= 0 or len(external_ids) == 0:
        return np.zeros(len(external_ids), dtype=bool)
    values = np.asarray(external_ids, dtype=object)
    return (seeded_hash(values, seed) % np.uint64(1_000_000)) < np.uint64(round(share * 1_000_000))


def uncertainty(probabilities: np.ndarray, measure: str) -> np.ndarray:
    """How unsure the model is about each case (higher = less sure); NaN rows stay NaN."""
    p = np.asarray(probabilities, dtype=np.float64)
    if measure == "least_confident":
        return 1.0 - p.max(axis=1)
    if measure == "margin":
        if p.shape[1] < 2:
            return np.zeros(len(p))
        top_two = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top_two[:, 1] - top_two[:, 0])
    if measure == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p), 0.0)
        entropy = -terms.sum(axis=1)
        entropy[np.isnan(p).any(axis=1)] = np.nan
        return entropy
    raise ValueError(f"Unknown uncertainty measure {measure!r}")


def order_by_score(case_ids: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Highest score first, cases without a score (NaN) last; ties in case id order."""
    score = np.asarray(score, dtype=np.float64)
    missing = np.isnan(score)
    # lexsort sorts by the last key first.
    return np.lexsort((case_ids, -np.where(missing, 0.0, score), missing))


def order_import(case_ids: np.ndarray) -> np.ndarray:
    return np.argsort(case_ids, kind="stable")


def order_random(case_ids: np.ndarray, seed: int) -> np.ndarray:
    return np.lexsort((case_ids, seeded_hash(case_ids.astype(np.int64), seed)))


def order_recent_first(case_ids: np.ndarray, occurred_at: np.ndarray) -> np.ndarray:
    """Newest `occurred_at` first; cases with no date last, in import order."""
    when = np.asarray(occurred_at, dtype="datetime64[us]")
    missing = np.isnat(when)
    stamp = np.where(missing, 0, when.astype(np.int64))
    return np.lexsort((case_ids, -stamp, missing))


def mix_orders(primary: np.ndarray, secondary: np.ndarray, secondary_share: float, seed: int):
    """Merge two orders of the same cases: each place is filled from `secondary` with
    probability `secondary_share` (a seeded draw), else from `primary`, skipping cases already
    placed. Returns the merged order and, per place, whether it came from `secondary`."""
    n = len(primary)
    draws = np.random.default_rng(seed).random(n) < secondary_share
    taken = np.zeros(n, dtype=bool)
    merged = np.empty(n, dtype=np.int64)
    a = b = 0
    primary_list = primary.tolist()
    secondary_list = secondary.tolist()
    for place, from_secondary in enumerate(draws.tolist()):
        if from_secondary:
            while taken[secondary_list[b]]:
                b += 1
            pick = secondary_list[b]
        else:
            while taken[primary_list[a]]:
                a += 1
            pick = primary_list[a]
        taken[pick] = True
        merged[place] = pick
    return merged, draws
