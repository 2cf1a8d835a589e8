from django.urls import path

from apps.labeling import queue_views, views

app_name = "labeling"
urlpatterns = [
    path("<int:project_id>/label/", views.label_page, name="label"),
    path("<int:project_id>/label/undo/", views.label_undo, name="undo"),
    path("<int:project_id>/cases/<int:case_id>/label/", views.label_submit, name="submit"),
    path("<int:project_id>/cases/<int:case_id>/skip/", views.label_skip, name="skip"),
    path("<int:project_id>/import/", views.import_cases, name="import"),
    path("<int:project_id>/queue/", queue_views.queue_page, name="queue"),
    path("<int:project_id>/agreement/", queue_views.agreement_page, name="agreement"),
    path(
        "<int:project_id>/cases/<int:case_id>/relabel-request/",
        queue_views.relabel_request,
        name="relabel_request",
    ),
    path(
        "<int:project_id>/export/<str:what>.<str:file_format>",
        views.export_labels,
        name="export",
    ),
]
