"""Two model versions compared on the cases neither trained on; the threshold under an objective."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from apps.modeling.ml.objectives import (
    ObjectiveSpec,
    better,
    decide,
    objective_value,
    positive_index,
)
from apps.modeling.ml.training import (
    month_slices,
)
from apps.modeling.models import (
    ModelVersion,
    Objective,
)
from apps.modeling.services.monitoring import _labeled_after, _rows_of
from apps.modeling.services.predictions import version_predictions_load

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Two versions side by side.


def _out_of_sample_cases(
    a: ModelVersion, b: ModelVersion
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Labeled cases neither version trained on: dated after both training periods ended.
    Returns (case ids, current labels, dates, a description)."""
    ends = [(v.metrics.get("train_period") or [None, None])[1] for v in (a, b)]
    if None in ends:
        return np.empty(0, np.int64), np.empty(0, object), np.empty(0, "datetime64[us]"), ""
    cutoff = max(ends)
    ids, labels, when = _labeled_after(a.project_id, cutoff + "T23:59:59Z")
    return ids, labels, when, f"labeled cases dated after {cutoff}"


def model_versions_compare(
    *, a: ModelVersion, b: ModelVersion, objective: Objective
) -> dict[str, Any]:
    """Both versions under the project's objective now, on the same cases where there are
    some that neither trained on, plus what each recorded when it was trained."""
    spec = objective.spec()
    classes = list(a.project.classes)
    ids, labels, when, described = _out_of_sample_cases(a, b)
    common: dict[str, Any] | None = None
    slices: list[list[dict]] = [[], []]
    recalls: list[float | None] = [None, None]
    positive = positive_index(spec, classes)
    if len(ids):
        values = []
        known = np.ones(len(ids), dtype=bool)
        predicted: list = []
        for version in (a, b):
            case_ids, proba = version_predictions_load(version)
            position, present = _rows_of(case_ids, ids)
            known &= present  # compare only the cases both versions predicted
            predicted.append((proba, position))
        ids, labels, when = ids[known], labels[known], when[known]
        for n, (version, (proba, position)) in enumerate(zip((a, b), predicted, strict=True)):
            here = proba[position[known]]
            threshold = threshold_for(version, spec)
            values.append(objective_value(spec, labels, here, classes, threshold))
            is_positive = labels == classes[positive]
            if is_positive.any():
                decided = decide(here[is_positive], threshold, positive)
                recalls[n] = float(np.mean(decided == positive))
            slices[n] = month_slices(
                when, labels, here, classes, spec, threshold, f"v{version.number}"
            )
        common = (
            None
            if not len(ids)
            else {
                "cases": len(ids),
                "described": described,
                "a": values[0],
                "b": values[1],
                "recall_a": recalls[0],
                "recall_b": recalls[1],
                "positive_class": classes[positive],
                "better": "a"
                if better(spec, values[0], values[1])
                else "b"
                if better(spec, values[1], values[0])
                else None,
            }
        )
    rows = []

    def metric(version: ModelVersion, key: str) -> Any:
        return version.metrics.get(key)

    for label, key in (
        ("Accuracy", "accuracy"),
        ("Balanced accuracy", "balanced_accuracy"),
        ("ROC AUC", "roc_auc"),
        ("PR AUC", "pr_auc"),
        ("Macro F1", "macro_f1"),
    ):
        rows.append({"label": label, "a": metric(a, key), "b": metric(b, key), "number": True})

    def chosen_under(v: ModelVersion) -> str:
        return (v.evaluation or {}).get("objective_label") or "Accuracy"

    same_objective = chosen_under(a) == chosen_under(b)
    for label, getter, kind in (
        ("Chosen under", chosen_under, "text"),
        (
            "Its objective, held-out" + ("" if same_objective else " (each its own)"),
            lambda v: v.objective_value,
            "number",
        ),
        (
            "Its objective, cross-validated" + ("" if same_objective else " (each its own)"),
            lambda v: v.metrics.get("cv_objective"),
            "number",
        ),
        ("Model family", lambda v: v.get_model_family_display(), "text"),
        (
            "Decision threshold",
            lambda v: f"{v.threshold:.3f}" if v.threshold is not None else "most probable class",
            "text",
        ),
        ("Trained on (cases)", lambda v: v.metrics.get("n_train"), "count"),
        ("Held-out cases", lambda v: v.metrics.get("n_test"), "count"),
        (
            "Held-out period",
            lambda v: " – ".join(v.metrics.get("test_period") or []) or "—",
            "text",
        ),
        (
            "Training window",
            lambda v: (
                f"last {months} months"
                if (months := (v.metrics.get("window") or {}).get("months"))
                else "all data"
            ),
            "text",
        ),
        ("Features", lambda v: len(v.training_run.feature_names), "count"),
        ("Seed", lambda v: v.training_run.seed, "text"),
    ):
        rows.append(
            {
                "label": label,
                "a": getter(a),
                "b": getter(b),
                "number": kind == "number",
                "count": kind == "count",
            }
        )
    return {
        "common": common,
        "rows": rows,
        "slices": slices,
        "features": _feature_difference(a, b, spec, common, slices),
    }


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _moved(before: float, after: float, greater_is_better: bool) -> str:
    """'raised … from 0.61 to 0.68' in the objective's direction (three decimals where two
    would not show the difference)."""
    digits = 2 if round(before, 2) != round(after, 2) else 3
    if round(before, digits) == round(after, digits):
        return f"left {{}} unchanged at {after:.{digits}f}"
    verb = "raised" if after > before else "lowered"
    good = (after > before) == greater_is_better
    return f"{verb} {{}} from {before:.{digits}f} to {after:.{digits}f}" + (
        "" if greater_is_better else f" ({'better' if good else 'worse'})"
    )


