from django.urls import path

from apps.projects import views

app_name = "projects"
urlpatterns = [
    path("new/", views.project_create, name="create"),
    path("<id:project_id>/settings/", views.project_settings, name="settings"),
    path("<id:project_id>/members/", views.project_members, name="members"),
]
