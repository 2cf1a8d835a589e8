from django.urls import path

from apps.review import views

app_name = "review"
urlpatterns = [
    path("<int:project_id>/review/", views.board, name="board"),
    path("<int:project_id>/review/relabel/", views.relabel, name="relabel"),
    path("<int:project_id>/review/views/", views.saved_view_save, name="save_view"),
    path("<int:project_id>/cases/<int:case_id>/comments/", views.comments, name="comments"),
    path("mentions/", views.mentions, name="mentions"),
]
