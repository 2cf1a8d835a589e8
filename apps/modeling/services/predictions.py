"""Every case's predictions of a model version: stored beside it, loaded, turned into decisions."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from apps.cases.selectors import case_feature_matrix
from apps.modeling.ml.objectives import (
    decide,
)
from apps.modeling.ml.persistence import UntrustedModelFile, file_sha256, model_load
from apps.modeling.ml.training import (
    predict_proba_aligned,
)
from apps.modeling.models import (
    ModelVersion,
)
from apps.modeling.selectors import run_columns
from apps.modeling.services.common import model_dir

logger = logging.getLogger(__name__)


def _predictions_path(version: ModelVersion) -> Path:
    return model_dir(version.project_id) / f"run-{version.training_run_id}-predictions.parquet"


def version_predictions_make(
    version: ModelVersion,
    *,
    pipeline: Pipeline | None = None,
    matrix=None,
    proba: np.ndarray | None = None,
) -> ModelVersion:
    """Predict every case with `version` and keep the probabilities beside it (Parquet, one
    column per class), unless they are kept already. `proba`: the version's probabilities for
    every case of `matrix`, when the caller has them."""
    project = version.project
    classes = list(project.classes)
    if not version.predictions_path or not Path(version.predictions_path).is_file():
        matrix = matrix or case_feature_matrix(project_id=project.pk)
        if proba is None or len(proba) != len(matrix.case_ids):
            pipeline = pipeline or version_model(version)
            run = version.training_run
            # The features as the version was trained with them: a derived one is computed
            # from the definition the run recorded, even if it was changed or retired since.
            X = run_columns(
                names=list(run.feature_names),
                derived=run.params.get("derived") or [],
                matrix=matrix,
            )
            proba = predict_proba_aligned(pipeline, X, classes)
        frame = pd.DataFrame(proba, columns=classes)
        frame.insert(0, "case_id", matrix.case_ids)
        path = _predictions_path(version)
        partial = path.with_suffix(f".{uuid.uuid4().hex}.partial")
        frame.to_parquet(partial, index=False)
        os.replace(partial, path)
        ModelVersion.objects.filter(pk=version.pk).update(
            predictions_path=str(path), predictions_sha256=file_sha256(path)
        )
        version.refresh_from_db()
    return version


def version_predictions_load(version: ModelVersion) -> tuple[np.ndarray, np.ndarray]:
    """(case ids, probabilities) of a version's stored predictions, made first if missing."""
    path = Path(version.predictions_path) if version.predictions_path else None
    if path is None or not path.is_file():
        version = version_predictions_make(
            ModelVersion.objects.select_related("training_run", "project").get(pk=version.pk)
        )
        path = Path(version.predictions_path)
    if version.predictions_sha256 and file_sha256(path) != version.predictions_sha256:
        raise UntrustedModelFile(f"{path.name} does not match its recorded sha256")
    frame = pd.read_parquet(path)
    classes = list(version.project.classes)
    return frame["case_id"].to_numpy(np.int64), frame[classes].to_numpy(np.float64)


def version_model(version: ModelVersion) -> Pipeline:
    return model_load(Path(version.file_path), version.file_sha256)


def version_decisions(version: ModelVersion, proba: np.ndarray) -> np.ndarray:
    """Class index per case under the version's threshold (chosen for its objective)."""
    classes = list(version.project.classes)
    positive = classes.index(version.positive_class) if version.positive_class in classes else -1
    return decide(proba, version.threshold, positive if positive >= 0 else len(classes) - 1)
