from django.urls import path

from apps.review import views

app_name = "review"
urlpatterns = [
    path("<id:project_id>/review/", views.board, name="board"),
    path("<id:project_id>/review/relabel/", views.relabel, name="relabel"),
    path("<id:project_id>/review/views/", views.saved_view_save, name="save_view"),
    path("<id:project_id>/cases/<id:case_id>/comments/", views.comments, name="comments"),
    path("mentions/", views.mentions, name="mentions"),
]
