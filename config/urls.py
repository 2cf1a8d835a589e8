"""Casebook's URLs: pages, the admin and the API."""

from django.contrib import admin
from django.urls import include, path, register_converter

from apps.projects.ids import IdConverter

# Before the apps' URL confs are included: every id in a path is `<id:…>`, bounded to what a
# database column holds, so a larger number is a 404 and never reaches a query.
register_converter(IdConverter, "id")

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

# Under /api/, what Django answers outside DRF's views keeps the API's error shape.
handler400 = "apps.api.errors.bad_request"
handler403 = "apps.api.errors.permission_denied"
handler404 = "apps.api.errors.page_not_found"
handler500 = "apps.api.errors.server_error"
