"""The audit log in the admin: read, filter (by project, person, action, date) and export;
never add, change or delete. A data scientist or admin of a project reads that project's events;
events of no project (logins, logouts) are for superusers."""

import csv

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.projects.ids import id_parse
from config.admin_site import (
    ProjectScopedAdmin,
    admin_member_names,
    admin_projects,
    project_name_of,
)

PEOPLE_LISTED = 200


class AuditProjectFilter(admin.SimpleListFilter):
    """By project; the log keeps a plain project id, not a key, so Django's filter cannot."""

    title = "project"
    parameter_name = "project"

    def lookups(self, request, model_admin):
        return admin_projects(request)

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        project_id = id_parse(value)
        if project_id is None or project_id not in dict(admin_projects(request)):
            return queryset.none()
        return queryset.filter(project_id=project_id)


class PersonFilter(admin.SimpleListFilter):
    """Who acted, by the name the event keeps. Offers the members of the projects one
    administers (reading the names off the log would scan a row per label); a deleted or
    departed user's events are found by searching for their name."""

    title = "person"
    parameter_name = "person"

    def lookups(self, request, model_admin):
        return [(name, name) for name in admin_member_names(request)[:PEOPLE_LISTED]]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(actor_name=value)


@admin.register(AuditEvent)
class AuditEventAdmin(ProjectScopedAdmin):
    list_display = ["created_at", "actor_name", "action", "project_name", "summary", "ip"]
    list_filter = [AuditProjectFilter, PersonFilter, "action", "created_at"]
    project_lookup = "project_id"
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

    def get_queryset(self, request: HttpRequest):
        # The project's name in the same statement as the page's rows, not a query per row.
        return super().get_queryset(request).annotate(project_label=project_name_of("project_id"))

    @admin.display(description="project", ordering="project_id")
    def project_name(self, event: AuditEvent) -> str:
        if event.project_id is None:
            return "—"
        return event.project_label or f"project {event.project_id} (deleted)"

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
