"""Casebook's URLs: pages, the admin and the API."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("apps.workbench.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("projects/", include("apps.projects.urls")),
    path("projects/", include("apps.labeling.urls")),
    path("projects/", include("apps.features.urls")),
    path("projects/", include("apps.modeling.urls")),
    path("projects/", include("apps.review.urls")),
    path("projects/", include("apps.worklists.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("apps.api.urls")),
]
