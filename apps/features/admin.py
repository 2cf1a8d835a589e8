"""Derived features and feature-set versions in the admin: browsable, never editable (the
page and the API change them, so that every change makes a version)."""

from django.contrib import admin

from apps.features.models import DerivedFeature, FeatureSetVersion


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(project__memberships__user=request.user)


@admin.register(DerivedFeature)
class DerivedFeatureAdmin(_ReadOnly):
    list_display = ("name", "project", "expression", "show_in_labeling", "created_by", "retired_at")
    list_filter = ("project",)
    search_fields = ("name", "expression")


@admin.register(FeatureSetVersion)
class FeatureSetVersionAdmin(_ReadOnly):
    list_display = ("project", "number", "change", "created_by", "created_at")
    list_filter = ("project",)
