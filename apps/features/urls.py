from django.urls import path

from apps.features import views

app_name = "features"
urlpatterns = [
    path("<int:project_id>/features/", views.features_page, name="page"),
    path("<int:project_id>/features/preview/", views.feature_preview, name="preview"),
    path("<int:project_id>/features/<int:feature_id>/", views.feature_change, name="change"),
    path(
        "<int:project_id>/features/<int:feature_id>/retire/",
        views.feature_retire,
        name="retire",
    ),
]
