"""The label history and the queue's records in the admin: readable, never editable.

Labels are append-only; queue settings, tasks and leases change only through the services (the
queue page, the API, the worker), which keep the queue's counters in step with them.
"""

from django.contrib import admin

from apps.labeling.models import Label, LabelTask, Lease, QueueSettings
from config.admin_site import ProjectFilter
from config.admin_site import ReadOnlyProjectScopedAdmin as ReadOnlyAdmin


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin):
    list_display = ["id", "case", "value", "kind", "author", "created_at"]
    list_filter = ["kind", ("project", ProjectFilter)]
    search_fields = ["case__external_id"]
    list_select_related = ["case", "author"]


@admin.register(QueueSettings)
class QueueSettingsAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "strategy", "seed", "overlap_share", "changed_by"]
    list_filter = [("project", ProjectFilter), "strategy"]


@admin.register(LabelTask)
class LabelTaskAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "case", "kind", "status", "assignee", "created_at"]
    list_filter = [("project", ProjectFilter), "kind", "status"]
    search_fields = ["case__external_id"]
    list_select_related = ["project", "case", "assignee"]


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "case", "user", "state", "rank", "expires_at", "closed_at"]
    list_filter = [("project", ProjectFilter), "state"]
    search_fields = ["case__external_id", "user__username"]
    list_select_related = ["case", "user"]
