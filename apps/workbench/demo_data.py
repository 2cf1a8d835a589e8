"""Demo data sets for Casebook.

Two data sets let people try the workbench without bringing their own data:

* ``breast_cancer``: the real Wisconsin Diagnostic Breast Cancer cases that ship with
  scikit-learn. Part of the labels are hidden (they form the clinicians' labeling queue) and a
  known share of the remaining labels is deliberately flipped, so that error finding can be
  measured against ground truth.
* ``heart_failure``: a synthetic, fully deterministic cohort for "heart failure within one
  year". From ``HEART_FAILURE_SHIFT_START`` (2025-09-01) the lab reports NT-proBNP with a new
  assay in pmol/L instead of pg/mL, in the same column and without any flag. A model trained
  on older cases therefore ranks recent cases clearly worse, a drift the workbench should help
  people notice. The recent cases are also the unlabeled ones, as they would be in a hospital
  where one-year outcomes are not known yet.

Every data set keeps the true label of every case (``true_labels``) and the list of
deliberately flipped cases, so tests and benchmarks can score error finding exactly.

This module must stay free of Django imports: benchmarks and notebooks use it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

RESERVED_COLUMNS: tuple[str, ...] = ("external_id", "occurred_at", "label")
UNLABELED = ""

HEART_FAILURE_START = pd.Timestamp("2024-01-01", tz="UTC")
HEART_FAILURE_END = pd.Timestamp("2026-01-01", tz="UTC")  # exclusive
HEART_FAILURE_SHIFT_START = pd.Timestamp("2025-09-01", tz="UTC")
HEART_FAILURE_PREVALENCE = 0.03

# pmol/L = pg/mL / 8.457 for NT-proBNP (molar mass of about 8.5 kDa).
NT_PRO_BNP_PG_PER_PMOL = 8.457


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    unit: str = ""
    group: str = ""
    description: str = ""


@dataclass(frozen=True)
class DemoDataset:
    name: str
    description: str
    classes: list[str]
    features: list[FeatureSpec]
    cases: pd.DataFrame
    flipped_external_ids: list[str]
    true_labels: dict[str, str]


def _child_rngs(seed: int, n: int) -> list[np.random.Generator]:
    # Independent streams per step, so that e.g. changing flip_share does not change which
    # cases are hidden from the labels, or how dates are drawn when the features change.
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _flip_labels(
    true_labels: np.ndarray,
    labeled: np.ndarray,
    classes: list[str],
    flip_share: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (observed labels, boolean mask of flipped cases).

    Flips are drawn uniformly among labeled cases, not per class, so in an imbalanced cohort
    most flips turn true negatives into (false) positives.
    """
    if not 0.0 <= flip_share <= 1.0:
        raise ValueError(f"flip_share must be in [0, 1], got {flip_share}")
    if len(classes) != 2:
        raise ValueError("label flipping is only defined for two classes")
    labeled_idx = np.flatnonzero(labeled)
    n_flip = round(flip_share * len(labeled_idx))
    flip_idx = rng.choice(labeled_idx, size=n_flip, replace=False)
    flipped = np.zeros(len(true_labels), dtype=bool)
    flipped[flip_idx] = True

    other = {classes[0]: classes[1], classes[1]: classes[0]}
    observed = np.where(labeled, true_labels, UNLABELED).astype(object)
    observed[flipped] = [other[label] for label in true_labels[flipped]]
    return observed, flipped


def _assemble(
    external_ids: list[str],
    occurred_at: pd.Series,
    features: list[FeatureSpec],
    values: dict[str, np.ndarray],
    observed: np.ndarray,
) -> pd.DataFrame:
    collisions = {f.name for f in features} & set(RESERVED_COLUMNS)
    if collisions:
        raise ValueError(f"feature names collide with reserved columns: {sorted(collisions)}")
    frame = pd.DataFrame(
        {
            "external_id": pd.Series(external_ids, dtype=str),
            "occurred_at": occurred_at.reset_index(drop=True),
            **{f.name: np.asarray(values[f.name], dtype=np.float64) for f in features},
            "label": pd.Series(list(observed), dtype=str),
        }
    )
    return frame


# --------------------------------------------------------------------------------------------
# Breast cancer (real data)
# --------------------------------------------------------------------------------------------

# Wording follows the data set's own documentation (sklearn DESCR / UCI). Units are not
# documented there (values come from digitised images), so no units are given.
_WDBC_BASE_DESCRIPTIONS: dict[str, str] = {
    "radius": "radius (mean of distances from centre to points on the perimeter)",
    "texture": "texture (standard deviation of grey-scale values)",
    "perimeter": "perimeter",
    "area": "area",
    "smoothness": "smoothness (local variation in radius lengths)",
    "compactness": "compactness (perimeter² / area - 1.0)",
    "concavity": "concavity (severity of concave portions of the contour)",
    "concave points": "concave points (number of concave portions of the contour)",
    "symmetry": "symmetry",
    "fractal dimension": "fractal dimension ('coastline approximation' - 1)",
}

