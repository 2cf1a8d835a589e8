"""Reads of training runs and model versions."""

from django.db.models import QuerySet

from apps.modeling.models import ModelVersion, RunStatus, TrainingRun
from apps.projects.models import Project


def training_run_list(*, project: Project) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=project).select_related("requested_by")


def training_run_active(*, project: Project) -> TrainingRun | None:
    return TrainingRun.objects.filter(
        project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
    ).first()


def training_run_get(*, project: Project, run_id: int) -> TrainingRun | None:
    return TrainingRun.objects.filter(project=project, pk=run_id).first()


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("training_run")


def model_version_latest(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project).order_by("-number").first()
