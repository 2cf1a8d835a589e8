"""Training runs and model versions in the admin: browsable, never editable."""

from django.contrib import admin

from apps.modeling.models import ModelVersion, TrainingRun


class ReadOnlyAdmin(admin.ModelAdmin):
    """Read-only, and staff who are not superusers see only their own projects' rows."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(project__memberships__user=request.user)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "status", "trigger", "progress", "created_at", "finished_at"]
    list_filter = ["status", "trigger", "project"]
    search_fields = ["project__name", "error"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["project", "number", "model_family", "accuracy", "created_at"]
    list_filter = ["project", "model_family"]

    @admin.display(description="accuracy")
    def accuracy(self, obj: ModelVersion) -> str:
        value = obj.metrics.get("accuracy")
        return "—" if value is None else f"{value:.3f}"