_WDBC_GROUP_PREFIXES: dict[str, str] = {
    "mean": "Mean over the cell nuclei in the image of the",
    "error": "Standard error over the cell nuclei in the image of the",
    "worst": "Mean of the three largest values in the image of the",
}


def _wdbc_feature(raw_name: str) -> FeatureSpec:
    if raw_name.startswith("mean "):
        group, base = "mean", raw_name.removeprefix("mean ")
    elif raw_name.startswith("worst "):
        group, base = "worst", raw_name.removeprefix("worst ")
    elif raw_name.endswith(" error"):
        group, base = "error", raw_name.removesuffix(" error")
    else:  # a future sklearn renaming should fail loudly rather than produce odd groups
        raise ValueError(f"unexpected breast cancer feature name: {raw_name!r}")
    return FeatureSpec(
        name=raw_name.strip().lower().replace(" ", "_"),
        unit="",
        group=group,
        description=f"{_WDBC_GROUP_PREFIXES[group]} {_WDBC_BASE_DESCRIPTIONS[base]}.",
    )


def breast_cancer(
    seed: int = 7, labeled_share: float = 0.7, flip_share: float = 0.10
) -> DemoDataset:
    """The 569 Wisconsin Diagnostic Breast Cancer cases, partly unlabeled, partly mislabeled."""
    # Imported lazily: sklearn is slow to import and only this data set needs it.
    from sklearn.datasets import load_breast_cancer

    if not 0.0 <= labeled_share <= 1.0:
        raise ValueError(f"labeled_share must be in [0, 1], got {labeled_share}")

    raw = load_breast_cancer()
    classes = ["benign", "malignant"]
    # sklearn encodes 0 = malignant, 1 = benign; go through target_names instead of trusting
    # the integer order so a change there cannot silently swap the classes.
    true = np.asarray(raw.target_names, dtype=object)[raw.target]
    n = len(true)

    features = [_wdbc_feature(str(name)) for name in raw.feature_names]
    values = {f.name: raw.data[:, i] for i, f in enumerate(features)}
    external_ids = [f"wdbc-{i + 1:04d}" for i in range(n)]

    label_rng, flip_rng = _child_rngs(seed, 2)
    n_labeled = round(labeled_share * n)
    labeled = np.zeros(n, dtype=bool)
    labeled[label_rng.choice(n, size=n_labeled, replace=False)] = True
    observed, flipped = _flip_labels(true, labeled, classes, flip_share, flip_rng)

    # The data set carries no dates; NaT keeps the column type stable for the importer.
    occurred_at = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    cases = _assemble(external_ids, occurred_at, features, values, observed)

    description = (
        "Wisconsin Diagnostic Breast Cancer data: 569 real fine-needle aspirates of breast "
        "masses from the University of Wisconsin Hospitals, each described by 30 measurements "
        "of the cell nuclei in a digitised image (mean, standard error and worst value of ten "
        "properties such as radius, texture and concavity). The diagnosis is benign or "
        f"malignant. {n - n_labeled} cases have no label yet and wait in the labeling queue; "
        f"of the {n_labeled} labeled cases, {int(flipped.sum())} carry a deliberately wrong "
        "label so you can try finding label errors."
    )
    return DemoDataset(
        name="Breast cancer (WDBC)",
        description=description,
        classes=classes,
        features=features,
        cases=cases,
        flipped_external_ids=[external_ids[i] for i in np.flatnonzero(flipped)],
        true_labels=dict(zip(external_ids, (str(t) for t in true), strict=True)),
    )


# --------------------------------------------------------------------------------------------
# Heart failure (synthetic)
# --------------------------------------------------------------------------------------------

_HF_FEATURES: list[FeatureSpec] = [
    FeatureSpec("age", "years", "demographics", "Age at the index visit."),
    FeatureSpec("sex_male", "0/1", "demographics", "1 if male, 0 if female."),
    FeatureSpec("systolic_bp", "mmHg", "vitals", "Systolic blood pressure."),
    FeatureSpec("heart_rate", "bpm", "vitals", "Resting heart rate."),
    FeatureSpec("bmi", "kg/m²", "vitals", "Body-mass index."),
    FeatureSpec("nt_pro_bnp", "pg/mL", "labs", "NT-proBNP as reported by the laboratory."),
    FeatureSpec("creatinine", "mg/dL", "labs", "Serum creatinine."),
    FeatureSpec("egfr", "mL/min/1.73m²", "labs", "Estimated GFR (CKD-EPI 2021, race-free)."),
    FeatureSpec("sodium", "mmol/L", "labs", "Serum sodium."),
    FeatureSpec("hemoglobin", "g/dL", "labs", "Blood haemoglobin."),
    FeatureSpec("ejection_fraction", "%", "labs", "Left-ventricular ejection fraction (echo)."),
    FeatureSpec("diabetes", "0/1", "history", "Diagnosed diabetes mellitus."),
    FeatureSpec("hypertension", "0/1", "history", "Diagnosed hypertension."),
    FeatureSpec("prior_mi", "0/1", "history", "Previous myocardial infarction."),
    FeatureSpec("loop_diuretic", "0/1", "history", "Current loop-diuretic prescription."),
]

