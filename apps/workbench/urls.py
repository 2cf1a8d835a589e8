from django.urls import path

from apps.workbench import views

app_name = "workbench"
urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<id:project_id>/", views.project_page, name="project"),
    path(
        "projects/<id:project_id>/members/remove/",
        views.member_remove_page,
        name="member_remove",
    ),
]
