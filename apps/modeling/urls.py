from django.urls import path

from apps.modeling import views

app_name = "modeling"
urlpatterns = [
    path("<int:project_id>/runs/", views.runs_panel, name="runs"),
    path("<int:project_id>/retrain/", views.retrain, name="retrain"),
    path("<int:project_id>/models/", views.models_page, name="models"),
    path("<int:project_id>/models/compare/", views.compare_page, name="compare"),
    path("<int:project_id>/models/<int:number>/deploy/", views.deploy, name="deploy"),
    path("<int:project_id>/runs/<int:run_id>/", views.run_page, name="run"),
    path("<int:project_id>/runs/<int:run_id>/reproduce/", views.reproduce, name="reproduce"),
]
