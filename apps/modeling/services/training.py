"""What a run does once claimed: the label snapshot and features, the fit and evaluation, and
the version stored."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from sklearn.pipeline import Pipeline

from apps.cases.selectors import case_feature_matrix
from apps.core import tasks as task_queue
from apps.labeling.selectors import LabelSnapshot, label_snapshot, label_watermark
from apps.modeling.ml.cancellation import Cancellation
from apps.modeling.ml.objectives import (
    ObjectiveSpec,
    positive_index,
)
from apps.modeling.ml.persistence import model_save
from apps.modeling.ml.training import (
    TrainingError,
    predict_proba_aligned,
    train_and_evaluate,
)
from apps.modeling.models import (
    ModelVersion,
    RunStatus,
    RunTrigger,
    TrainingRun,
)
from apps.modeling.provenance import code_version, library_versions
from apps.modeling.selectors import run_columns, training_data
from apps.modeling.services.common import LABEL_ISSUES_TASK, _progress, model_dir
from apps.modeling.services.deployments import version_predictions_store
from apps.projects.models import Project

logger = logging.getLogger(__name__)


def _same_as_last_model(run: TrainingRun, labels_sha256: str) -> bool:
    """Mark an automatic run skipped when the labels (e.g. a label and its undo) and parameters
    are those of the newest model version: retraining would only make a duplicate."""
    last = (
        TrainingRun.objects.filter(project_id=run.project_id, status=RunStatus.SUCCEEDED)
        .exclude(pk=run.pk)
        .order_by("-id")
        .first()
    )
    if (
        last is None
        or last.labels_sha256 != labels_sha256
        or last.params != run.params
        or last.seed != run.seed
        or last.objective_id != run.objective_id
    ):
        return False
    TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.SKIPPED,
        finished_at=timezone.now(),
        progress=100,
        progress_message=f"Labels unchanged since run {last.pk}; its model stays current.",
    )
    return True


def _objective_for(run: TrainingRun) -> ObjectiveSpec:
    return run.objective.spec() if run.objective_id else ObjectiveSpec()


def _snapshot_kept(
    project_id: int, watermark: int, path: Path, side: ThreadPoolExecutor
) -> tuple[LabelSnapshot, tuple, Future]:
    """Read the label snapshot and digest it; its file is written to `path` by `side`, beside
    the fit (the fit leaves the second core mostly idle). Wait for the returned future before
    the run counts as done."""
    snapshot = label_snapshot(project_id=project_id, watermark=watermark)
    kept = side.submit(lambda: snapshot.to_frame().to_parquet(path, index=False))
    return snapshot, (snapshot.sha256(), snapshot.content_sha256()), kept


def _snapshot_and_features(project_id: int, watermark: int, path: Path, side: ThreadPoolExecutor):
    """The label snapshot (digested, its file being written), then the feature matrix. Not
    side by side: on two cores both reads keep the database busy, and together they took
    longer."""
    snapshot, digests, kept = _snapshot_kept(project_id, watermark, path, side)
    return snapshot, digests, kept, case_feature_matrix(project_id=project_id)


def _train(run: TrainingRun, written: list[Path], cancellation: Cancellation) -> None:
    # Leaving the block waits for the side's work, so a failed run never leaves a file being
    # written after its files are removed.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-files") as side:
        _train_with(run, written, side, cancellation)


def _train_with(
    run: TrainingRun, written: list[Path], side: ThreadPoolExecutor, cancellation: Cancellation
) -> None:
    project = run.project
    classes = list(project.classes)
    objective = _objective_for(run)
    # Read the version before the watermark: labels arriving in between are then counted as
    # new for the next run rather than silently assumed trained on.
    labels_version = Project.objects.values_list("labels_version", flat=True).get(pk=project.pk)
    watermark = label_watermark(project_id=project.pk)
    folder = model_dir(project.pk)
    folder.mkdir(parents=True, exist_ok=True)
    # Files of this attempt only: a worker taken for dead that is still running must not
    # overwrite the files of the attempt that replaced it.
    stem = f"run-{run.pk}-a{run.attempts}"
    snapshot_path = folder / f"{stem}-labels.parquet"
    written.append(snapshot_path)
    snapshot, digests, snapshot_kept, matrix = _snapshot_and_features(
        project.pk, watermark, snapshot_path, side
    )
    data = training_data(
        snapshot_case_ids=snapshot.case_ids,
        snapshot_values=snapshot.values,
        matrix=matrix,
        params=run.params,
        snapshot_codes=snapshot.codes,
    )
    recorded = TrainingRun.objects.filter(
        pk=run.pk, status=RunStatus.RUNNING, attempts=run.attempts
    ).update(
        labels_version=labels_version,
        label_watermark=watermark,
        snapshot_sha256=digests[0],
        labels_sha256=digests[1],
        snapshot_path=str(snapshot_path),
        feature_names=data.feature_names,
        code_version=code_version(),
        library_versions=library_versions(),
    )
    if not recorded:
        raise TrainingError("This attempt was replaced by another one; it stops here.")
    if run.trigger == RunTrigger.AUTO and _same_as_last_model(run, snapshot.content_sha256()):
        return
    _progress(run.pk, 20, f"Loaded {len(data.y)} labeled cases")

    def predict_every_case(pipeline: Pipeline) -> np.ndarray | None:
        # What version_predictions_store would compute, made while the held-out cases are
        # evaluated: the same columns, the same pipeline. A failure here (memory) must not
        # fail the run: the version is then stored without them, and they are made again as
        # after a lost worker.
        try:
            X_all = run_columns(
                names=data.feature_names, derived=run.params.get("derived") or [], matrix=matrix
            )
            return predict_proba_aligned(pipeline, X_all, classes)
        except Exception:
            logger.exception("run %s: predicting every case beside the evaluation failed", run.pk)
            return None

    result = train_and_evaluate(
        data.X,
        data.y,
        data.occurred_at,
        classes,
        run.params,
        run.seed,
        progress=lambda percent, message: _progress(run.pk, percent, message),
        objective=objective,
        feature_names=data.feature_names,
        after_fit=predict_every_case,
        y_codes=data.y_codes,
        cancellation=cancellation,
    )
    snapshot_kept.result()  # the snapshot file is complete before the version can exist
    result.metrics["window"] = data.window
    train_times = data.occurred_at[result.train_index]
    train_times = train_times[~np.isnat(train_times)]
    if len(train_times):
        result.metrics["train_period"] = [str(train_times.min())[:10], str(train_times.max())[:10]]
    _progress(run.pk, 80, "Saving the model")
    model_path = folder / f"{stem}.skops"
    written.append(model_path)
    sha = model_save(result.pipeline, model_path)
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        number = (
            ModelVersion.objects.filter(project=locked).aggregate(m=Max("number"))["m"] or 0
        ) + 1
        version = ModelVersion.objects.create(
            project=locked,
            training_run=run,
            number=number,
            model_family=result.model_family,
            file_path=str(model_path),
            file_sha256=sha,
            metrics=result.metrics,
            evaluation=result.evaluation,
            objective_id=run.objective_id,
            objective_value=result.metrics.get("objective"),
            threshold=result.threshold,
            positive_class=classes[positive_index(objective, classes)],
        )
        updated = TrainingRun.objects.filter(
            pk=run.pk, status=RunStatus.RUNNING, attempts=run.attempts
        ).update(
            status=RunStatus.SUCCEEDED,
            metrics=result.metrics,
            progress=85,
            progress_message="Predicting every case",
            finished_at=timezone.now(),
        )
        if updated != 1:
            # Marked failed (abandoned) meanwhile: roll back, leave no model version.
            raise TrainingError("The run was abandoned while training.")
    # The version stands from here on; what follows is repeated by the mender if a worker
    # dies in it (see training_runs_mend).
    version_predictions_store(
        version_id=version.pk,
        pipeline=result.pipeline,
        matrix=matrix,
        proba=result.extra.get("after_fit"),
    )
    TrainingRun.objects.filter(pk=run.pk).update(progress=100, progress_message="Done")
    # The chain goes on in a task of its own (the review board's label issues), by name: the
    # modeling app does not import the review app.
    task_queue.task_send_on_commit(LABEL_ISSUES_TASK, version.pk)
