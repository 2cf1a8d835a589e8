from django.urls import path

from apps.worklists import views

app_name = "worklists"
urlpatterns = [
    path("<id:project_id>/worklists/", views.worklist_list, name="list"),
    path("<id:project_id>/worklists/agreement/", views.agreement, name="agreement"),
    path("<id:project_id>/worklists/agreement/pairs.csv", views.preference_pairs, name="pairs"),
    path(
        "<id:project_id>/worklists/derived-project/",
        views.derived_project_create,
        name="derive",
    ),
    path("<id:project_id>/worklists/<id:worklist_id>/", views.rerank, name="rerank"),
    path("<id:project_id>/worklists/<id:worklist_id>/order/", views.order_save, name="order"),
    path(
        "<id:project_id>/worklists/<id:worklist_id>/judgments/",
        views.judgment_save,
        name="judge",
    ),
    path("<id:project_id>/worklists/<id:worklist_id>/done/", views.session_finish, name="done"),
    path(
        "<id:project_id>/worklists/<id:worklist_id>/cases/<id:case_id>/features/",
        views.case_features,
        name="case_features",
    ),
]
