"""Writes of the modeling app: requesting, scheduling and executing training runs."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, OuterRef, Q, Subquery
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from sklearn.pipeline import Pipeline

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.cases.models import Case
from apps.cases.selectors import FeatureMatrix, case_feature_matrix
from apps.features import selectors as feature_selectors
from apps.features.compute import definitions_from, feature_columns, needed
from apps.features.expressions import ExpressionError
from apps.features.models import FeatureSetVersion
from apps.labeling.models import CaseScore
from apps.labeling.selectors import LabelSnapshot, label_progress, label_snapshot, label_watermark
from apps.labeling.services import case_scores_replace, queue_refresh, queue_refresh_request
from apps.modeling.ml.cancellation import Cancellation, RunCancelled
from apps.modeling.ml.hyperparameters import (
    HYPERPARAMETER_RANGES,
    HyperparameterError,
    hyperparameter_value,
)
from apps.modeling.ml.monitoring import (
    MIN_SLICE_CASES,
    degenerate,
    population_stability,
    staleness,
)
from apps.modeling.ml.objectives import (
    ObjectiveError,
    ObjectiveSpec,
    better,
    decide,
    objective_check,
    objective_value,
    positive_index,
)
from apps.modeling.ml.persistence import UntrustedModelFile, file_sha256, model_load, model_save
from apps.modeling.ml.training import (
    MIN_LABELED_CASES,
    TrainingError,
    month_slices,
    predict_proba_aligned,
    train_and_evaluate,
    window_select,
)
from apps.modeling.models import (
    ACTIVE_STATUSES,
    Deployment,
    DeploymentAction,
    ModelFamily,
    ModelVersion,
    MonitoringReport,
    Objective,
    RunStatus,
    RunTrigger,
    TrainingConfig,
    TrainingRun,
)
from apps.modeling.provenance import code_version, library_versions
from apps.projects.models import Feature, Project

logger = logging.getLogger(__name__)

RUN_TASK = "modeling.run_training"
APPLY_TASK = "modeling.apply_deployment"
PREDICT_TASK = "modeling.store_predictions"
LABEL_ISSUES_TASK = "review.find_label_issues"


def stale_run_after() -> timedelta:
    """A running run whose worker has not beaten its heart for this long is dead (killed, or
    its machine gone). The worker beats every HEARTBEAT_SECONDS from a thread of its own, also
    in the middle of a long fit."""
    return timedelta(seconds=settings.CASEBOOK_RUN_STALE_SECONDS)


HEARTBEAT_SECONDS = 5
# A run whose worker died is tried again once; dying twice marks it failed.
MAX_ATTEMPTS = 2


# How often the worker looks whether its run was cancelled: "stops within seconds".
CANCEL_POLL_SECONDS = 1


class _Heartbeat(threading.Thread):
    """Marks a run alive while the worker trains, so that the mender can tell a dead worker
    from a long fit, and stops the run's threads when the run is cancelled (see
    ml/cancellation.py for how)."""

    def __init__(self, run_id: int, cancellation: Cancellation) -> None:
        super().__init__(name=f"heartbeat-run-{run_id}", daemon=True)
        self.run_id = run_id
        self.cancellation = cancellation
        self.done = threading.Event()

    def run(self) -> None:
        beaten = time.monotonic()
        try:
            while not self.done.wait(min(CANCEL_POLL_SECONDS, HEARTBEAT_SECONDS)):
                try:
                    if _run_status(self.run_id) == RunStatus.CANCELLED:
                        self.cancellation.cancel()
                        return
                    if time.monotonic() - beaten >= HEARTBEAT_SECONDS:
                        TrainingRun.objects.filter(pk=self.run_id, status=RunStatus.RUNNING).update(
                            heartbeat_at=timezone.now()
                        )
                        beaten = time.monotonic()
                except Exception:
                    # A database blip must not stop the beat: a silent heart gets the run
                    # handed to a second worker while this one still trains.
                    logger.exception("heartbeat of run %s missed a beat", self.run_id)
                    connection.close()
        finally:
            connection.close()


# A queued run that could not be sent (broker down) is sent again after this long; one the
# broker took is sent again only after much longer, in case the broker lost it. Duplicates are
# harmless (only one worker claims a run) but would pile up behind a long run.
RESEND_UNSENT_AFTER = timedelta(seconds=30)
RESEND_SENT_AFTER = timedelta(minutes=15)


def _enqueue(task: str, object_id: int) -> bool:
    try:
        current_app.send_task(task, args=[object_id])
    except (BrokerError, OSError) as error:
        # Never run inline: the periodic mender sends it again once the broker is back.
        logger.warning("%s(%s) not enqueued (broker unavailable: %s)", task, object_id, error)
        return False
    return True


def _enqueue_run(run_id: int) -> None:
    if _enqueue(RUN_TASK, run_id):
        TrainingRun.objects.filter(pk=run_id).update(enqueued_at=timezone.now())


def training_run_request(
    *,
    project: Project,
    trigger: str,
    requested_by: User | None = None,
    params: dict[str, Any] | None = None,
    seed: int | None = None,
) -> tuple[TrainingRun, bool]:
    """Queue a training run of `project`, or return the one already queued or running.

    The run takes the project's training configuration and objective in force now (`params`
    and `seed` override the configuration for this run only). Returns (run, created). The run
    is sent to a worker once the transaction commits.
    """
    from apps.modeling.selectors import objective_current, training_config_current

    config = training_config_current(project=project)
    objective = objective_current(project=project)
    merged = {**config.params(), **(params or {})}
    feature_set = feature_selectors.feature_set_current(project=project)
    if feature_set is not None:
        merged.update(_derived_params(project, feature_set, merged.get("features") or []))
    if seed is None:
        seed = config.seed
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
                    objective=objective if objective.pk else None,
                    training_config=config if config.pk else None,
                    feature_set=feature_set,
                    progress_message="Waiting for a worker",
                )
        except IntegrityError:
            # Another process queued one between our check and insert: the constraint holds.
            return TrainingRun.objects.get(
                project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
            ), False
        if requested_by is not None:  # the scheduler's own runs are in the run list already
            audit_record(
                action=AuditAction.RETRAIN,
                actor=requested_by,
                summary=f"Asked for training run {run.pk} ({trigger})",
                project_id=project.pk,
                object_type="training run",
                object_id=run.pk,
            )
        transaction.on_commit(lambda: _enqueue_run(run.pk))
    return run, True


def _derived_params(
    project: Project, feature_set: FeatureSetVersion, chosen: list[str]
) -> dict[str, Any]:
    """What a run records of the feature set: its number, and the name and expression of
    each derived feature the model reads (those chosen, and those they read; all of them when
    the configuration chooses all features). The model computes them from this copy for as
    long as it lives, whatever the definitions become."""
    definitions = definitions_from(feature_set.definitions)
    if chosen:
        raw = list(
            Feature.objects.filter(project=project)
            .order_by("position")
            .values_list("name", flat=True)
        )
        # A definition that cannot be read fails the run, with the reason, when computed.
        with contextlib.suppress(ExpressionError):
            definitions = needed(definitions, raw, chosen)
    return {
        "feature_set": feature_set.number,
        "derived": [{"name": d.name, "expression": d.expression} for d in definitions],
    }


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
    dead_before = now - stale_run_after()
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=dead_before)
    for run_id, attempts in stale.values_list("pk", "attempts"):
        if attempts < MAX_ATTEMPTS:
            # Nothing of a dead attempt is kept (its model version is written in one
            # transaction at the very end), so the run can start over.
            retried = TrainingRun.objects.filter(
                pk=run_id, status=RunStatus.RUNNING, heartbeat_at__lt=dead_before
            ).update(
                status=RunStatus.QUEUED,
                enqueued_at=None,
                progress=0,
                progress_message="The worker running this stopped; trying again",
            )
            if retried:
                logger.warning("training run %s lost its worker; queued again", run_id)
                _enqueue_run(run_id)
        else:
            _fail(
                run_id,
                f"The worker running this stopped reporting, {attempts} times; the run was "
                "abandoned.",
            )
    unsent = Q(enqueued_at__isnull=True, created_at__lt=now - RESEND_UNSENT_AFTER)
    for run_id in TrainingRun.objects.filter(
        unsent | Q(enqueued_at__lt=now - RESEND_SENT_AFTER), status=RunStatus.QUEUED
    ).values_list("pk", flat=True):
        _enqueue_run(run_id)
    # A worker that died after a version was stored but before its predictions were, or a
    # deployment whose scores were never applied (broker down at deploy): send them again.
    # Only for a day: one that keeps failing (its model file lost) is not retried forever.
    settled = now - RESEND_UNSENT_AFTER
    recent = now - timedelta(days=1)
    # Predicting a million cases takes a while: resend only well after it should have ended.
    for version_id in ModelVersion.objects.filter(
        predictions_path="", created_at__lt=now - RESEND_SENT_AFTER, created_at__gt=recent
    ).values_list("pk", flat=True):
        _enqueue(PREDICT_TASK, version_id)
    newest = Deployment.objects.filter(project=OuterRef("project")).order_by("-id").values("pk")[:1]
    for deployment_id in Deployment.objects.filter(
        scores_applied_at__isnull=True,
        created_at__lt=settled,
        created_at__gt=recent,
        pk=Subquery(newest),
    ).values_list("pk", flat=True):
        _enqueue(APPLY_TASK, deployment_id)


def _progress(run_id: int, percent: int, message: str) -> None:
    updated = TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        progress=percent, progress_message=message[:200], heartbeat_at=timezone.now()
    )
    # Between two steps of training: a cancelled run stops here, before the next one.
    if not updated and _run_status(run_id) == RunStatus.CANCELLED:
        raise RunCancelled


def _run_status(run_id: int) -> str | None:
    return TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first()


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
    run = TrainingRun.objects.select_related("project", "objective").get(pk=run_id)
    written: list[Path] = []
    # Not inside a caller's transaction (tests): the thread's own connection would wait on it.
    cancellation = Cancellation()
    heartbeat = None if connection.in_atomic_block else _Heartbeat(run_id, cancellation)
    if heartbeat:
        heartbeat.start()
    try:
        try:
            with cancellation.working():
                _train(run, written, cancellation)
        except RunCancelled:
            raise
        except TrainingError as error:
            _fail(run_id, str(error))
        except Exception as error:
            logger.exception("training run %s failed", run_id)
            _fail(run_id, f"{type(error).__name__}: {error}\n\n{traceback.format_exc(limit=5)}")
    except RunCancelled:
        logger.info("training run %s was cancelled; it stopped", run_id)
    finally:
        if heartbeat:
            heartbeat.done.set()
        run.refresh_from_db()
        if run.status != RunStatus.SUCCEEDED:
            for path in written:
                path.unlink(missing_ok=True)
    return run


def training_run_cancel(*, run: TrainingRun, user: User) -> bool:
    """Cancel a queued or running run; its worker stops within seconds and stores nothing.

    The project can be trained again at once (only queued and running runs block a new one).
    Returns False when the run had already finished, failed or been cancelled.
    """
    now = timezone.now()
    with transaction.atomic():
        cancelled = TrainingRun.objects.filter(pk=run.pk, status__in=ACTIVE_STATUSES).update(
            status=RunStatus.CANCELLED,
            cancelled_by=user,
            cancelled_at=now,
            finished_at=now,
            progress_message=f"Cancelled by {user.username}",
        )
        if cancelled:
            audit_record(
                action=AuditAction.CANCEL_RUN,
                actor=user,
                summary=f"Cancelled training run {run.pk} ({run.get_status_display().lower()})",
                project_id=run.project_id,
                object_type="training run",
                object_id=run.pk,
                detail={"status": run.status},
            )
    if cancelled:
        run.refresh_from_db()
    return bool(cancelled)


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


@dataclass
class TrainingData:
    """The labeled cases a run trains on, after its window and feature choice."""

    X: np.ndarray
    y: np.ndarray
    occurred_at: np.ndarray
    case_ids: np.ndarray
    feature_names: list[str]
    window: dict[str, Any]
    y_codes: np.ndarray | None = None  # each label's class position, when the snapshot had it


def training_data(
    *,
    snapshot_case_ids: np.ndarray,
    snapshot_values: np.ndarray,
    matrix,
    params: dict[str, Any],
    snapshot_codes: np.ndarray | None = None,
) -> TrainingData:
    """Cut a label snapshot down to the run's window and features. The same function serves a
    run and its reproduction, so both see exactly the same rows and columns."""
    position = np.searchsorted(matrix.case_ids, snapshot_case_ids)
    if len(position) and (
        position.max() >= len(matrix.case_ids)
        or not np.array_equal(matrix.case_ids[position], snapshot_case_ids)
    ):
        raise TrainingError("The label snapshot names cases that no longer exist.")
    derived = definitions_from(params.get("derived") or [])
    derived_names = [d.name for d in derived]
    names = list(params.get("features") or [*matrix.feature_names, *derived_names])
    missing = [n for n in names if n not in matrix.feature_names and n not in derived_names]
    if missing:
        raise TrainingError(
            f"The configuration names unknown features: {', '.join(missing)}. A derived "
            "feature retired since? Choose the features again on the Models page."
        )
    occurred = matrix.occurred_at[position]
    keep = window_select(occurred, params.get("window_months"))
    window: dict[str, Any] = {"months": params.get("window_months"), "cases": len(keep)}
    if params.get("window_months") and len(keep):
        window["from"] = str(occurred[keep].min())[:10]
        window["to"] = str(occurred[keep].max())[:10]
    rows = position[keep]
    X = run_columns(names=names, derived=params.get("derived") or [], matrix=matrix, rows=rows)
    return TrainingData(
        X=X,
        y=snapshot_values[keep],
        occurred_at=occurred[keep],
        case_ids=snapshot_case_ids[keep],
        feature_names=names,
        window=window,
        y_codes=None if snapshot_codes is None else snapshot_codes[keep],
    )


def run_columns(
    *,
    names: list[str],
    derived: list[dict[str, str]],
    matrix: FeatureMatrix,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """The matrix a model reads: its features `names` for `rows` of the project's raw matrix
    (all rows when None), derived ones computed from the definitions the run recorded."""
    if all(n in matrix.feature_names for n in names):
        columns = [matrix.feature_names.index(n) for n in names]
        every_column = columns == list(range(len(matrix.feature_names)))
        if rows is None:
            return matrix.values if every_column else matrix.values[:, columns]
        if every_column and len(rows) and rows[-1] - rows[0] + 1 == len(rows):
            # Consecutive cases (every case labeled, a window of the newest): a view, no copy.
            return matrix.values[rows[0] : rows[-1] + 1]
        # One copy of the rows wanted (and only then of the columns wanted).
        return matrix.values[rows] if every_column else matrix.values[np.ix_(rows, columns)]
    try:
        return feature_columns(
            names, matrix.values, matrix.feature_names, definitions_from(derived), rows
        )
    except ExpressionError as error:
        raise TrainingError(f"A derived feature cannot be computed: {error}") from error


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
    transaction.on_commit(lambda: _enqueue(LABEL_ISSUES_TASK, version.pk))


def _predictions_path(version: ModelVersion) -> Path:
    return model_dir(version.project_id) / f"run-{version.training_run_id}-predictions.parquet"


def version_predictions_store(
    *,
    version_id: int,
    pipeline: Pipeline | None = None,
    matrix=None,
    deploy_if_due: bool = True,
    proba: np.ndarray | None = None,
) -> ModelVersion:
    """Predict every case of the project with a model version and keep the probabilities
    (Parquet, one column per class). With `deploy_if_due`, deploys the version when the
    project has none in production yet, or when it deploys every new version automatically and
    this one is newer than production. Idempotent. `proba`: the version's probabilities for
    every case of `matrix`, when the caller has them already."""
    version = ModelVersion.objects.select_related("training_run", "project").get(pk=version_id)
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
    current = _deployment_current(project.pk)
    due = current is None or (project.auto_deploy and current.model_version.number < version.number)
    if current is not None and current.model_version_id == version.pk:
        due = False  # deployed already (by a duplicate of this task)
    if deploy_if_due and due:
        deployment = model_version_deploy(
            version=version,
            deployed_by=None,
            action=DeploymentAction.AUTO,
            note="First model of the project" if current is None else "Automatic deploy",
            # Storing a million case scores is the deploy's work, not the run's: it goes to
            # the default queue, as a deploy from the page does, and the training worker is
            # free for the next run. Predictions are served from the new version already.
            apply_now=False,
        )
        logger.info(
            "project %s: version %s deployed (%s)", project.pk, version.number, deployment.pk
        )
    return version


def version_predictions_load(version: ModelVersion) -> tuple[np.ndarray, np.ndarray]:
    """(case ids, probabilities) of a version's stored predictions, made first if missing."""
    path = Path(version.predictions_path) if version.predictions_path else None
    if path is None or not path.is_file():
        version = version_predictions_store(version_id=version.pk, deploy_if_due=False)
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


