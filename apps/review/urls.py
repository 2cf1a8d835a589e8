from django.urls import path

from apps.review import views

app_name = "review"
urlpatterns = [
    path("<int:project_id>/review/", views.board, name="board"),
    path("<int:project_id>/review/relabel/", views.relabel, name="relabel"),
]
