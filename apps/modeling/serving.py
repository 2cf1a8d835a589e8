"""Predictions of the production model for the predict API.

Each request reads the newest deployment once and answers wholly with that version's model,
so a promote never leaves a request half on one version and half on another, and never makes
one fail. Loaded models are kept per process, keyed by version and file hash, and each is
loaded once: the first request for a version reads the file while the others wait for it
(reading it N times at once cost N times the memory and, through skops, could crash; see
apps/modeling/ml/persistence.py).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from sklearn.pipeline import Pipeline

from apps.cases.models import Case
from apps.cases.selectors import FeatureMatrix
from apps.features.compute import definitions_from, needed, raw_inputs
from apps.modeling.ml.training import TrainingError, predict_proba_aligned
from apps.modeling.models import Deployment, ModelVersion, TrainingRun
from apps.modeling.services import run_columns, version_decisions, version_model
from apps.projects.models import Feature, Project

MAX_CASES_PER_REQUEST = 1000
_CACHE_SIZE = 4
_cache: OrderedDict[tuple[int, str], Pipeline] = OrderedDict()
# Held while a model is read and stored, so that a version is read once; a request for a
# model already loaded does not take it.
_load_lock = threading.Lock()


class NoProductionModel(Exception):
    pass


@dataclass
class PredictionAnswer:
    version: ModelVersion
    deployment: Deployment
    rows: list[dict[str, Any]]


def _model_for(version: ModelVersion) -> Pipeline:
    key = (version.pk, version.file_sha256)
    # The hot path, no lock: a single get and move_to_end on an OrderedDict are each atomic
    # under the GIL (the key is a tuple of an int and a str, whose hashing runs no Python).
    model = _cache.get(key)
    if model is not None:
        # Evicted by a load in another thread just now: still ours to use.
        with contextlib.suppress(KeyError):
            _cache.move_to_end(key)
        return model
    with _load_lock:
        # Looked up again: the thread we waited for may have loaded this very version. One
        # lock for every version, not one per version: skops loads are serialized for the
        # whole process anyway (persistence._LOAD_LOCK).
        model = _cache.get(key)
        if model is None:
            model = version_model(version)
            _cache[key] = model
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return model


def _raw_names(project: Project) -> list[str]:
    return list(
        Feature.objects.filter(project=project).order_by("position").values_list("name", flat=True)
    )


def _model_columns(run: TrainingRun, values: np.ndarray, raw_names: list[str]) -> np.ndarray:
    """The model's features from raw values: derived ones computed from the definitions the
    version was trained with, not the ones in force now."""
    matrix = FeatureMatrix(
        case_ids=np.arange(len(values), dtype=np.int64),
        occurred_at=np.full(len(values), np.datetime64("NaT", "us")),
        values=values,
        feature_names=raw_names,
    )
    try:
        return run_columns(
            names=list(run.feature_names), derived=run.params.get("derived") or [], matrix=matrix
        )
    except TrainingError as error:
        raise ValidationError(str(error)) from error


def _features_of_cases(project: Project, case_ids: list[int], run: TrainingRun) -> np.ndarray:
    all_names = _raw_names(project)
    found = dict(
        Case.objects.filter(project=project, pk__in=case_ids).values_list("id", "features")
    )
    unknown = [c for c in case_ids if c not in found]
    if unknown:
        raise ValidationError(
            {"case_ids": f"Not cases of this project: {', '.join(map(str, unknown[:20]))}."}
        )
    width = len(all_names)
    rows = [np.frombuffer(bytes(found[c]), dtype="<f8", count=width) for c in case_ids]
    raw = np.vstack(rows) if rows else np.empty((0, width))
    return _model_columns(run, raw, all_names)


def _inputs_of(project: Project, run: TrainingRun) -> tuple[list[str], dict[str, list[str]]]:
    """The raw features a request may give for the version (those it uses, and those its
    derived features are computed from) and, per derived feature, what it reads."""
    names = list(run.feature_names)
    derived = definitions_from(run.params.get("derived") or [])
    if not derived:
        return names, {}
    raw_names = _raw_names(project)
    reads = {d.name: raw_inputs(needed(derived, raw_names, [d.name]), raw_names) for d in derived}
    wanted = {n for n in names if n in raw_names}
    for name in names:
        wanted.update(reads.get(name, []))
    return [n for n in raw_names if n in wanted], reads


def _features_of_rows(rows: list[dict[str, Any]], names: list[str], derived: dict) -> np.ndarray:
    """Raw feature values given in the request, in the order of `names`. A feature left out,
    or null, is missing (NaN), as an empty cell is on import; a name the model does not use, a
    derived feature (it is computed from the raw values) or a value that is not a number is
    refused with where it was."""
    X = np.full((len(rows), len(names)), np.nan)
    index = {n: j for j, n in enumerate(names)}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValidationError({"cases": f"Case {i}: expected an object of feature values."})
        for name, value in row.items():
            if name in derived:
                raise ValidationError(
                    {
                        "cases": f"Case {i}: {name!r} is a derived feature, computed from "
                        f"{', '.join(derived[name]) or 'nothing'}; send those values instead."
                    }
                )
            if name not in index:
                raise ValidationError(
                    {
                        "cases": f"Case {i}: {name!r} is not a feature of the production model "
                        f"(it reads {', '.join(names)})."
                    }
                )
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValidationError({"cases": f"Case {i}: {name} = {value!r} is not a number."})
            X[i, index[name]] = float(value)
    return X


def predict(
    *, project: Project, case_ids: list[int] | None = None, rows: list[dict] | None = None
) -> PredictionAnswer:
    """Predict stored cases (by id) or new ones (feature values) with the production model."""
    if (case_ids is None) == (rows is None):
        raise ValidationError("Send either case_ids or cases, not both.")
    items = case_ids if case_ids is not None else rows
    if not items:
        raise ValidationError("Nothing to predict: the list is empty.")
    if len(items) > MAX_CASES_PER_REQUEST:
        raise ValidationError(
            f"At most {MAX_CASES_PER_REQUEST} cases per request, not {len(items)}."
        )
    deployment = (
        Deployment.objects.filter(project=project)
        .select_related("model_version__training_run", "model_version__project")
        .order_by("-id")
        .first()
    )
    if deployment is None:
        raise NoProductionModel("This project has no model in production yet.")
    version = deployment.model_version
    run = version.training_run
    if case_ids is not None:
        X = _features_of_cases(project, [int(c) for c in case_ids], run)
    else:
        inputs, derived = _inputs_of(project, run)
        X = _model_columns(run, _features_of_rows(rows or [], inputs, derived), inputs)
    classes = list(project.classes)
    proba = predict_proba_aligned(_model_for(version), X, classes)
    decided = version_decisions(version, proba)
    answer = []
    for i in range(len(X)):
        row: dict[str, Any] = {
            "predicted_label": classes[decided[i]],
            "probabilities": {
                c: round(float(p), 6) for c, p in zip(classes, proba[i], strict=True)
            },
        }
        if case_ids is not None:
            row = {"case_id": int(case_ids[i]), **row}
        answer.append(row)
    return PredictionAnswer(version=version, deployment=deployment, rows=answer)