# ---------------------------------------------------------------------------------------------
# Deploy and roll back.


def _deployment_current(project_id: int) -> Deployment | None:
    return Deployment.objects.filter(project_id=project_id).order_by("-id").first()


def model_version_deploy(
    *,
    version: ModelVersion,
    deployed_by: User | None,
    action: str = DeploymentAction.DEPLOY,
    note: str = "",
    apply_now: bool = False,
) -> Deployment:
    """Make a version the project's production model.

    One row inserted: the predict API reads the newest row per request, so every answer comes
    wholly from the old or the new version, and none fails while the switch happens. The
    version's predictions of every case then replace the stored scores in the worker (or here,
    with `apply_now`, when already in the worker)."""
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=version.project_id)
        current = _deployment_current(version.project_id)
        if current is not None and current.model_version_id == version.pk:
            raise ValidationError(f"Version {version.number} is already in production.")
        deployment = Deployment.objects.create(
            project_id=version.project_id,
            model_version=version,
            action=action,
            note=note[:300],
            deployed_by=deployed_by,
        )
        audit_record(
            action=AuditAction.ROLLBACK
            if action == DeploymentAction.ROLLBACK
            else AuditAction.DEPLOY,
            actor=deployed_by,
            summary=f"{DeploymentAction(action).label}: version {version.number}"
            + (f" (was {current.model_version.number})" if current else ""),
            project_id=version.project_id,
            object_type="model version",
            object_id=version.number,
            detail={"note": note[:300], "deployment": deployment.pk},
        )
        if not apply_now:
            transaction.on_commit(lambda: _enqueue(APPLY_TASK, deployment.pk))
        # The review board shows production's verdicts. A version rolled back to may have had
        # its verdicts dropped (only production's and the newest are kept): it gets them again.
        # A version that has them is left as it is (the task is idempotent).
        transaction.on_commit(lambda: _enqueue(LABEL_ISSUES_TASK, version.pk))
    if apply_now:
        deployment_apply(deployment_id=deployment.pk)
    return deployment


