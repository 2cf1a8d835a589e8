"""Training runs: requested, scheduled, mended after a dead worker, claimed, executed under a
heartbeat, cancelled."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.core import tasks as task_queue
from apps.features import selectors as feature_selectors
from apps.features.compute import definitions_from, needed
from apps.features.expressions import ExpressionError
from apps.features.models import FeatureSetVersion
from apps.labeling.selectors import label_progress
from apps.modeling.ml.cancellation import Cancellation, RunCancelled
from apps.modeling.ml.training import (
    MIN_LABELED_CASES,
    TrainingError,
)
from apps.modeling.models import (
    ACTIVE_STATUSES,
    Deployment,
    ModelVersion,
    RunStatus,
    RunTrigger,
    TrainingRun,
)
from apps.modeling.services.common import APPLY_TASK, PREDICT_TASK, RUN_TASK, _fail, _run_status
from apps.modeling.services.training import _train
from apps.projects.models import Feature, Project

logger = logging.getLogger(__name__)


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


def _enqueue_run(run_id: int) -> None:
    if task_queue.task_send(RUN_TASK, run_id):
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
        task_queue.task_send(PREDICT_TASK, version_id)
    newest = Deployment.objects.filter(project=OuterRef("project")).order_by("-id").values("pk")[:1]
    for deployment_id in Deployment.objects.filter(
        scores_applied_at__isnull=True,
        created_at__lt=settled,
        created_at__gt=recent,
        pk=Subquery(newest),
    ).values_list("pk", flat=True):
        task_queue.task_send(APPLY_TASK, deployment_id)


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
