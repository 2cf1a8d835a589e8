from django.contrib import admin

from apps.cases.models import ImportBatch


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "filename",
        "case_count",
        "label_count",
        "imported_by",
        "created_at",
    ]
    list_filter = ["project"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