def model_version_rollback(
    *,
    project: Project,
    deployed_by: User | None,
    to_version: ModelVersion | None = None,
    note: str = "",
) -> Deployment:
    """Go back to the version that served before the current one, or to a chosen earlier one."""
    history = list(
        Deployment.objects.filter(project=project).order_by("-id").select_related("model_version")
    )
    if not history:
        raise ValidationError("Nothing is deployed yet: there is nothing to roll back.")
    current = history[0].model_version
    if to_version is None:
        # The newest version that served before and is older than the current one, so that
        # rolling back twice goes back twice.
        earlier = [d.model_version for d in history[1:] if d.model_version.number < current.number]
        if not earlier:
            raise ValidationError(
                f"Version {current.number} is the only one ever deployed: there is no earlier one."
            )
        to_version = earlier[0]
    if to_version.project_id != project.pk:
        raise ValidationError("That version belongs to another project.")
    if to_version.number >= current.number:
        raise ValidationError(
            f"Version {to_version.number} is not earlier than version {current.number} in "
            "production; deploy it instead."
        )
    return model_version_deploy(
        version=to_version,
        deployed_by=deployed_by,
        action=DeploymentAction.ROLLBACK,
        note=note or f"Rolled back from version {current.number}",
    )


def deployment_apply(*, deployment_id: int) -> bool:
    """Store a deployed version's predictions as the project's case scores and re-rank the
    queue. Idempotent; does nothing for a deployment that a newer one has replaced."""
    deployment = Deployment.objects.select_related("model_version__project").get(pk=deployment_id)
    if deployment.scores_applied_at is not None:
        return False
    version = deployment.model_version
    case_ids, proba = version_predictions_load(version)
    classes = list(version.project.classes)
    decided = version_decisions(version, proba)
    with transaction.atomic():
        # The project lock orders this against a newer deployment's apply.
        Project.objects.select_for_update().get(pk=version.project_id)
        newest = _deployment_current(version.project_id)
        if newest is None or newest.pk != deployment.pk:
            return False
        if Deployment.objects.filter(pk=deployment.pk, scores_applied_at__isnull=False).exists():
            return False  # a duplicate of this task applied it while we read the file
        case_scores_replace(
            project_id=version.project_id,
            model_version_number=version.number,
            case_ids=case_ids,
            predicted_labels=[classes[i] for i in decided],
            confidences=proba[np.arange(len(decided)), decided],
            probabilities=proba,
        )
        Deployment.objects.filter(pk=deployment.pk).update(scores_applied_at=timezone.now())
    # The queue's model-based strategies rank by these scores: re-rank here, in the worker,
    # so that handing out a case never sorts cases. A re-rank that fails is sent again.
    try:
        queue_refresh(project_id=version.project_id)
    except Exception:
        logger.exception("re-ranking the queue of project %s failed; retrying", version.project_id)
        queue_refresh_request(project_id=version.project_id)
    try:
        monitoring_check(project_id=version.project_id)
    except Exception:
        logger.exception("checking project %s's production model failed", version.project_id)
    return True


