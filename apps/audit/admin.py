"""The audit log in the admin: read, filter and export; never add, change or delete."""

import csv

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_name", "action", "project_id", "summary", "ip"]
    list_filter = ["action", "created_at"]
    search_fields = ["actor_name", "summary", "object_id", "ip"]
    date_hierarchy = "created_at"
    actions = ["export_csv"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Export the selected events as CSV")
    def export_csv(self, request: HttpRequest, queryset) -> HttpResponse:
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        writer = csv.writer(response)
        columns = ["id", "created_at", "actor_name", "action", "project_id", "object_type"]
        columns += ["object_id", "summary", "ip", "user_agent"]
        writer.writerow(columns)
        for event in queryset.order_by("id"):
            writer.writerow([_cell(getattr(event, c)) for c in columns])
        audit_record(
            action="export",
            actor=request.user,
            summary=f"Exported {queryset.count()} audit events",
            object_type="audit log",
        )
        return response


def _cell(value) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell starting with these as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
