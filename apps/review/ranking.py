"""Confident learning on out-of-sample probabilities: which given labels are likely wrong.

cleanlab does the ranking (label quality scores) and the flagging (find_label_issues); this
module only adapts class names to the integer labels it expects. No Django here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from apps.modeling.ml.objectives import class_indices


@dataclass
class LabelVerdicts:
    quality: np.ndarray  # per case, 0..1, lower = more likely mislabeled
    is_issue: np.ndarray  # bool: cleanlab flags the label
    suggested: np.ndarray  # class index the probabilities favour
    given: np.ndarray  # class index of the given label


def label_verdicts(labels: np.ndarray, pred_probs: np.ndarray, classes: list[str]) -> LabelVerdicts:
    """`pred_probs` must be out-of-sample (cross-validated): in-sample probabilities have
    already learned the wrong labels and hide them."""
    given = class_indices(labels, classes)
    # cleanlab wants every class to appear among the labels; classes nobody gave are dropped
    # from its view (and can still be suggested).
    present = np.unique(given)
    remap = np.full(len(classes), -1)
    remap[present] = np.arange(len(present))
    probs = pred_probs[:, present]
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    compact = remap[given]
    quality = get_label_quality_scores(compact, probs)
    # How many labels are wrong comes from cleanlab's confident joint, which sets a threshold
    # per class; which ones, from the lowest label quality, so the flags are the top of the
    # board's own order. cleanlab's default (prune_by_noise_rate) picks them by how far the
    # probabilities lean away from the label instead, and on a rare class that questioned
    # almost half of the genuine positives of the heart-failure demo. This flags fewer than
    # half as many correct labels on both demos (heart failure: 118 against 263), at 10-14
    # points of recall; bench/bench_label_issues.py compares the options.
    is_issue = (
        find_label_issues(compact, probs, filter_by="low_self_confidence", n_jobs=1)
        if len(present) > 1
        else np.zeros(len(given), dtype=bool)
    )
    return LabelVerdicts(
        quality=np.asarray(quality, dtype=float),
        is_issue=np.asarray(is_issue, dtype=bool),
        suggested=pred_probs.argmax(axis=1),
        given=given,
    )
