from django.urls import path

from apps.worklists import views

app_name = "worklists"
urlpatterns = [
    path("<int:project_id>/worklists/", views.worklist_list, name="list"),
    path("<int:project_id>/worklists/agreement/", views.agreement, name="agreement"),
    path("<int:project_id>/worklists/agreement/pairs.csv", views.preference_pairs, name="pairs"),
    path(
        "<int:project_id>/worklists/derived-project/",
        views.derived_project_create,
        name="derive",
    ),
    path("<int:project_id>/worklists/<int:worklist_id>/", views.rerank, name="rerank"),
    path("<int:project_id>/worklists/<int:worklist_id>/order/", views.order_save, name="order"),
    path(
        "<int:project_id>/worklists/<int:worklist_id>/judgments/",
        views.judgment_save,
        name="judge",
    ),
    path("<int:project_id>/worklists/<int:worklist_id>/done/", views.session_finish, name="done"),
    path(
        "<int:project_id>/worklists/<int:worklist_id>/cases/<int:case_id>/features/",
        views.case_features,
        name="case_features",
    ),
]
