"""The label history in the admin: readable, never editable (it is append-only)."""

from django.contrib import admin

from apps.labeling.models import Label


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "value", "kind", "author", "created_at"]
    list_filter = ["kind", "project"]
    search_fields = ["case__external_id"]
    list_select_related = ["case", "author"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
