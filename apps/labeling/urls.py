from django.urls import path

from apps.labeling import queue_views, views

app_name = "labeling"
urlpatterns = [
    path("<id:project_id>/label/", views.label_page, name="label"),
    path("<id:project_id>/label/undo/", views.label_undo, name="undo"),
    path("<id:project_id>/cases/<id:case_id>/label/", views.label_submit, name="submit"),
    path("<id:project_id>/cases/<id:case_id>/skip/", views.label_skip, name="skip"),
    path("<id:project_id>/import/", views.import_cases, name="import"),
    path("<id:project_id>/import/preview/", views.import_preview, name="import_preview"),
    path("<id:project_id>/queue/", queue_views.queue_page, name="queue"),
    path("<id:project_id>/agreement/", queue_views.agreement_page, name="agreement"),
    path(
        "<id:project_id>/cases/<id:case_id>/relabel-request/",
        queue_views.relabel_request,
        name="relabel_request",
    ),
    path(
        "<id:project_id>/export/<str:what>.<str:file_format>",
        views.export_labels,
        name="export",
    ),
]
