from django.urls import path

from apps.features import views

app_name = "features"
urlpatterns = [
    path("<id:project_id>/features/", views.features_page, name="page"),
    path("<id:project_id>/features/preview/", views.feature_preview, name="preview"),
    path("<id:project_id>/features/<id:feature_id>/", views.feature_change, name="change"),
    path(
        "<id:project_id>/features/<id:feature_id>/retire/",
        views.feature_retire,
        name="retire",
    ),
]
