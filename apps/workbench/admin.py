"""Projects in the admin, with the action a data scientist uses to retrain."""

from django.contrib import admin, messages

from apps.modeling.models import RunTrigger
from apps.modeling.services import training_run_request
from apps.projects.models import ROLE_RANK, Feature, Membership, Project, Role
from config.admin_site import ProjectScopedAdmin, admin_project_ids


class _ShownWithTheProject:
    """An inline seen by whoever may see its project (the project list is already scoped)."""

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser or bool(admin_project_ids(request))


class FeatureInline(_ShownWithTheProject, admin.TabularInline):
    """Read-only: stored feature vectors are laid out by these positions."""

    model = Feature
    extra = 0
    fields = ["position", "name", "unit", "group", "description"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MembershipInline(_ShownWithTheProject, admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    list_display = ["name", "labels_version", "last_labeled_at", "auto_retrain", "created_at"]
    search_fields = ["name"]
    # Classes are fixed once created: labels refer to them by name.
    readonly_fields = ["classes", "labels_version", "last_labeled_at", "created_by", "created_at"]
    fields = [
        "name",
        "description",
        "classes",
        "show_predictions",
        "auto_retrain",
        "retrain_min_new_labels",
        "retrain_quiet_seconds",
        "auto_deploy",
        "alert_min_class_share",
        "alert_stale_margin",
        "alert_psi_threshold",
        "alert_recent_months",
        "labels_version",
        "last_labeled_at",
        "created_by",
        "created_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False  # projects are created in the app, where classes and features are checked

    inlines = [FeatureInline, MembershipInline]
    actions = ["retrain"]
    project_lookup = "pk"

    @admin.action(description="Retrain the selected projects")
    def retrain(self, request, queryset) -> None:
        for project in queryset:
            role = project.memberships.filter(user=request.user).values_list("role", flat=True)
            allowed = request.user.is_superuser or (
                role and ROLE_RANK[role[0]] >= ROLE_RANK[Role.DATA_SCIENTIST]
            )
            if not allowed:
                self.message_user(
                    request,
                    f"{project}: retraining needs the data scientist role in the project.",
                    messages.ERROR,
                )
                continue
            run, created = training_run_request(
                project=project, trigger=RunTrigger.ADMIN, requested_by=request.user
            )
            state = "queued" if created else f"already {run.status}"
            self.message_user(request, f"{project}: run {run.pk} {state}.", messages.SUCCESS)
