"""A month where the objective has no value (F2 with no case of the class of interest, ROC AUC
on one class): None with the reason, stored as JSON the same way twice, and drawn as a gap
with a note, never as a point at 0. No database."""

from __future__ import annotations

import json
import re

import numpy as np

from apps.modeling import charts
from apps.modeling.ml.objectives import (
    ObjectiveSpec,
    objective_scorer,
    objective_undefined,
    objective_value,
    threshold_choose,
)
from apps.modeling.ml.training import MIN_SLICE_CASES, month_slices

CLASSES = ["neg", "pos"]
F2 = ObjectiveSpec(metric="f_beta", positive_class="pos", beta=2.0)


def _three_months(seed: int = 0):
    """January and March with cases of both classes; February with none of `pos`, and some
    cases the model calls `pos` anyway (false positives: the 0/0 recall is the only gap)."""
    rng = np.random.default_rng(seed)
    months = np.repeat(np.array(["2024-01", "2024-02", "2024-03"], dtype="datetime64[M]"), 60)
    y = np.where(rng.random(180) < 0.3, "pos", "neg").astype(object)
    y[60:120] = "neg"
    score = np.clip(0.4 * (y == "pos") + rng.normal(0.3, 0.2, 180), 0, 1)
    score[60:65] = 0.9  # false positives in February
    proba = np.column_stack([1 - score, score])
    occurred = months.astype("datetime64[us]") + np.timedelta64(3, "D")
    return occurred, y, proba


def test_f_beta_without_a_case_of_the_class_is_undefined_not_zero():
    y = np.array(["neg"] * 30, dtype=object)
    proba = np.column_stack([np.full(30, 0.2), np.full(30, 0.8)])  # every case called pos
    assert objective_undefined(F2, y, CLASSES) == "no pos case"
    assert objective_value(F2, y, proba, CLASSES, threshold=0.5) is None
    assert objective_scorer(F2, y, CLASSES, threshold=0.5)(proba) is None
    # With a case of the class, a model that misses it scores a defined 0.
    y[0] = "pos"
    proba[:, 1] = 0.1
    proba[:, 0] = 0.9
    assert objective_undefined(F2, y, CLASSES) is None
    assert objective_value(F2, y, proba, CLASSES, threshold=0.5) == 0.0
    # No class of interest anywhere: no threshold can serve it.
    assert threshold_choose(F2, np.array(["neg"] * 30, dtype=object), proba, CLASSES) is None


def test_one_class_months_say_why_for_ranking_metrics():
    auc = ObjectiveSpec(metric="roc_auc", positive_class="pos")
    assert objective_undefined(auc, np.array(["pos"] * 5, dtype=object), CLASSES) == (
        "only pos cases"
    )
    assert objective_undefined(auc, np.array(["neg"] * 5, dtype=object), CLASSES) == ("no pos case")
    accuracy = ObjectiveSpec(metric="accuracy")
    assert objective_undefined(accuracy, np.array(["neg"] * 5, dtype=object), CLASSES) is None


def test_month_slices_give_none_with_the_reason_and_store_the_same_json_twice():
    occurred, y, proba = _three_months()
    rows = month_slices(occurred, y, proba, CLASSES, F2, 0.5, "held-out")
    by_month = {row["period"]: row for row in rows}
    february = by_month["2024-02"]
    assert february["positives"] == 0
    assert february["objective"] is None
    assert february["undefined"] == "not defined: no pos case that month"
    for month in ("2024-01", "2024-03"):
        assert isinstance(by_month[month]["objective"], float)
        assert by_month[month]["undefined"] is None
    # JSON with null, not NaN (which json.dumps writes as the non-JSON token NaN, and which
    # is not equal to itself, so a reproduced run would never match its original).
    text = json.dumps(rows, allow_nan=False)
    again = month_slices(occurred, y, proba, CLASSES, F2, 0.5, "held-out")
    assert json.loads(text) == again
    # A month with too few cases is counted and says so.
    few = month_slices(occurred[:5], y[:5], proba[:5], CLASSES, F2, 0.5, "held-out")
    assert few[0]["objective"] is None
    assert few[0]["undefined"] == f"not scored: only 5 cases, fewer than {MIN_SLICE_CASES}"


def _points_and_lines(svg: str) -> tuple[list[float], list[str]]:
    circles = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    return circles, re.findall(r'<polyline points="([^"]+)"', svg)


def test_the_chart_draws_an_undefined_month_as_a_gap_and_says_why():
    occurred, y, proba = _three_months()
    rows = month_slices(occurred, y, proba, CLASSES, F2, 0.5, "held-out")
    html = str(charts.slices_chart([("held-out", rows)], "F2 (pos)"))
    circles, lines = _points_and_lines(html)
    assert len(circles) == 2  # January and March; no point for February
    assert len(lines) == 0  # the line is broken at February: two lone points
    assert "<title>2024-02: F2 (pos) not defined: no pos case that month</title>" in html
    assert 'class="gap"' in html
    assert (
        "Gaps, not zeros, where F2 (pos) has no value: 2024-02, not defined: no pos case "
        "that month." in html
    )


def test_the_chart_marks_no_gap_where_another_line_has_a_value():
    occurred, y, proba = _three_months()
    held_out = month_slices(occurred, y, proba, CLASSES, F2, 0.5, "held-out")
    other = [dict(row, objective=0.5, undefined=None, source="v2") for row in held_out]
    html = str(charts.slices_chart([("v1", held_out), ("v2", other)], "F2 (pos)"))
    assert 'class="gap"' not in html
    assert "has no value: 2024-02, v1 — not defined: no pos case that month." in html
    # Rows stored before months said why are still drawn as gaps, with a plain reason.
    legacy = [{k: v for k, v in row.items() if k != "undefined"} for row in held_out]
    assert "2024-02, no value." in str(charts.slices_chart([("held-out", legacy)], "F2"))
