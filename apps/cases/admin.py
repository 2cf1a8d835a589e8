from django.contrib import admin

from apps.cases.models import ImportBatch
from config.admin_site import ProjectFilter, ReadOnlyProjectScopedAdmin


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyProjectScopedAdmin):
    list_display = [
        "id",
        "project",
        "filename",
        "case_count",
        "label_count",
        "imported_by",
        "created_at",
    ]
    list_filter = [("project", ProjectFilter)]
