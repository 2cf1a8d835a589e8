"""Reproducing a run from its snapshot, parameters and seed, and comparing the result."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.cases.selectors import case_feature_matrix
from apps.core import tasks as task_queue
from apps.labeling.selectors import LabelSnapshot
from apps.modeling.ml.training import (
    predict_proba_aligned,
    train_and_evaluate,
)
from apps.modeling.models import (
    ModelVersion,
    RunStatus,
    TrainingRun,
)
from apps.modeling.provenance import code_version, library_versions
from apps.modeling.selectors import training_data
from apps.modeling.services.predictions import version_decisions, version_model
from apps.modeling.services.training import _objective_for

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Reproduction.


def training_run_reproduce_safely(*, run_id: int) -> dict[str, Any]:
    """The worker's entry: a reproduction that cannot run says why on the run, instead of
    leaving the page waiting."""
    try:
        return training_run_reproduce(run_id=run_id)
    except Exception as error:
        logger.exception("reproducing run %s failed", run_id)
        message = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        result = {
            "status": "failed",
            "error": f"Could not reproduce: {message}",
            "checked_at": timezone.now().isoformat(),
        }
        TrainingRun.objects.filter(pk=run_id).update(reproduction=result)
        return result


def training_run_reproduce(*, run_id: int) -> dict[str, Any]:
    """Retrain a run from its recorded snapshot, parameters and seed, and check that the new
    model predicts what the stored one does on every case of the snapshot. The result is
    kept on the run."""
    run = TrainingRun.objects.select_related("project", "model_version").get(pk=run_id)
    if run.status != RunStatus.SUCCEEDED or not hasattr(run, "model_version"):
        raise ValidationError(f"Run {run.pk} has no model version to reproduce.")
    version = run.model_version
    path = Path(run.snapshot_path)
    if not path.is_file():
        raise ValidationError(f"The label snapshot of run {run.pk} is missing ({path.name}).")
    frame = pd.read_parquet(path)
    snapshot = LabelSnapshot(
        case_ids=frame["case_id"].to_numpy(np.int64),
        label_ids=frame["label_id"].to_numpy(np.int64),
        values=frame["label"].to_numpy(object),
        watermark=run.label_watermark or 0,
    )
    result: dict[str, Any] = {"checked_at": timezone.now().isoformat()}
    result["snapshot_matches"] = snapshot.sha256() == run.snapshot_sha256
    matrix = case_feature_matrix(project_id=run.project_id)
    data = training_data(
        snapshot_case_ids=snapshot.case_ids,
        snapshot_values=snapshot.values,
        matrix=matrix,
        params=run.params,
    )
    classes = list(run.project.classes)
    again = train_and_evaluate(
        data.X,
        data.y,
        data.occurred_at,
        classes,
        run.params,
        run.seed,
        objective=_objective_for(run),
        feature_names=data.feature_names,
    )
    stored = version_model(version)
    before = predict_proba_aligned(stored, data.X, classes)
    after = predict_proba_aligned(again.pipeline, data.X, classes)
    difference = float(np.max(np.abs(before - after))) if len(before) else 0.0
    result.update(
        {
            "cases": len(data.y),
            "max_abs_difference": difference,
            "same_decisions": bool(
                np.array_equal(
                    version_decisions(version, before), version_decisions(version, after)
                )
            ),
            "same_family": again.model_family == version.model_family,
            # The derived features as the run defined them (not as they are defined now).
            "feature_set": run.params.get("feature_set"),
            "derived": run.params.get("derived") or [],
            "code_version_then": run.code_version,
            "code_version_now": code_version(),
            "libraries_changed": {
                name: [then, library_versions().get(name)]
                for name, then in run.library_versions.items()
                if library_versions().get(name) != then
            },
        }
    )
    result["matched"] = bool(
        result["snapshot_matches"] and result["same_decisions"] and difference <= 1e-9
    )
    TrainingRun.objects.filter(pk=run.pk).update(reproduction=result)
    return result


def training_run_reproduce_request(*, run: TrainingRun) -> None:
    """Ask the worker to reproduce a run; the run page shows the outcome."""
    if (
        run.status != RunStatus.SUCCEEDED
        or not ModelVersion.objects.filter(training_run=run).exists()
    ):
        raise ValidationError(f"Run {run.pk} has no model version to reproduce.")
    TrainingRun.objects.filter(pk=run.pk).update(
        reproduction={"status": "running", "requested_at": timezone.now().isoformat()}
    )
    task_queue.task_send_on_commit("modeling.reproduce_run", run.pk)