# Share of values missing completely at random. Not every patient gets every test; echo is
# the test most often skipped.
_HF_MISSING_SHARE: dict[str, float] = {
    "nt_pro_bnp": 0.04,
    "creatinine": 0.02,
    "egfr": 0.02,
    "hemoglobin": 0.03,
    "ejection_fraction": 0.05,
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _intercept_for_prevalence(linear: np.ndarray, prevalence: float) -> float:
    """Bisection for the intercept whose mean predicted risk equals ``prevalence``.

    Solving instead of hard-coding keeps the prevalence right when coefficients are tuned.
    """
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if _sigmoid(linear + mid).mean() < prevalence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def _ckd_epi_2021(creatinine: np.ndarray, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    kappa = np.where(male == 1, 0.9, 0.7)
    alpha = np.where(male == 1, -0.302, -0.241)
    ratio = creatinine / kappa
    egfr = (
        142.0
        * np.minimum(ratio, 1.0) ** alpha
        * np.maximum(ratio, 1.0) ** -1.200
        * 0.9938**age
        * np.where(male == 1, 1.0, 1.012)
    )
    return egfr


def heart_failure(
    n_patients: int = 20_000, seed: int = 11, flip_share: float = 0.02
) -> DemoDataset:
    """A synthetic two-year cohort with ~3 % one-year heart-failure incidence and a late shift."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be positive, got {n_patients}")
    time_rng, patient_rng, outcome_rng, missing_rng, flip_rng = _child_rngs(seed, 5)
    n = n_patients

    span_s = int((HEART_FAILURE_END - HEART_FAILURE_START).total_seconds())
    offsets = np.sort(time_rng.integers(0, span_s, size=n))
    # Chronological ids, so "hf-000001" is the oldest case as in a hospital's own numbering.
    occurred_at = pd.Series(HEART_FAILURE_START + pd.to_timedelta(offsets, unit="s")).astype(
        "datetime64[ns, UTC]"
    )

    # Patients: a cardiology-adjacent outpatient population. A latent "cardiac dysfunction"
    # score ties echo, NT-proBNP, heart rate, sodium and diuretic use together the way they
    # co-vary in practice, so the features are realistically correlated rather than independent.
    r = patient_rng
    age = np.clip(np.round(r.normal(66.0, 12.0, n)), 18, 100)
    male = (r.random(n) < 0.48).astype(float)
    bmi = np.round(np.clip(r.normal(28.5, 5.5, n), 15.0, 60.0), 1)
    a = (age - 65.0) / 10.0
    b = (bmi - 28.0) / 5.0
    hypertension = (r.random(n) < _sigmoid(-0.1 + 0.6 * a + 0.5 * b)).astype(float)
    diabetes = (r.random(n) < _sigmoid(-1.5 + 0.3 * a + 0.6 * b)).astype(float)
    prior_mi = (r.random(n) < _sigmoid(-2.6 + 0.4 * a + 0.5 * male + 0.4 * diabetes)).astype(float)
    dysfunction = r.normal(0.0, 1.0, n) + 0.05 * a + 0.4 * prior_mi + 0.1 * hypertension

    creatinine = np.round(
        np.exp(np.log(0.8) + 0.2 * male + 0.06 * a + 0.1 * diabetes + r.normal(0.0, 0.22, n)),
        2,
    )
    egfr = np.round(_ckd_epi_2021(creatinine, age, male), 0)
    ef = np.round(np.clip(58.0 - 1.2 * dysfunction + r.normal(0.0, 7.0, n), 10.0, 75.0), 0)
    # Median near the usual 125 pg/mL rule-out cut-off, rising with age, dysfunction and poor
    # kidney function (NT-proBNP is cleared by the kidneys). Age and eGFR loadings are kept
    # small so NT-proBNP carries information the other columns cannot stand in for.
    log_bnp = (
        np.log(100.0) + 0.1 * a + 0.9 * dysfunction - 0.006 * (egfr - 75.0) + r.normal(0.0, 0.4, n)
    )
    nt_pro_bnp_pg = np.exp(log_bnp)
    sodium = np.round(np.clip(r.normal(139.5, 2.6, n) - 0.2 * dysfunction, 118.0, 152.0), 0)
    hemoglobin = np.round(
        np.clip(
            r.normal(13.0, 1.2, n) + 1.3 * male - 0.15 * a - 0.01 * (75.0 - egfr).clip(0),
            6.0,
            19.0,
        ),
        1,
    )
    systolic_bp = np.round(np.clip(r.normal(128.0, 16.0, n) + 10.0 * hypertension + 3 * a, 80, 220))
    heart_rate = np.round(np.clip(r.normal(73.0, 11.0, n) + 0.8 * dysfunction, 40, 150))
    loop_diuretic = (r.random(n) < _sigmoid(-2.3 + 0.3 * dysfunction + 0.4 * hypertension)).astype(
        float
    )

    # Outcome: a logistic model on the true pg/mL NT-proBNP. NT-proBNP dominates on purpose
    # (it is the strongest single marker clinically too); that is what makes the later assay
    # change hurt. The noise term stands for unmeasured causes, so no model is near perfect.
    linear = (
        1.8 * np.log(nt_pro_bnp_pg / 125.0)
        + 0.05 * a
        - 0.01 * (ef - 55.0)
        + 0.2 * prior_mi
        + 0.2 * diabetes
        + 0.1 * hypertension
        + 0.2 * loop_diuretic
        - 0.003 * (egfr - 75.0)
        + 0.01 * (heart_rate - 73.0)
        - 0.03 * (sodium - 139.5)
        - 0.08 * (hemoglobin - 13.5)
        + 0.1 * b
        - 0.003 * (systolic_bp - 130.0)
        + outcome_rng.normal(0.0, 0.8, n)
    )
    risk = _sigmoid(linear + _intercept_for_prevalence(linear, HEART_FAILURE_PREVALENCE))
    positive = outcome_rng.random(n) < risk
    classes = ["no_heart_failure", "heart_failure"]
    true = np.where(positive, classes[1], classes[0]).astype(object)

    # The shift: the lab's new assay reports pmol/L in the pg/mL column. Patients and their
    # risk are unchanged; only the numbers a model sees change. Values below the assay's
    # reporting limit (5 pg/mL) are reported at the limit, as labs do.
    after_shift = (occurred_at >= HEART_FAILURE_SHIFT_START).to_numpy()
    reported_pg = np.maximum(nt_pro_bnp_pg, 5.0)
    nt_pro_bnp_reported = np.where(
        after_shift,
        np.round(reported_pg / NT_PRO_BNP_PG_PER_PMOL, 1),
        np.round(reported_pg, 0),
    )

    values: dict[str, np.ndarray] = {
        "age": age,
        "sex_male": male,
        "systolic_bp": systolic_bp,
        "heart_rate": heart_rate,
        "bmi": bmi,
        "nt_pro_bnp": nt_pro_bnp_reported,
        "creatinine": creatinine,
        "egfr": egfr,
        "sodium": sodium,
        "hemoglobin": hemoglobin,
        "ejection_fraction": ef,
        "diabetes": diabetes,
        "hypertension": hypertension,
        "prior_mi": prior_mi,
        "loop_diuretic": loop_diuretic,
    }
    # Missing values are applied after the outcome so they never change who is positive.
    for name, share in _HF_MISSING_SHARE.items():
        column = values[name].astype(np.float64)
        column[missing_rng.random(n) < share] = np.nan
        values[name] = column
    # eGFR is computed from creatinine, so it cannot exist without it.
    values["egfr"][np.isnan(values["creatinine"])] = np.nan

    # Recent cases have not been followed up long enough to be labeled: they are the queue.
    labeled = ~after_shift
    observed, flipped = _flip_labels(true, labeled, classes, flip_share, flip_rng)

    external_ids = [f"hf-{i + 1:06d}" for i in range(n)]
    cases = _assemble(external_ids, occurred_at, _HF_FEATURES, values, observed)

    description = (
        "Synthetic outpatient cohort (no real patients): for each visit between January 2024 "
        "and December 2025, did the patient develop heart failure within one year? About 3% "
        "did. Each case has demographics, vitals, routine labs (some missing, as in practice), "
        "echo ejection fraction and history. Cases from September 2025 on are not labeled yet; "
        f"{int(flipped.sum())} of the labeled cases carry a deliberately wrong label. Watch "
        "how a model trained on older cases fares on the recent months."
    )
    return DemoDataset(
        name="Heart failure within one year (synthetic)",
        description=description,
        classes=classes,
        features=list(_HF_FEATURES),
        cases=cases,
        flipped_external_ids=[external_ids[i] for i in np.flatnonzero(flipped)],
        true_labels=dict(zip(external_ids, (str(t) for t in true), strict=True)),
    )


DATASETS: dict[str, Callable[..., DemoDataset]] = {
    "breast_cancer": breast_cancer,
    "heart_failure": heart_failure,
}
