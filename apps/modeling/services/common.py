"""What the modeling services share: task names, a run's progress and failure, where models live."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.modeling.ml.cancellation import RunCancelled
from apps.modeling.models import (
    Deployment,
    RunStatus,
    TrainingRun,
)

logger = logging.getLogger(__name__)


RUN_TASK = "modeling.run_training"


APPLY_TASK = "modeling.apply_deployment"


PREDICT_TASK = "modeling.store_predictions"


LABEL_ISSUES_TASK = "review.find_label_issues"


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


def model_dir(project_id: int) -> Path:
    return Path(settings.CASEBOOK_MODEL_DIR) / f"project-{project_id}"


def _deployment_current(project_id: int) -> Deployment | None:
    return Deployment.objects.filter(project_id=project_id).order_by("-id").first()
