from django.urls import path

from apps.modeling import views

app_name = "modeling"
urlpatterns = [
    path("<int:project_id>/runs/", views.runs_panel, name="runs"),
    path("<int:project_id>/retrain/", views.retrain, name="retrain"),
]
