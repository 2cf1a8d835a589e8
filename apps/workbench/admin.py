"""Projects in the admin, with the action a data scientist uses to retrain."""

from django.contrib import admin, messages

from apps.modeling.models import RunTrigger
from apps.modeling.services import training_run_request
from apps.projects.models import ROLE_RANK, Feature, Membership, Project, Role


class FeatureInline(admin.TabularInline):
    model = Feature
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "labels_version", "last_labeled_at", "auto_retrain", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["labels_version", "last_labeled_at", "created_by", "created_at"]
    inlines = [FeatureInline, MembershipInline]
    actions = ["retrain"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(memberships__user=request.user)

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