def _feature_difference(
    a: ModelVersion,
    b: ModelVersion,
    spec: ObjectiveSpec,
    common: dict[str, Any] | None,
    slices: list[list[dict]],
) -> dict[str, Any] | None:
    """What differs between the two versions' features (added, removed, derived features
    defined differently), and what it did: the objective on the cases neither trained on,
    pooled and per month, in a sentence ("adding egfr raised recall on the recent slice from
    0.61 to 0.68"). None when both read the same features the same way."""
    runs = (a.training_run, b.training_run)
    names = [list(r.feature_names) for r in runs]
    defined = [{d["name"]: d["expression"] for d in r.params.get("derived") or []} for r in runs]
    added = [n for n in names[1] if n not in names[0]]
    removed = [n for n in names[0] if n not in names[1]]
    changed = [n for n in names[0] if n in names[1] and defined[0].get(n) != defined[1].get(n)]
    if not (added or removed or changed):
        return None
    parts = []
    if added:
        parts.append(f"adding {_names(added)}")
    if removed:
        parts.append(f"removing {_names(removed)}")
    if changed:
        parts.append(f"redefining {_names(changed)}")
    change = " and ".join(parts)
    change = change[0].upper() + change[1:] + f" (v{a.number} → v{b.number})"
    metric = spec.describe()
    sentences = []
    if common and common["a"] is not None and common["b"] is not None:
        moved = _moved(common["a"], common["b"], spec.greater_is_better)
        sentences.append(
            f"{change} {moved.format(metric)} on the recent slice ({common['cases']:,} "
            f"{common['described']})."
        )
        if common.get("recall_a") is not None and common.get("recall_b") is not None:
            recall = _moved(common["recall_a"], common["recall_b"], True)
            sentences.append(
                f"On the same cases it {recall.format('recall of ' + common['positive_class'])}."
            )
    else:
        held = [v.objective_value for v in (a, b)]
        same = all(v.objective_id == a.objective_id for v in (a, b))
        if None not in held and same:
            moved = _moved(held[0], held[1], spec.greater_is_better)
            sentences.append(
                f"{change} {moved.format(metric)} on each version's own held-out cases (not "
                "the same cases: no labeled case lies after both training periods yet)."
            )
        else:
            sentences.append(
                f"{change}; no labeled case lies after both training periods yet to measure "
                "the effect on the same cases."
            )
    by_period: dict[str, dict[str, Any]] = {}
    for side, rows in zip(("a", "b"), slices, strict=True):
        for row in rows:
            entry = by_period.setdefault(row["period"], {"period": row["period"], "n": row["n"]})
            entry[side] = row["objective"]
            entry[f"{side}_undefined"] = row.get("undefined")
    per_slice = [by_period[p] for p in sorted(by_period)]
    for entry in per_slice:
        if entry.get("a") is not None and entry.get("b") is not None:
            entry["change"] = f"{entry['b'] - entry['a']:+.3f}"
    return {
        "added": [{"name": n, "expression": defined[1].get(n, "")} for n in added],
        "removed": [{"name": n, "expression": defined[0].get(n, "")} for n in removed],
        "changed": [
            {"name": n, "a": defined[0].get(n, ""), "b": defined[1].get(n, "")} for n in changed
        ],
        "feature_sets": [r.params.get("feature_set") for r in runs],
        "sentences": sentences,
        "slices": per_slice,
        "metric": metric,
    }


def threshold_for(version: ModelVersion, spec: ObjectiveSpec) -> float | None:
    """A version's threshold serves its own objective; under another objective the fair
    comparison is the most probable class."""
    same = version.objective_id and version.objective.spec() == spec
    default = (
        not version.objective_id
        and spec.metric == "accuracy"
        and spec.positive_class in ("", version.positive_class)
    )
    return version.threshold if same or default else None
