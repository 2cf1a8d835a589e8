from django.urls import path

from apps.modeling import views

app_name = "modeling"
urlpatterns = [
    path("<id:project_id>/runs/", views.runs_panel, name="runs"),
    path("<id:project_id>/retrain/", views.retrain, name="retrain"),
    path("<id:project_id>/models/", views.models_page, name="models"),
    path("<id:project_id>/models/compare/", views.compare_page, name="compare"),
    path("<id:project_id>/models/<id:number>/deploy/", views.deploy, name="deploy"),
    path("<id:project_id>/runs/<id:run_id>/", views.run_page, name="run"),
    path("<id:project_id>/runs/<id:run_id>/reproduce/", views.reproduce, name="reproduce"),
    path("<id:project_id>/runs/<id:run_id>/cancel/", views.cancel, name="cancel"),
]
