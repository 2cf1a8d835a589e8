"""Writes of the modeling app: requesting, scheduling and executing training runs."""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, OuterRef, Q, Subquery
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from apps.accounts.models import User
from apps.cases.selectors import case_feature_matrix
from apps.labeling.selectors import label_progress, label_snapshot, label_watermark
from apps.labeling.services import case_scores_replace, queue_refresh, queue_refresh_request
from apps.modeling.ml.persistence import model_save
from apps.modeling.ml.training import (
    DEFAULT_PARAMS,
    MIN_LABELED_CASES,
    TrainingError,
    predict_proba_aligned,
    train_and_evaluate,
)
from apps.modeling.models import ModelVersion, RunStatus, RunTrigger, TrainingRun
from apps.modeling.provenance import code_version, library_versions
from apps.projects.models import Project

logger = logging.getLogger(__name__)

RUN_TASK = "modeling.run_training"


def stale_run_after() -> timedelta:
    """A running run whose worker has not reported for longer than a task may run is dead:
    the worker would have killed it at its time limit. Training reports only between steps,
    so anything shorter would abandon a long fit that is still going."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


# A queued run that could not be sent (broker down) is sent again after this long; one the
# broker took is sent again only after much longer, in case the broker lost it. Duplicates are
# harmless (only one worker claims a run) but would pile up behind a long run.
RESEND_UNSENT_AFTER = timedelta(seconds=30)
RESEND_SENT_AFTER = timedelta(minutes=15)


def _enqueue_run(run_id: int) -> None:
    try:
        current_app.send_task(RUN_TASK, args=[run_id])
    except (BrokerError, OSError) as error:
        # Never run inline: the run stays queued and the scheduler sends it again.
        logger.warning("training run %s not enqueued (broker unavailable: %s)", run_id, error)
        return
    TrainingRun.objects.filter(pk=run_id).update(enqueued_at=timezone.now())


def training_run_request(
    *,
    project: Project,
    trigger: str,
    requested_by: User | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[TrainingRun, bool]:
    """Queue a training run of `project`, or return the one already queued or running.

    Returns (run, created). The run is sent to a worker once the transaction commits.
    """
    merged = {**DEFAULT_PARAMS, **(params or {})}
    with transaction.atomic():
        active = TrainingRun.objects.filter(
            project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
        ).first()
        if active is not None:
            return active, False
        labels_version = Project.objects.values_list("labels_version", flat=True).get(pk=project.pk)
        try:
            with transaction.atomic():
                run = TrainingRun.objects.create(
                    project=project,
                    trigger=trigger,
                    requested_by=requested_by,
                    labels_version=labels_version,
                    params=merged,
                    seed=seed,
                    progress_message="Waiting for a worker",
                )
        except IntegrityError:
            # Another process queued one between our check and insert: the constraint holds.
            return TrainingRun.objects.get(
                project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
            ), False
        transaction.on_commit(lambda: _enqueue_run(run.pk))
    return run, True


def retrain_due_projects(*, now=None) -> list[Project]:
    """Projects whose labels changed since their last run and that the coalescing policy lets
    retrain now: enough new labels, or labeling has been quiet long enough."""
    now = now or timezone.now()
    last_run = TrainingRun.objects.filter(project=OuterRef("pk")).order_by("-id")
    candidates = (
        Project.objects.filter(auto_retrain=True, labels_version__gt=0)
        .annotate(
            trained_version=Subquery(last_run.values("labels_version")[:1]),
            last_status=Subquery(last_run.values("status")[:1]),
        )
        .filter(Q(trained_version__isnull=True) | Q(trained_version__lt=F("labels_version")))
    )
    due = []
    for project in candidates:
        if project.last_status in (RunStatus.QUEUED, RunStatus.RUNNING):
            continue  # the next check after it finishes sees the newer labels
        if label_progress(project=project).labeled_cases < MIN_LABELED_CASES:
            continue  # a run would only fail; wait for more labels
        new_labels = project.labels_version - (project.trained_version or 0)
        quiet_since = project.last_labeled_at or now
        if new_labels >= project.retrain_min_new_labels or (
            now - quiet_since >= timedelta(seconds=project.retrain_quiet_seconds)
        ):
            due.append(project)
    return due


def retrain_schedule(*, now=None) -> list[int]:
    """Queue the runs the coalescing policy calls for, and mend runs a broker or worker lost.

    Called periodically; safe to call from several processes at once.
    """
    now = now or timezone.now()
    started = []
    for project in retrain_due_projects(now=now):
        run, created = training_run_request(project=project, trigger=RunTrigger.AUTO)
        if created:
            started.append(run.pk)
    training_runs_mend(now=now)
    return started


def training_runs_mend(*, now=None) -> None:
    now = now or timezone.now()
    stale = TrainingRun.objects.filter(
        status=RunStatus.RUNNING, heartbeat_at__lt=now - stale_run_after()
    )
    for run_id in stale.values_list("pk", flat=True):
        _fail(run_id, "The worker running this stopped reporting; the run was abandoned.")
    unsent = Q(enqueued_at__isnull=True, created_at__lt=now - RESEND_UNSENT_AFTER)
    for run_id in TrainingRun.objects.filter(
        unsent | Q(enqueued_at__lt=now - RESEND_SENT_AFTER), status=RunStatus.QUEUED
    ).values_list("pk", flat=True):
        _enqueue_run(run_id)


def _progress(run_id: int, percent: int, message: str) -> None:
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        progress=percent, progress_message=message[:200], heartbeat_at=timezone.now()
    )


def _fail(run_id: int, error: str) -> None:
    TrainingRun.objects.filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        status=RunStatus.FAILED,
        error=error,
        finished_at=timezone.now(),
        progress_message="Failed",
    )


def _claim(run_id: int) -> bool:
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        progress=5,
        progress_message="Loading labels and features",
        attempts=F("attempts") + 1,
    )
    return claimed == 1


def model_dir(project_id: int) -> Path:
    return Path(settings.CASEBOOK_MODEL_DIR) / f"project-{project_id}"


def training_run_execute(*, run_id: int) -> TrainingRun:
    """Train, evaluate and store a model version for a queued run.

    Safe to call twice: only the caller that moves the run from queued to running does the
    work. Nothing but the run row changes when training fails.
    """
    if not _claim(run_id):
        logger.info("training run %s already claimed or finished", run_id)
        return TrainingRun.objects.get(pk=run_id)
    run = TrainingRun.objects.select_related("project").get(pk=run_id)
    written: list[Path] = []
    try:
        _train(run, written)
    except TrainingError as error:
        _fail(run_id, str(error))
    except Exception as error:
        logger.exception("training run %s failed", run_id)
        _fail(run_id, f"{type(error).__name__}: {error}\n\n{traceback.format_exc(limit=5)}")
    finally:
        run.refresh_from_db()
        if run.status != RunStatus.SUCCEEDED:
            for path in written:
                path.unlink(missing_ok=True)
    return run


def _same_as_last_model(run: TrainingRun, labels_sha256: str) -> bool:
    """Mark an automatic run skipped when the labels (e.g. a label and its undo) and parameters
    are those of the newest model version: retraining would only make a duplicate."""
    last = (
        TrainingRun.objects.filter(project_id=run.project_id, status=RunStatus.SUCCEEDED)
        .exclude(pk=run.pk)
        .order_by("-id")
        .first()
    )
    if last is None or last.labels_sha256 != labels_sha256 or last.params != run.params:
        return False
    TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.SKIPPED,
        finished_at=timezone.now(),
        progress=100,
        progress_message=f"Labels unchanged since run {last.pk}; its model stays current.",
    )
    return True


def _train(run: TrainingRun, written: list[Path]) -> None:
    project = run.project
    classes = list(project.classes)
    # Read the version before the watermark: labels arriving in between are then counted as
    # new for the next run rather than silently assumed trained on.
    labels_version = Project.objects.values_list("labels_version", flat=True).get(pk=project.pk)
    watermark = label_watermark(project_id=project.pk)
    snapshot = label_snapshot(project_id=project.pk, watermark=watermark)
    matrix = case_feature_matrix(project_id=project.pk)
    position = np.searchsorted(matrix.case_ids, snapshot.case_ids)
    X = matrix.values[position]
    y = snapshot.values
    occurred = matrix.occurred_at[position]
    folder = model_dir(project.pk)
    folder.mkdir(parents=True, exist_ok=True)
    snapshot_path = folder / f"run-{run.pk}-labels.parquet"
    snapshot.to_frame().to_parquet(snapshot_path, index=False)
    written.append(snapshot_path)
    TrainingRun.objects.filter(pk=run.pk).update(
        labels_version=labels_version,
        label_watermark=watermark,
        snapshot_sha256=snapshot.sha256(),
        labels_sha256=snapshot.content_sha256(),
        snapshot_path=str(snapshot_path),
        feature_names=matrix.feature_names,
        code_version=code_version(),
        library_versions=library_versions(),
    )
    if run.trigger == RunTrigger.AUTO and _same_as_last_model(run, snapshot.content_sha256()):
        return
    _progress(run.pk, 20, f"Loaded {len(y)} labeled cases")
    result = train_and_evaluate(
        X,
        y,
        occurred,
        classes,
        run.params,
        run.seed,
        progress=lambda percent, message: _progress(run.pk, percent, message),
    )
    _progress(run.pk, 85, "Saving the model")
    model_path = folder / f"run-{run.pk}.skops"
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
            model_family=run.params.get("model_family", ""),
            file_path=str(model_path),
            file_sha256=sha,
            metrics=result.metrics,
        )
        updated = TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.SUCCEEDED,
            metrics=result.metrics,
            progress=95,
            progress_message="Scoring cases",
            finished_at=timezone.now(),
        )
        if updated != 1:
            # Marked failed (abandoned) meanwhile: roll back, leave no model version.
            raise TrainingError("The run was abandoned while training.")
    proba = predict_proba_aligned(result.pipeline, matrix.values, classes)
    case_scores_replace(
        project_id=project.pk,
        model_version_number=version.number,
        case_ids=matrix.case_ids,
        predicted_labels=[classes[i] for i in proba.argmax(axis=1)],
        confidences=proba.max(axis=1),
        probabilities=proba,
    )
    TrainingRun.objects.filter(pk=run.pk).update(
        progress=97, progress_message="Re-ranking the labeling queue"
    )
    # The queue's model-based strategies rank by these scores: re-rank here, in the worker,
    # so that handing out a case never sorts cases. The model version stands either way; a
    # re-rank that fails is sent again as a task of its own.
    try:
        queue_refresh(project_id=project.pk)
    except Exception:
        logger.exception("re-ranking the queue of project %s failed; retrying", project.pk)
        queue_refresh_request(project_id=project.pk)
    TrainingRun.objects.filter(pk=run.pk).update(progress=100, progress_message="Done")
