"""Derived features and feature-set versions in the admin: browsable, never editable (the
page and the API change them, so that every change makes a version)."""

from django.contrib import admin

from apps.features.models import DerivedFeature, FeatureSetVersion
from config.admin_site import ProjectFilter
from config.admin_site import ReadOnlyProjectScopedAdmin as _ReadOnly


@admin.register(DerivedFeature)
class DerivedFeatureAdmin(_ReadOnly):
    list_display = ("name", "project", "expression", "show_in_labeling", "created_by", "retired_at")
    list_filter = (("project", ProjectFilter),)
    search_fields = ("name", "expression")


@admin.register(FeatureSetVersion)
class FeatureSetVersionAdmin(_ReadOnly):
    list_display = ("project", "number", "change", "created_by", "created_at")
    list_filter = (("project", ProjectFilter),)
