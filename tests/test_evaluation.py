"""Objectives, thresholds, model selection, time slices and the figures behind the alerts,
checked against scikit-learn and small hand-worked examples. No database."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    fbeta_score,
    roc_auc_score,
)

from apps.modeling.ml.monitoring import degenerate, population_stability, staleness
from apps.modeling.ml.objectives import (
    ObjectiveError,
    ObjectiveSpec,
    decide,
    objective_check,
    objective_value,
    threshold_choose,
)
from apps.modeling.ml.training import (
    MODEL_FAMILIES,
    TrainingError,
    train_and_evaluate,
    window_select,
)

CLASSES = ["neg", "pos"]


def _binary(n: int = 400, seed: int = 0, prevalence: float = 0.2):
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < prevalence, "pos", "neg").astype(object)
    score = np.clip(0.35 * (y == "pos") + rng.normal(0.3, 0.2, n), 0, 1)
    proba = np.column_stack([1 - score, score])
    return y, proba


@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        ("accuracy", lambda y, p: accuracy_score(y, np.where(p[:, 1] >= 0.5, "pos", "neg"))),
        (
            "balanced_accuracy",
            lambda y, p: balanced_accuracy_score(y, np.where(p[:, 1] >= 0.5, "pos", "neg")),
        ),
        ("roc_auc", lambda y, p: roc_auc_score(y == "pos", p[:, 1])),
        ("pr_auc", lambda y, p: average_precision_score(y == "pos", p[:, 1])),
    ],
)
def test_objectives_agree_with_scikit_learn(metric, reference):
    y, proba = _binary()
    spec = ObjectiveSpec(metric=metric, positive_class="pos")
    assert objective_value(spec, y, proba, CLASSES, threshold=0.5) == pytest.approx(
        reference(y, proba)
    )


def test_f_beta_weighs_recall_as_asked():
    y, proba = _binary()
    decided = proba[:, 1] >= 0.4
    for beta in (0.5, 1.0, 2.0):
        spec = ObjectiveSpec(metric="f_beta", positive_class="pos", beta=beta)
        assert objective_value(spec, y, proba, CLASSES, threshold=0.4) == pytest.approx(
            fbeta_score(y == "pos", decided, beta=beta)
        )


def test_hand_worked_recall_at_precision_precision_at_k_and_expected_cost():
    y = np.array(["pos", "pos", "neg", "pos", "neg", "neg"], dtype=object)
    p_pos = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    proba = np.column_stack([1 - p_pos, p_pos])
    # Ranked: pos pos neg pos neg neg. Precision stays >= 0.75 down to the 4th case (3/4),
    # where all three positives are found: recall 1.0. At precision 1.0 only 2 of 3.
    at_75 = ObjectiveSpec(metric="recall_at_precision", positive_class="pos", min_precision=0.75)
    at_100 = ObjectiveSpec(metric="recall_at_precision", positive_class="pos", min_precision=1.0)
    assert objective_value(at_75, y, proba, CLASSES) == pytest.approx(1.0)
    assert objective_value(at_100, y, proba, CLASSES) == pytest.approx(2 / 3)
    # Precision at 3: pos pos neg.
    at_3 = ObjectiveSpec(metric="precision_at_k", positive_class="pos", k=3)
    assert objective_value(at_3, y, proba, CLASSES) == pytest.approx(2 / 3)
    # Missing a positive costs 10, a false alarm 1. Threshold 0.65: decided pos for the top
    # three: one false alarm (cost 1), one missed positive (0.6 < 0.65, cost 10): 11 / 6.
    cost = ObjectiveSpec(
        metric="expected_cost", positive_class="pos", cost_matrix=[[0, 1], [10, 0]]
    )
    assert objective_value(cost, y, proba, CLASSES, threshold=0.65) == pytest.approx(11 / 6)
    # The chosen threshold catches every positive (cost 1 + 1 at most) instead.
    best = threshold_choose(cost, y, proba, CLASSES)
    assert objective_value(cost, y, proba, CLASSES, threshold=best) <= 2 / 6
    assert not ObjectiveSpec(metric="expected_cost").greater_is_better


def test_the_threshold_follows_the_objective():
    y, proba = _binary(n=2000, prevalence=0.1, seed=3)
    recall_heavy = ObjectiveSpec(metric="f_beta", positive_class="pos", beta=3.0)
    precise = ObjectiveSpec(metric="f_beta", positive_class="pos", beta=0.3)
    t_recall = threshold_choose(recall_heavy, y, proba, CLASSES)
    t_precise = threshold_choose(precise, y, proba, CLASSES)
    assert t_recall < t_precise
    for spec, t in ((recall_heavy, t_recall), (precise, t_precise)):
        assert objective_value(spec, y, proba, CLASSES, t) >= objective_value(
            spec, y, proba, CLASSES, 0.5
        )
    target = ObjectiveSpec(metric="recall_at_precision", positive_class="pos", min_precision=0.6)
    t = threshold_choose(target, y, proba, CLASSES)
    decided = proba[:, 1] >= t
    assert np.mean(y[decided] == "pos") >= 0.6
    # Ranking metrics need no threshold: the decision stays the most probable class.
    assert threshold_choose(ObjectiveSpec(metric="roc_auc"), y, proba, CLASSES) is None


def test_decide_gives_the_positive_class_at_its_threshold_and_argmax_otherwise():
    proba = np.array([[0.5, 0.2, 0.3], [0.6, 0.1, 0.3], [0.1, 0.2, 0.7]])
    assert decide(proba, None, 2).tolist() == [0, 0, 2]
    assert decide(proba, 0.25, 2).tolist() == [2, 2, 2]
    assert decide(proba, 0.8, 2).tolist() == [0, 0, 1]  # not positive: best of the others


def test_bad_objectives_are_refused_with_the_reason():
    with pytest.raises(ObjectiveError, match="not one of the project's classes"):
        objective_check(ObjectiveSpec(metric="roc_auc", positive_class="maybe"), CLASSES)
    with pytest.raises(ObjectiveError, match="must be 2×2"):
        objective_check(ObjectiveSpec(metric="expected_cost", cost_matrix=[[0, 1]]), CLASSES)
    with pytest.raises(ObjectiveError, match="non-negative"):
        objective_check(
            ObjectiveSpec(metric="expected_cost", cost_matrix=[[0, -1], [1, 0]]), CLASSES
        )
    with pytest.raises(ObjectiveError, match="Unknown metric"):
        objective_check(ObjectiveSpec(metric="vibes"), CLASSES)


def test_population_stability_flags_a_unit_change_and_not_a_resample():
    rng = np.random.default_rng(1)
    reference = rng.lognormal(6, 1, 5000)
    same = rng.lognormal(6, 1, 5000)
    new_unit = rng.lognormal(6, 1, 5000) / 8.457  # pg/mL reported as pmol/L
    assert population_stability(reference, same) < 0.02
    assert population_stability(reference, new_unit) > 1.0
    # Missing values are a bin of their own: more missing is a shift too.
    gappy = same.copy()
    gappy[:1500] = np.nan
    assert population_stability(reference, gappy) > 0.25


def test_population_stability_by_hand():
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    current = np.array([1.0, 1.0, 1.0, 4.0])
    value = population_stability(reference, current, bins=2)
    # Bins at the median 2.5: reference 1/2, 1/2; current 3/4, 1/4; no missing (floored).
    expected = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert value == pytest.approx(expected, abs=1e-6)


def _side(value: float | None, n: int = 100) -> dict:
    return {"value": value, "n": n, "periods": ["2025-01", "2025-03"], "what": "cases"}


def test_staleness_compares_the_recent_objective_with_the_older_one():
    found = staleness(_side(0.75), _side(0.86), True, 0.05)
    assert found["stale"] and found["drop"] == pytest.approx(0.11)
    assert not staleness(_side(0.84), _side(0.86), True, 0.05)["stale"]
    # Lower is better for a cost: a rise is the drop.
    assert staleness(_side(1.5), _side(1.0), False, 0.2)["stale"]
    assert not staleness(_side(0.9), _side(1.0), False, 0.2)["stale"]
    # Too few cases, or an undefined objective (one class only): no verdict.
    assert staleness(_side(0.5, n=5), _side(0.9), True, 0.05) is None
    assert staleness(_side(None), _side(0.9), True, 0.05) is None


def test_a_degenerate_model_is_named():
    assert degenerate({"neg": 0.995, "pos": 0.005}, {"neg": 1.0, "pos": 0.1})["kind"] == "one_class"
    assert degenerate({"neg": 0.9, "pos": 0.1}, {"neg": 0.99, "pos": 0.02})["classes"] == ["pos"]
    assert degenerate({"neg": 0.8, "pos": 0.2}, {"neg": 0.9, "pos": 0.6}) is None


def test_window_counts_months_back_from_the_newest_case():
    dates = np.array(
        ["2025-01-15", "2025-06-30", "2025-07-01", "2025-08-20", "NaT"], dtype="datetime64[us]"
    )
    assert window_select(dates, 2).tolist() == [2, 3]  # July and August
    assert window_select(dates, None).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(TrainingError, match="dated cases"):
        window_select(np.array(["NaT"], dtype="datetime64[us]"), 3)


def _dated_problem(n: int = 900, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] ** 2 - 1.0
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "pos", "neg").astype(object)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    occurred = start + (np.sort(rng.integers(0, 365 * 24 * 3600, n)) * 1_000_000).astype(
        "timedelta64[us]"
    )
    return X, y, occurred


def test_auto_picks_the_family_with_the_best_cross_validated_objective():
    X, y, occurred = _dated_problem()
    objective = ObjectiveSpec(metric="roc_auc", positive_class="pos")
    result = train_and_evaluate(
        X,
        y,
        occurred,
        CLASSES,
        {"model_family": "auto", "cv_folds": 3},
        seed=0,
        objective=objective,
    )
    families = result.evaluation["cross_validation"]["families"]
    assert set(families) == set(MODEL_FAMILIES)
    best = max(families, key=lambda f: families[f]["mean"])
    assert result.model_family == best
    assert result.metrics["objective"] == pytest.approx(result.metrics["roc_auc"])
    # Every month of the training part is scored out-of-fold, every later one held-out.
    sources = {s["source"] for s in result.evaluation["slices"]}
    assert sources == {"cross-validation", "held-out"}
    periods = [s["period"] for s in result.evaluation["slices"]]
    assert len(set(periods)) == 12
    curves = result.evaluation["curves"]
    assert curves["class"] == "pos" and curves["roc"]["fpr"][0] == 0.0
    assert len(curves["calibration"]["predicted"]) <= 10


def test_the_same_snapshot_and_seed_give_the_same_model():
    X, y, occurred = _dated_problem(seed=4)
    params = {"model_family": "random_forest", "hyperparameters": {"n_estimators": 30}}
    first = train_and_evaluate(X, y, occurred, CLASSES, params, seed=7)
    again = train_and_evaluate(X, y, occurred, CLASSES, params, seed=7)
    other = train_and_evaluate(X, y, occurred, CLASSES, params, seed=8)
    assert np.array_equal(first.pipeline.predict_proba(X), again.pipeline.predict_proba(X))
    assert not np.array_equal(first.pipeline.predict_proba(X), other.pipeline.predict_proba(X))
    assert first.threshold == again.threshold


@pytest.mark.parametrize("seed", range(40))
def test_the_time_split_is_a_stable_sort_by_date(seed):
    """The partition that cuts the time split gives exactly what sorting by date (ties in case
    order, undated cases first) would: the same cases train, the same are held out."""
    from apps.modeling.ml.training import split_holdout

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 500))
    start = np.datetime64("2024-01-01T00:00:00", "us")
    days = rng.integers(0, int(rng.integers(1, 30)), n)  # few distinct dates: many ties
    occurred = start + days.astype("timedelta64[D]").astype("timedelta64[us]")
    occurred[rng.random(n) < 0.05] = np.datetime64("NaT")
    if (~np.isnat(occurred)).mean() < 0.9:
        occurred[np.isnat(occurred)] = start
    y = np.array(["a", "b"] * n, dtype=object)[:n]
    for fraction in (0.01, 0.2, 0.5, 0.99):
        train, test, split = split_holdout(occurred, y, fraction, seed=0)
        n_test = max(1, round(n * fraction))
        by_date = np.where(np.isnat(occurred), np.datetime64("1900-01-01"), occurred)
        order = np.argsort(by_date, kind="stable")
        assert split == "time"
        np.testing.assert_array_equal(train, np.sort(order[: n - n_test]))
        np.testing.assert_array_equal(test, np.sort(order[n - n_test :]))


@pytest.mark.parametrize("seed", range(12))
def test_the_fold_imputer_computes_what_scikit_learns_median_imputer_does(seed):
    from sklearn.impute import SimpleImputer

    from apps.modeling.ml.training import FoldMedianImputer

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    X = np.round(rng.normal(size=(n, 6)) * 10.0 ** rng.uniform(-2, 3, 6), 4)
    X[rng.random(X.shape) < rng.uniform(0, 0.5)] = np.nan
    X[:, 2] = np.nan  # a column with no value at all
    X[:, 3] = np.round(X[:, 3])  # many ties
    later = np.round(rng.normal(size=(50, 6)) * 100, 2)
    later[rng.random(later.shape) < 0.3] = np.nan
    theirs = SimpleImputer(strategy="median", keep_empty_features=True).fit(X)
    ours = FoldMedianImputer().fit(X)
    np.testing.assert_array_equal(ours.statistics_, theirs.statistics_)
    for data in (X, later):
        np.testing.assert_array_equal(ours.transform(data), theirs.transform(data))
    assert np.isnan(later).any()  # the caller's matrix keeps its gaps
    ours.transform(later)
    assert np.isnan(later).any()


@pytest.mark.parametrize("family", ["logistic_regression", "random_forest"])
def test_cross_validation_folds_give_what_the_plain_pipeline_gives(family, monkeypatch):
    from apps.modeling.ml import training

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.where(np.nan_to_num(X[:, 0]) + rng.normal(0, 0.5, 300) > 0, "pos", "neg").astype(object)
    params = {"model_family": family, "n_estimators": 20}
    assert isinstance(training.fold_pipeline(params, 3, family)[0], training.FoldMedianImputer)
    fast, folds = training.out_of_fold(X, y, CLASSES, params, 3, family, 5)
    monkeypatch.setattr(training, "fold_pipeline", training.build_pipeline)
    plain, same_folds = training.out_of_fold(X, y, CLASSES, params, 3, family, 5)
    np.testing.assert_array_equal(folds, same_folds)
    np.testing.assert_array_equal(fast, plain)


def test_cross_validation_on_class_positions_gives_what_it_gives_on_names():
    from apps.modeling.ml.objectives import ObjectiveSpec, class_indices
    from apps.modeling.ml.training import cross_validate

    rng = np.random.default_rng(9)
    X = rng.normal(size=(900, 3))
    y = np.where(X[:, 0] + rng.normal(0, 1, 900) > 1.0, "pos", "neg").astype(object)
    params = {"model_family": "logistic_regression", "cv_max_cases": 400, "cv_folds": 4}
    args = (X, y, CLASSES, params, 11, ObjectiveSpec(), ("logistic_regression",), lambda *a: None)
    by_name, used_by_name = cross_validate(*args)
    by_code, used_by_code = cross_validate(*args, class_indices(y, CLASSES))
    np.testing.assert_array_equal(used_by_name, used_by_code)
    a, b = by_name["families"]["logistic_regression"], by_code["families"]["logistic_regression"]
    assert by_name["folds"] == by_code["folds"] == 4 and len(used_by_name) == 400
    assert a["threshold"] == b["threshold"] and a["per_fold"] == b["per_fold"]
    np.testing.assert_array_equal(a["_proba"], b["_proba"])