# ---------------------------------------------------------------------------------------------
# Monitoring: imbalance, a degenerate model, staleness and drift.

DRIFT_SAMPLE = 50_000


def _alert(kind: str, severity: str, title: str, figure: str, action: str, **extra: Any) -> dict:
    return {
        "kind": kind,
        "severity": severity,
        "title": title,
        "figure": figure,
        "action": action,
        **extra,
    }


@dataclass
class LiveCases:
    """Labeled cases a version never saw (dated after what it was evaluated on), with its
    stored predictions of them."""

    labels: np.ndarray
    proba: np.ndarray
    occurred_at: np.ndarray


def _labeled_after(project_id: int, after: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(case ids, current labels, dates) of the labeled cases dated after `after`, by id."""
    rows = list(
        Case.objects.filter(project_id=project_id, occurred_at__gt=after)
        .exclude(current_label="")
        .order_by("id")
        .values_list("id", "current_label", "occurred_at")
    )
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    labels = np.array([r[1] for r in rows], dtype=object)
    when = np.array([r[2].replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
    return ids, labels, when


def _rows_of(case_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` sits in a version's predictions (`case_ids`, sorted), and whether
    it is there at all: cases imported after the version predicted are not."""
    if not len(case_ids):
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    position = np.minimum(np.searchsorted(case_ids, ids), len(case_ids) - 1)
    return position, case_ids[position] == ids


def _live_cases(version: ModelVersion, after: str) -> LiveCases:
    case_ids, proba = version_predictions_load(version)
    ids, labels, when = _labeled_after(version.project_id, after)
    position, known = _rows_of(case_ids, ids)
    return LiveCases(labels=labels[known], proba=proba[position[known]], occurred_at=when[known])


def month(day: str | None) -> str | None:
    return day[:7] if day else None


def _periods(dates: np.ndarray) -> list[str] | None:
    dated = dates[~np.isnat(dates)]
    if not len(dated):
        return None
    months = dated.astype("datetime64[M]")
    return [str(months.min()), str(months.max())]


def _drift(version: ModelVersion, recent_months: int) -> list[dict]:
    """PSI of each feature the version uses: its training period against the most recent
    `recent_months` months of cases (labeled or not)."""
    period = version.metrics.get("train_period")
    if not period:
        return []
    matrix = case_feature_matrix(project_id=version.project_id)
    dated = ~np.isnat(matrix.occurred_at)
    if not dated.any():
        return []
    newest = matrix.occurred_at[dated].max().astype("datetime64[M]")
    recent_start = (newest - np.timedelta64(recent_months - 1, "M")).astype("datetime64[us]")
    start, end = (np.datetime64(period[0]), np.datetime64(period[1]) + np.timedelta64(1, "D"))
    reference = np.flatnonzero(dated & (matrix.occurred_at >= start) & (matrix.occurred_at < end))
    recent = np.flatnonzero(dated & (matrix.occurred_at >= recent_start))
    rng = np.random.default_rng(0)
    if len(reference) > DRIFT_SAMPLE:
        reference = rng.choice(reference, DRIFT_SAMPLE, replace=False)
    if len(recent) > DRIFT_SAMPLE:
        recent = rng.choice(recent, DRIFT_SAMPLE, replace=False)
    if len(reference) < MIN_SLICE_CASES or len(recent) < MIN_SLICE_CASES:
        return []
    rows = []
    run = version.training_run
    names = list(run.feature_names)
    derived = run.params.get("derived") or []
    older = run_columns(names=names, derived=derived, matrix=matrix, rows=np.sort(reference))
    newer = run_columns(names=names, derived=derived, matrix=matrix, rows=np.sort(recent))
    for j, name in enumerate(names):
        psi = population_stability(older[:, j], newer[:, j])
        if psi is not None:
            rows.append({"feature": name, "psi": round(psi, 4)})
    rows.sort(key=lambda r: -r["psi"])
    return [
        {**r, "reference": f"{period[0]} – {period[1]}", "recent_from": str(recent_start)[:10]}
        for r in rows
    ]


def monitoring_check(*, project_id: int) -> MonitoringReport:
    """Look at the production model as the periodic job does, and keep what was found."""
    project = Project.objects.get(pk=project_id)
    deployment = _deployment_current(project_id)
    figures: dict[str, Any] = {}
    alerts: list[dict] = []
    version = deployment.model_version if deployment else None
    classes = list(project.classes)
    if version is not None:
        objective = version.objective.spec() if version.objective_id else ObjectiveSpec()
        shares = dict(
            CaseScore.objects.filter(project_id=project_id)
            .values_list("predicted_label")
            .annotate(n=Count("id"))
            .values_list("predicted_label", "n")
        )
        total = sum(shares.values()) or 1
        predicted_share = {c: shares.get(c, 0) / total for c in project.classes}
        recall = {
            c: pc.get("recall")
            for c, pc in version.metrics.get("per_class", {}).items()
            if pc.get("support")
        }
        figures["predicted_share"] = predicted_share
        found = degenerate(predicted_share, recall)
        if found and found["kind"] == "one_class":
            alerts.append(
                _alert(
                    "degenerate",
                    "danger",
                    f"Version {version.number} predicts {found['class']!r} for "
                    f"{found['share']:.1%} of cases",
                    f"{found['share']:.1%} of the {total:,} cases it scored (alert at 99%)",
                    "Target the minority class in the queue, or train with balanced class "
                    "weights, then retrain.",
                )
            )
        elif found:
            recall_text = ", ".join(f"{c} {r:.2f}" for c, r in found["recall"].items())
            alerts.append(
                _alert(
                    "degenerate",
                    "danger",
                    f"Version {version.number} almost never finds {', '.join(found['classes'])}",
                    f"held-out recall {recall_text}",
                    "Target the minority class in the queue, or train with balanced class "
                    "weights, then retrain.",
                )
            )
        # Recent against older, each pooled: labeled cases that came after the version's
        # held-out period against that held-out period; before any have come, the held-out
        # period (the most recent at training) against cross-validation on the older part.
        metrics = version.metrics
        test_period = metrics.get("test_period")
        held_out = {
            "value": version.objective_value,
            "n": metrics.get("n_test", 0),
            "periods": [month(d) for d in test_period] if test_period else None,
            "what": "its held-out cases",
        }
        slices = [dict(s) for s in version.evaluation.get("slices", [])]
        live = _live_cases(version, test_period[1] + "T23:59:59Z") if test_period else None
        if live is not None and len(live.labels):
            slices += month_slices(
                live.occurred_at,
                live.labels,
                live.proba,
                classes,
                objective,
                version.threshold,
                "since training",
            )
            recent = {
                "value": objective_value(
                    objective, live.labels, live.proba, classes, version.threshold
                ),
                "n": len(live.labels),
                "periods": _periods(live.occurred_at),
                "what": "cases labeled since training",
            }
            stale = staleness(
                recent, held_out, objective.greater_is_better, project.alert_stale_margin
            )
        else:
            train_period = metrics.get("train_period")
            cross_validated = {
                "value": metrics.get("cv_objective"),
                "n": version.evaluation.get("cross_validation", {}).get("n", 0),
                "periods": [month(d) for d in train_period] if train_period else None,
                "what": "cross-validation on the older cases",
            }
            stale = staleness(
                held_out, cross_validated, objective.greater_is_better, project.alert_stale_margin
            )
        figures["slices"] = slices
        figures["staleness"] = stale
        if stale and stale["stale"]:
            recent_p = stale["recent_periods"] or ["?", "?"]
            older_p = stale["older_periods"] or ["?", "?"]
            alerts.append(
                _alert(
                    "stale",
                    "danger",
                    f"Version {version.number} is stale on recent cases",
                    f"{objective.describe()} {stale['recent']:.3f} on {stale['recent_n']:,} "
                    f"{stale['recent_what']} ({recent_p[0]}..{recent_p[1]}) against "
                    f"{stale['older']:.3f} on {stale['older_what']} ({older_p[0]}..{older_p[1]});"
                    f" margin {project.alert_stale_margin:g}",
                    "Retrain on a recent window (training configuration: last N months).",
                )
            )
        drift = _drift(version, project.alert_recent_months)
        figures["drift"] = drift
        shifted = [d for d in drift if d["psi"] > project.alert_psi_threshold]
        if shifted:
            alerts.append(
                _alert(
                    "drift",
                    "warning",
                    f"Feature drift in {', '.join(d['feature'] for d in shifted[:3])}"
                    + (f" and {len(shifted) - 3} more" if len(shifted) > 3 else ""),
                    ", ".join(f"PSI {d['feature']} {d['psi']:.2f}" for d in shifted[:3])
                    + f" (threshold {project.alert_psi_threshold:g}; recent cases from "
                    f"{shifted[0]['recent_from']})",
                    "Check how the feature is measured now (a new assay or unit?), then "
                    "retrain on a recent window.",
                )
            )
    return MonitoringReport.objects.create(
        project=project, model_version=version, figures=figures, alerts=alerts
    )


def monitoring_check_all() -> list[int]:
    """The periodic job: check every project that has a model in production."""
    checked = []
    for project_id in Deployment.objects.values_list("project_id", flat=True).distinct():
        try:
            monitoring_check(project_id=project_id)
            checked.append(project_id)
        except Exception:
            logger.exception("monitoring project %s failed", project_id)
    return checked


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


# ---------------------------------------------------------------------------------------------
# Objective and training configuration: versioned, every change a new row.


def objective_change(
    *,
    project: Project,
    changed_by: User | None,
    metric: str,
    positive_class: str = "",
    beta: float = 1.0,
    min_precision: float = 0.8,
    k: int = 100,
    cost_matrix: list[list[float]] | None = None,
    note: str = "",
) -> Objective:
    """Set the metric the project optimizes from now on; earlier rows stay as history.

    Runs already trained keep the objective they were chosen under."""
    spec = ObjectiveSpec(
        metric=metric,
        positive_class=positive_class or "",
        beta=float(beta),
        min_precision=float(min_precision),
        k=int(k),
        cost_matrix=cost_matrix or [],
    )
    try:
        objective_check(spec, list(project.classes))
    except ObjectiveError as error:
        raise ValidationError({"objective": str(error)}) from error
    with transaction.atomic():
        objective = Objective.objects.create(
            project=project,
            metric=spec.metric,
            positive_class=spec.positive_class,
            beta=spec.beta,
            min_precision=spec.min_precision,
            k=spec.k,
            cost_matrix=spec.cost_matrix if metric == "expected_cost" else [],
            note=note[:300],
            changed_by=changed_by,
        )
        audit_record(
            action=AuditAction.OBJECTIVE,
            actor=changed_by,
            summary=f"Objective: {objective.spec().describe()}"[:300],
            project_id=project.pk,
            object_type="objective",
            object_id=objective.pk,
            detail={"note": note[:300]},
        )
    return objective


# Hyperparameters a configuration may set, per family, with their types.
def _hyperparameters_check(
    model_family: str, hyperparameters: dict[str, Any] | None
) -> tuple[dict[str, int | float], str]:
    """The hyperparameters as numbers, and what is wrong with them ("" when nothing): every
    unknown name and every value outside its family's range is named, with the range. Under
    "auto" a name is checked against each family that reads it."""
    families = (
        HYPERPARAMETER_RANGES
        if model_family == "auto"
        else {model_family: HYPERPARAMETER_RANGES.get(model_family, {})}
    )
    known = sorted({name for spec in families.values() for name in spec})
    hyper: dict[str, int | float] = {}
    problems: list[str] = []
    for name, raw in (hyperparameters or {}).items():
        readers = [family for family, spec in families.items() if name in spec]
        if not readers:
            problems.append(
                f"{name!r} is not a hyperparameter of {model_family}; "
                f"known: {', '.join(known) or 'none'}."
            )
            continue
        try:
            for family in readers:
                hyper[name] = hyperparameter_value(family, name, raw)
        except HyperparameterError as error:
            problems.append(str(error))
    return hyper, " ".join(problems)


def training_config_change(
    *,
    project: Project,
    changed_by: User | None,
    model_family: str,
    class_weight: str = "",
    window_months: int | None = None,
    features: list[str] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    cv_folds: int = 5,
    note: str = "",
) -> TrainingConfig:
    """Set how the project trains from now on; earlier rows stay as history."""
    errors: dict[str, str] = {}
    if model_family not in ModelFamily.values:
        errors["model_family"] = (
            f"Unknown model family {model_family!r}; choose one of {', '.join(ModelFamily.values)}."
        )
    if class_weight not in ("", "balanced"):
        errors["class_weight"] = "Class weighting is none or balanced."
    if window_months is not None and not 1 <= int(window_months) <= 600:
        errors["window_months"] = "The training window is 1 to 600 months, or empty for all data."
    # Raw features and the derived ones in force: a model may read either.
    known = feature_selectors.feature_names(project=project)
    chosen = [f.strip() for f in (features or []) if f.strip()]
    unknown = [f for f in chosen if f not in known]
    if unknown:
        errors["features"] = f"Not features of this project: {', '.join(unknown)}."
    hyper, hyper_error = _hyperparameters_check(model_family, hyperparameters)
    if hyper_error:
        errors["hyperparameters"] = hyper_error
    if not 0.05 <= float(test_fraction) <= 0.5:
        errors["test_fraction"] = "The held-out share is between 0.05 and 0.5."
    if not 2 <= int(cv_folds) <= 10:
        errors["cv_folds"] = "Cross-validation uses 2 to 10 folds."
    if int(seed) < 0:
        errors["seed"] = "The seed is a non-negative integer."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        config = TrainingConfig.objects.create(
            project=project,
            model_family=model_family,
            class_weight=class_weight,
            window_months=int(window_months) if window_months else None,
            features=[f for f in known if f in chosen],  # in the project's order
            hyperparameters=hyper,
            seed=int(seed),
            test_fraction=float(test_fraction),
            cv_folds=int(cv_folds),
            note=note[:300],
            changed_by=changed_by,
        )
        audit_record(
            action=AuditAction.TRAINING_CONFIG,
            actor=changed_by,
            summary=f"Training configuration: {model_family}"
            + (f", last {config.window_months} months" if config.window_months else "")
            + (", balanced classes" if class_weight else ""),
            project_id=project.pk,
            object_type="training configuration",
            object_id=config.pk,
            detail={"params": config.params(), "note": note[:300]},
        )
    return config


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
    transaction.on_commit(lambda: _enqueue("modeling.reproduce_run", run.pk))


# ---------------------------------------------------------------------------------------------
# Two versions side by side.


def _out_of_sample_cases(
    a: ModelVersion, b: ModelVersion
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Labeled cases neither version trained on: dated after both training periods ended.
    Returns (case ids, current labels, dates, a description)."""
    ends = [(v.metrics.get("train_period") or [None, None])[1] for v in (a, b)]
    if None in ends:
        return np.empty(0, np.int64), np.empty(0, object), np.empty(0, "datetime64[us]"), ""
    cutoff = max(ends)
    ids, labels, when = _labeled_after(a.project_id, cutoff + "T23:59:59Z")
    return ids, labels, when, f"labeled cases dated after {cutoff}"


def model_versions_compare(
    *, a: ModelVersion, b: ModelVersion, objective: Objective
) -> dict[str, Any]:
    """Both versions under the project's objective now, on the same cases where there are
    some that neither trained on, plus what each recorded when it was trained."""
    spec = objective.spec()
    classes = list(a.project.classes)
    ids, labels, when, described = _out_of_sample_cases(a, b)
    common: dict[str, Any] | None = None
    slices: list[list[dict]] = [[], []]
    recalls: list[float | None] = [None, None]
    positive = positive_index(spec, classes)
    if len(ids):
        values = []
        known = np.ones(len(ids), dtype=bool)
        predicted: list = []
        for version in (a, b):
            case_ids, proba = version_predictions_load(version)
            position, present = _rows_of(case_ids, ids)
            known &= present  # compare only the cases both versions predicted
            predicted.append((proba, position))
        ids, labels, when = ids[known], labels[known], when[known]
        for n, (version, (proba, position)) in enumerate(zip((a, b), predicted, strict=True)):
            here = proba[position[known]]
            threshold = threshold_for(version, spec)
            values.append(objective_value(spec, labels, here, classes, threshold))
            is_positive = labels == classes[positive]
            if is_positive.any():
                decided = decide(here[is_positive], threshold, positive)
                recalls[n] = float(np.mean(decided == positive))
            slices[n] = month_slices(
                when, labels, here, classes, spec, threshold, f"v{version.number}"
            )
        common = (
            None
            if not len(ids)
            else {
                "cases": len(ids),
                "described": described,
                "a": values[0],
                "b": values[1],
                "recall_a": recalls[0],
                "recall_b": recalls[1],
                "positive_class": classes[positive],
                "better": "a"
                if better(spec, values[0], values[1])
                else "b"
                if better(spec, values[1], values[0])
                else None,
            }
        )
    rows = []

    def metric(version: ModelVersion, key: str) -> Any:
        return version.metrics.get(key)

    for label, key in (
        ("Accuracy", "accuracy"),
        ("Balanced accuracy", "balanced_accuracy"),
        ("ROC AUC", "roc_auc"),
        ("PR AUC", "pr_auc"),
        ("Macro F1", "macro_f1"),
    ):
        rows.append({"label": label, "a": metric(a, key), "b": metric(b, key), "number": True})

    def chosen_under(v: ModelVersion) -> str:
        return (v.evaluation or {}).get("objective_label") or "Accuracy"

    same_objective = chosen_under(a) == chosen_under(b)
    for label, getter, kind in (
        ("Chosen under", chosen_under, "text"),
        (
            "Its objective, held-out" + ("" if same_objective else " (each its own)"),
            lambda v: v.objective_value,
            "number",
        ),
        (
            "Its objective, cross-validated" + ("" if same_objective else " (each its own)"),
            lambda v: v.metrics.get("cv_objective"),
            "number",
        ),
        ("Model family", lambda v: v.get_model_family_display(), "text"),
        (
            "Decision threshold",
            lambda v: f"{v.threshold:.3f}" if v.threshold is not None else "most probable class",
            "text",
        ),
        ("Trained on (cases)", lambda v: v.metrics.get("n_train"), "count"),
        ("Held-out cases", lambda v: v.metrics.get("n_test"), "count"),
        (
            "Held-out period",
            lambda v: " – ".join(v.metrics.get("test_period") or []) or "—",
            "text",
        ),
        (
            "Training window",
            lambda v: (
                f"last {months} months"
                if (months := (v.metrics.get("window") or {}).get("months"))
                else "all data"
            ),
            "text",
        ),
        ("Features", lambda v: len(v.training_run.feature_names), "count"),
        ("Seed", lambda v: v.training_run.seed, "text"),
    ):
        rows.append(
            {
                "label": label,
                "a": getter(a),
                "b": getter(b),
                "number": kind == "number",
                "count": kind == "count",
            }
        )
    return {
        "common": common,
        "rows": rows,
        "slices": slices,
        "features": _feature_difference(a, b, spec, common, slices),
    }


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _moved(before: float, after: float, greater_is_better: bool) -> str:
    """'raised … from 0.61 to 0.68' in the objective's direction (three decimals where two
    would not show the difference)."""
    digits = 2 if round(before, 2) != round(after, 2) else 3
    if round(before, digits) == round(after, digits):
        return f"left {{}} unchanged at {after:.{digits}f}"
    verb = "raised" if after > before else "lowered"
    good = (after > before) == greater_is_better
    return f"{verb} {{}} from {before:.{digits}f} to {after:.{digits}f}" + (
        "" if greater_is_better else f" ({'better' if good else 'worse'})"
    )


def _feature_difference(
    a: ModelVersion,
    b: ModelVersion,
    spec: ObjectiveSpec,
    common: dict[str, Any] | None,
    slices: list[list[dict]],
) -> dict[str, Any] | None:
    """What differs between the two versions' features (added, removed, derived features
    defined differently), and what it did: the objective on the cases neither trained on,
    pooled and per month, in a sentence ("adding egfr raised recall on the recent slice from
    0.61 to 0.68"). None when both read the same features the same way."""
    runs = (a.training_run, b.training_run)
    names = [list(r.feature_names) for r in runs]
    defined = [{d["name"]: d["expression"] for d in r.params.get("derived") or []} for r in runs]
    added = [n for n in names[1] if n not in names[0]]
    removed = [n for n in names[0] if n not in names[1]]
    changed = [n for n in names[0] if n in names[1] and defined[0].get(n) != defined[1].get(n)]
    if not (added or removed or changed):
        return None
    parts = []
    if added:
        parts.append(f"adding {_names(added)}")
    if removed:
        parts.append(f"removing {_names(removed)}")
    if changed:
        parts.append(f"redefining {_names(changed)}")
    change = " and ".join(parts)
    change = change[0].upper() + change[1:] + f" (v{a.number} → v{b.number})"
    metric = spec.describe()
    sentences = []
    if common and common["a"] is not None and common["b"] is not None:
        moved = _moved(common["a"], common["b"], spec.greater_is_better)
        sentences.append(
            f"{change} {moved.format(metric)} on the recent slice ({common['cases']:,} "
            f"{common['described']})."
        )
        if common.get("recall_a") is not None and common.get("recall_b") is not None:
            recall = _moved(common["recall_a"], common["recall_b"], True)
            sentences.append(
                f"On the same cases it {recall.format('recall of ' + common['positive_class'])}."
            )
    else:
        held = [v.objective_value for v in (a, b)]
        same = all(v.objective_id == a.objective_id for v in (a, b))
        if None not in held and same:
            moved = _moved(held[0], held[1], spec.greater_is_better)
            sentences.append(
                f"{change} {moved.format(metric)} on each version's own held-out cases (not "
                "the same cases: no labeled case lies after both training periods yet)."
            )
        else:
            sentences.append(
                f"{change}; no labeled case lies after both training periods yet to measure "
                "the effect on the same cases."
            )
    by_period: dict[str, dict[str, Any]] = {}
    for side, rows in zip(("a", "b"), slices, strict=True):
        for row in rows:
            entry = by_period.setdefault(row["period"], {"period": row["period"], "n": row["n"]})
            entry[side] = row["objective"]
            entry[f"{side}_undefined"] = row.get("undefined")
    per_slice = [by_period[p] for p in sorted(by_period)]
    for entry in per_slice:
        if entry.get("a") is not None and entry.get("b") is not None:
            entry["change"] = f"{entry['b'] - entry['a']:+.3f}"
    return {
        "added": [{"name": n, "expression": defined[1].get(n, "")} for n in added],
        "removed": [{"name": n, "expression": defined[0].get(n, "")} for n in removed],
        "changed": [
            {"name": n, "a": defined[0].get(n, ""), "b": defined[1].get(n, "")} for n in changed
        ],
        "feature_sets": [r.params.get("feature_set") for r in runs],
        "sentences": sentences,
        "slices": per_slice,
        "metric": metric,
    }


def threshold_for(version: ModelVersion, spec: ObjectiveSpec) -> float | None:
    """A version's threshold serves its own objective; under another objective the fair
    comparison is the most probable class."""
    same = version.objective_id and version.objective.spec() == spec
    default = (
        not version.objective_id
        and spec.metric == "accuracy"
        and spec.positive_class in ("", version.positive_class)
    )
    return version.threshold if same or default else None
