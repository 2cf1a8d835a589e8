"""Properties of the demo data sets that the rest of Casebook and the benchmarks rely on."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from apps.workbench.demo_data import (
    DATASETS,
    DemoDataset,
    breast_cancer,
    heart_failure,
)

RESERVED = {"external_id", "occurred_at", "label"}
HF_LABS_WITH_MISSING = ["nt_pro_bnp", "creatinine", "egfr", "hemoglobin", "ejection_fraction"]


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def bc() -> DemoDataset:
    return breast_cancer()


@pytest.fixture(scope="module")
def hf() -> DemoDataset:
    return heart_failure()


@pytest.fixture(scope="module", params=["breast_cancer", "heart_failure"])
def dataset(request: pytest.FixtureRequest, bc: DemoDataset, hf: DemoDataset) -> DemoDataset:
    return {"breast_cancer": bc, "heart_failure": hf}[request.param]


def true_label_series(ds: DemoDataset) -> pd.Series:
    return ds.cases["external_id"].map(ds.true_labels)


# --- shared properties -----------------------------------------------------------------------


def test_registry_lists_both_generators() -> None:
    assert set(DATASETS) == {"breast_cancer", "heart_failure"}
    assert DATASETS["breast_cancer"] is breast_cancer
    assert DATASETS["heart_failure"] is heart_failure


def test_columns_are_reserved_plus_features_in_order(dataset: DemoDataset) -> None:
    names = [f.name for f in dataset.features]
    assert list(dataset.cases.columns) == ["external_id", "occurred_at", *names, "label"]
    assert len(set(names)) == len(names)
    assert not set(names) & RESERVED
    for name in names:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


def test_column_types(dataset: DemoDataset) -> None:
    cases = dataset.cases
    assert cases["external_id"].map(type).eq(str).all()
    assert cases["label"].map(type).eq(str).all()
    assert isinstance(cases["occurred_at"].dtype, pd.DatetimeTZDtype)
    assert str(cases["occurred_at"].dt.tz) == "UTC"
    for feature in dataset.features:
        assert cases[feature.name].dtype == np.float64, feature.name


def test_ids_unique_and_true_labels_cover_every_case(dataset: DemoDataset) -> None:
    ids = dataset.cases["external_id"]
    assert ids.is_unique
    assert set(dataset.true_labels) == set(ids)
    assert set(dataset.true_labels.values()) == set(dataset.classes)
    assert set(dataset.cases["label"]) <= {*dataset.classes, ""}
    assert dataset.description.strip()


def test_flipped_labels_are_exactly_the_wrong_ones(dataset: DemoDataset) -> None:
    cases = dataset.cases
    truth = true_label_series(dataset)
    labeled = cases["label"] != ""
    flipped = cases["external_id"].isin(dataset.flipped_external_ids)

    assert len(set(dataset.flipped_external_ids)) == len(dataset.flipped_external_ids)
    assert not (flipped & ~labeled).any(), "an unlabeled case cannot have a flipped label"
    assert (cases.loc[flipped, "label"] != truth[flipped]).all()
    assert (cases.loc[labeled & ~flipped, "label"] == truth[labeled & ~flipped]).all()


@pytest.mark.parametrize(
    ("make", "flip_share"),
    [(breast_cancer, 0.10), (breast_cancer, 0.25), (heart_failure, 0.02), (heart_failure, 0.05)],
)
def test_flip_count_matches_share(make, flip_share: float) -> None:
    ds = make(flip_share=flip_share)
    n_labeled = int((ds.cases["label"] != "").sum())
    assert len(ds.flipped_external_ids) == round(flip_share * n_labeled)
    assert len(ds.flipped_external_ids) > 0


def test_flip_share_does_not_change_which_cases_are_labeled() -> None:
    # Benchmarks compare flip rates; they must be comparing the same labeling queue.
    clean = breast_cancer(flip_share=0.0)
    noisy = breast_cancer(flip_share=0.3)
    assert clean.flipped_external_ids == []
    pd.testing.assert_series_equal(clean.cases["label"] == "", noisy.cases["label"] == "")
    labeled = clean.cases["label"] != ""
    truth = true_label_series(clean)
    assert (clean.cases.loc[labeled, "label"] == truth[labeled]).all()


# --- determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [breast_cancer, heart_failure])
def test_same_seed_gives_identical_data(make) -> None:
    first, second = make(), make()
    pd.testing.assert_frame_equal(first.cases, second.cases)
    assert first.flipped_external_ids == second.flipped_external_ids
    assert first.true_labels == second.true_labels


@pytest.mark.parametrize("make", [breast_cancer, heart_failure])
def test_different_seed_gives_different_labels(make) -> None:
    # Guards the determinism test against a generator that ignores its seed.
    assert make(seed=1).flipped_external_ids != make(seed=2).flipped_external_ids


# --- breast cancer ---------------------------------------------------------------------------


def test_breast_cancer_has_all_real_cases(bc: DemoDataset) -> None:
    raw = load_breast_cancer()
    assert len(bc.cases) == 569
    assert len(bc.features) == 30
    assert bc.classes == ["benign", "malignant"]
    assert bc.cases["external_id"].iloc[0] == "wdbc-0001"
    assert bc.cases["external_id"].iloc[-1] == "wdbc-0569"
    np.testing.assert_array_equal(bc.cases[[f.name for f in bc.features]].to_numpy(), raw.data)


def test_breast_cancer_class_mapping(bc: DemoDataset) -> None:
    raw = load_breast_cancer()
    # sklearn: target 0 = malignant, 1 = benign.
    truth = true_label_series(bc).to_numpy()
    assert (truth[raw.target == 0] == "malignant").all()
    assert (truth[raw.target == 1] == "benign").all()
    assert (truth == "malignant").sum() == 212
    assert (truth == "benign").sum() == 357
    assert bc.true_labels["wdbc-0001"] == "malignant"  # first sklearn row is malignant


def test_breast_cancer_features_are_named_and_grouped(bc: DemoDataset) -> None:
    by_name = {f.name: f for f in bc.features}
    assert by_name["mean_radius"].group == "mean"
    assert by_name["radius_error"].group == "error"
    assert by_name["worst_concave_points"].group == "worst"
    assert by_name["mean_fractal_dimension"].group == "mean"
    groups = pd.Series([f.group for f in bc.features]).value_counts().to_dict()
    assert groups == {"mean": 10, "error": 10, "worst": 10}
    # The data set does not document units, so none are claimed.
    assert all(f.unit == "" for f in bc.features)
    assert all(f.description for f in bc.features)


def test_breast_cancer_has_no_dates_and_a_labeling_queue(bc: DemoDataset) -> None:
    assert bc.cases["occurred_at"].isna().all()
    n_labeled = int((bc.cases["label"] != "").sum())
    assert n_labeled == round(0.7 * 569)
    assert len(bc.flipped_external_ids) == round(0.10 * n_labeled)
    assert len(breast_cancer(labeled_share=0.5).cases.query("label != ''")) == round(0.5 * 569)


# --- heart failure ---------------------------------------------------------------------------


def test_heart_failure_size_ids_and_classes(hf: DemoDataset) -> None:
    assert len(hf.cases) == 20_000
    assert hf.classes == ["no_heart_failure", "heart_failure"]
    assert hf.cases["external_id"].iloc[0] == "hf-000001"
    assert hf.cases["external_id"].iloc[-1] == "hf-020000"
    assert 12 <= len(hf.features) <= 15
    for feature in hf.features:
        assert feature.unit and feature.group and feature.description, feature.name
    assert len(heart_failure(n_patients=500).cases) == 500


def test_heart_failure_prevalence(hf: DemoDataset) -> None:
    prevalence = (true_label_series(hf) == "heart_failure").mean()
    assert 0.02 <= prevalence <= 0.045


def test_heart_failure_dates_span_two_years(hf: DemoDataset) -> None:
    occurred = hf.cases["occurred_at"]
    assert occurred.notna().all()
    assert occurred.min() >= utc("2024-01-01")
    assert occurred.max() < utc("2026-01-01")
    assert occurred.is_monotonic_increasing  # ids are chronological
    months = occurred.dt.tz_localize(None).dt.to_period("M")
    counts = months.value_counts()
    assert len(counts) == 24
    assert counts.min() > 0.5 * counts.mean(), "cases should be spread over the whole period"


def test_heart_failure_missing_values(hf: DemoDataset) -> None:
    missing = hf.cases[[f.name for f in hf.features]].isna().mean()
    for name in HF_LABS_WITH_MISSING:
        assert 0.015 <= missing[name] <= 0.06, (name, missing[name])
    others = missing.drop(HF_LABS_WITH_MISSING)
    assert (others == 0).all(), others[others > 0]
    assert 0.02 <= missing[HF_LABS_WITH_MISSING].mean() <= 0.05


def test_heart_failure_recent_months_are_unlabeled(hf: DemoDataset) -> None:
    recent = hf.cases["occurred_at"] >= utc("2025-09-01")
    assert recent.sum() > 0
    assert (hf.cases.loc[recent, "label"] == "").all()
    assert (hf.cases.loc[~recent, "label"] != "").all()
    assert not hf.cases.loc[recent, "external_id"].isin(hf.flipped_external_ids).any()


def test_model_trained_on_old_cases_is_stale_on_recent_ones(hf: DemoDataset) -> None:
    cases = hf.cases
    names = [f.name for f in hf.features]
    y = (true_label_series(hf) == "heart_failure").astype(int)
    occurred = cases["occurred_at"]
    train = occurred < utc("2025-05-01")
    before = (occurred >= utc("2025-05-01")) & (occurred < utc("2025-09-01"))
    recent = occurred >= utc("2025-09-01")

    model = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=1000)
    )
    model.fit(cases.loc[train, names], y[train])
    auc_before = roc_auc_score(y[before], model.predict_proba(cases.loc[before, names])[:, 1])
    auc_recent = roc_auc_score(y[recent], model.predict_proba(cases.loc[recent, names])[:, 1])

    assert auc_before >= 0.75, "the task must be learnable before the shift"
    assert auc_before - auc_recent >= 0.05, (auc_before, auc_recent)
