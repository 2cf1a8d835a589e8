"""Predictions of the production model for the predict API.

Each request reads the newest deployment once and answers wholly with that version's model,
so a promote never leaves a request half on one version and half on another, and never makes
one fail. Loaded models are kept per process, keyed by version and file hash.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from sklearn.pipeline import Pipeline

from apps.cases.models import Case
from apps.modeling.ml.training import predict_proba_aligned
from apps.modeling.models import Deployment, ModelVersion
from apps.modeling.services import version_decisions, version_model
from apps.projects.models import Feature, Project

MAX_CASES_PER_REQUEST = 1000
_CACHE_SIZE = 4
_cache: OrderedDict[tuple[int, str], Pipeline] = OrderedDict()
_cache_lock = threading.Lock()


class NoProductionModel(Exception):
    pass


@dataclass
class PredictionAnswer:
    version: ModelVersion
    deployment: Deployment
    rows: list[dict[str, Any]]


def _model_for(version: ModelVersion) -> Pipeline:
    key = (version.pk, version.file_sha256)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    model = version_model(version)  # outside the lock: loading takes a while
    with _cache_lock:
        _cache[key] = model
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def _features_of_cases(project: Project, case_ids: list[int], names: list[str]) -> np.ndarray:
    all_names = list(
        Feature.objects.filter(project=project).order_by("position").values_list("name", flat=True)
    )
    columns = [all_names.index(n) for n in names]
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
    return np.vstack(rows)[:, columns] if rows else np.empty((0, len(names)))


def _features_of_rows(rows: list[dict[str, Any]], names: list[str]) -> np.ndarray:
    """Feature values given in the request. A feature left out, or null, is missing (NaN), as
    an empty cell is on import; a name the model does not use, or a value that is not a number,
    is refused with where it was."""
    X = np.full((len(rows), len(names)), np.nan)
    index = {n: j for j, n in enumerate(names)}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValidationError({"cases": f"Case {i}: expected an object of feature values."})
        for name, value in row.items():
            if name not in index:
                raise ValidationError(
                    {
                        "cases": f"Case {i}: {name!r} is not a feature of the production model "
                        f"(it uses {', '.join(names)})."
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
    names = list(version.training_run.feature_names)
    if case_ids is not None:
        X = _features_of_cases(project, [int(c) for c in case_ids], names)
    else:
        X = _features_of_rows(rows or [], names)
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
