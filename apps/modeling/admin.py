"""Training runs, model versions and deployments in the admin: browsable, never editable; each
person sees the projects they are a data scientist or admin of.

A data scientist deploys or rolls back a version with the version list's actions, and cancels
a queued or running run with the run list's (retrain is an action of the project list)."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from apps.modeling.models import (
    Deployment,
    ModelVersion,
    MonitoringReport,
    Objective,
    TrainingConfig,
    TrainingRun,
)
from apps.modeling.services import (
    model_version_deploy,
    model_version_rollback,
    training_run_cancel,
)
from apps.projects.models import ROLE_RANK, Role
from config.admin_site import ProjectFilter
from config.admin_site import ReadOnlyProjectScopedAdmin as ReadOnlyAdmin


def _is_data_scientist(request, project_id: int) -> bool:
    if request.user.is_superuser:
        return True
    role = request.user.memberships.filter(project_id=project_id).values_list("role", flat=True)
    return bool(role) and ROLE_RANK[role[0]] >= ROLE_RANK[Role.DATA_SCIENTIST]


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "project",
        "status",
        "trigger",
        "progress",
        "created_at",
        "finished_at",
        "cancelled_by",
    ]
    list_filter = ["status", "trigger", ("project", ProjectFilter)]
    search_fields = ["project__name", "error"]
    actions = ["cancel"]

    @admin.action(description="Cancel the selected queued or running runs")
    def cancel(self, request, queryset) -> None:
        cancelled, refused = [], []
        for run in queryset.select_related("project"):
            if not _is_data_scientist(request, run.project_id):
                refused.append(f"run {run.pk} ({run.project}: needs the data scientist role)")
            elif training_run_cancel(run=run, user=request.user):
                cancelled.append(f"run {run.pk}")
            else:
                refused.append(f"run {run.pk} (already {run.get_status_display().lower()})")
        if cancelled:
            self.message_user(request, f"Cancelled {', '.join(cancelled)}; nothing of it is kept.")
        if refused:
            self.message_user(request, f"Not cancelled: {'; '.join(refused)}.", messages.WARNING)


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "project",
        "number",
        "model_family",
        "objective",
        "objective_value",
        "created_at",
    ]
    list_filter = [("project", ProjectFilter), "model_family"]
    actions = ["deploy", "rollback"]

    def _one(self, request, queryset) -> ModelVersion | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version.", messages.ERROR)
            return None
        version = queryset.select_related("project").get()
        if not _is_data_scientist(request, version.project_id):
            self.message_user(
                request,
                f"{version.project}: deploying needs the data scientist role in the project.",
                messages.ERROR,
            )
            return None
        return version

    @admin.action(description="Deploy the selected version to production")
    def deploy(self, request, queryset) -> None:
        version = self._one(request, queryset)
        if version is None:
            return
        try:
            model_version_deploy(version=version, deployed_by=request.user, note="From the admin")
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return
        self.message_user(request, f"{version.project}: version {version.number} deployed.")

    @admin.action(description="Roll back production to the selected (earlier) version")
    def rollback(self, request, queryset) -> None:
        version = self._one(request, queryset)
        if version is None:
            return
        try:
            model_version_rollback(
                project=version.project,
                deployed_by=request.user,
                to_version=version,
                note="Rolled back from the admin",
            )
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return
        self.message_user(request, f"{version.project}: rolled back to version {version.number}.")


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = [
        "project",
        "model_version",
        "action",
        "deployed_by",
        "created_at",
        "scores_applied_at",
    ]
    list_filter = [("project", ProjectFilter), "action"]


@admin.register(Objective)
class ObjectiveAdmin(ReadOnlyAdmin):
    list_display = ["project", "__str__", "changed_by", "created_at", "note"]
    list_filter = [("project", ProjectFilter), "metric"]


@admin.register(TrainingConfig)
class TrainingConfigAdmin(ReadOnlyAdmin):
    list_display = [
        "project",
        "model_family",
        "class_weight",
        "window_months",
        "seed",
        "changed_by",
        "created_at",
    ]
    list_filter = [("project", ProjectFilter), "model_family"]


@admin.register(MonitoringReport)
class MonitoringReportAdmin(ReadOnlyAdmin):
    list_display = ["project", "model_version", "created_at"]
    list_filter = [("project", ProjectFilter)]
