from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.api import views

app_name = "api"
urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: no inline script for the CSP.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("projects/", views.ProjectListCreateApi.as_view(), name="projects"),
    path("projects/<id:project_id>/", views.ProjectDetailApi.as_view(), name="project"),
    path("projects/<id:project_id>/members/", views.ProjectMemberApi.as_view(), name="members"),
    path("projects/<id:project_id>/cases/", views.CaseListApi.as_view(), name="cases"),
    path("projects/<id:project_id>/cases/import", views.CaseImportApi.as_view(), name="import"),
    path(
        "projects/<id:project_id>/cases/import/preview",
        views.CaseImportPreviewApi.as_view(),
        name="import-preview",
    ),
    path("projects/<id:project_id>/export", views.LabelExportApi.as_view(), name="export"),
    path("projects/<id:project_id>/queue/next", views.QueueNextApi.as_view(), name="queue-next"),
    path(
        "projects/<id:project_id>/queue/release",
        views.QueueReleaseApi.as_view(),
        name="queue-release",
    ),
    path(
        "projects/<id:project_id>/queue/settings",
        views.QueueSettingsApi.as_view(),
        name="queue-settings",
    ),
    path("projects/<id:project_id>/agreement", views.AgreementApi.as_view(), name="agreement"),
    path("projects/<id:project_id>/tasks", views.TaskListCreateApi.as_view(), name="tasks"),
    path(
        "projects/<id:project_id>/training-runs",
        views.TrainingRunListCreateApi.as_view(),
        name="training-runs",
    ),
    path(
        "projects/<id:project_id>/model-versions/",
        views.ModelVersionListApi.as_view(),
        name="model-versions",
    ),
    path(
        "projects/<id:project_id>/model-versions/<id:number>/",
        views.ModelVersionDetailApi.as_view(),
        name="model-version",
    ),
    path(
        "projects/<id:project_id>/model-versions/<id:number>/deploy",
        views.ModelVersionDeployApi.as_view(),
        name="model-version-deploy",
    ),
    path("projects/<id:project_id>/rollback", views.RollbackApi.as_view(), name="rollback"),
    path(
        "projects/<id:project_id>/deployments/",
        views.DeploymentListApi.as_view(),
        name="deployments",
    ),
    path("projects/<id:project_id>/predict", views.PredictApi.as_view(), name="predict"),
    path("projects/<id:project_id>/objective", views.ObjectiveApi.as_view(), name="objective"),
    path(
        "projects/<id:project_id>/training-config",
        views.TrainingConfigApi.as_view(),
        name="training-config",
    ),
    path("projects/<id:project_id>/alerts", views.AlertListApi.as_view(), name="alerts"),
    path(
        "projects/<id:project_id>/label-issues/",
        views.LabelIssueListApi.as_view(),
        name="label-issues",
    ),
    path(
        "projects/<id:project_id>/worklists/",
        views.WorklistListCreateApi.as_view(),
        name="worklists",
    ),
    path(
        "projects/<id:project_id>/worklists/agreement",
        views.WorklistAgreementApi.as_view(),
        name="worklist-agreement",
    ),
    path(
        "projects/<id:project_id>/worklists/pairs",
        views.PreferencePairsApi.as_view(),
        name="worklist-pairs",
    ),
    path(
        "projects/<id:project_id>/worklists/<id:worklist_id>/",
        views.WorklistDetailApi.as_view(),
        name="worklist",
    ),
    path(
        "projects/<id:project_id>/worklists/<id:worklist_id>/session",
        views.RerankSessionApi.as_view(),
        name="worklist-session",
    ),
    path(
        "projects/<id:project_id>/worklists/<id:worklist_id>/judgments",
        views.JudgmentCreateApi.as_view(),
        name="worklist-judgments",
    ),
    path(
        "projects/<id:project_id>/derived-features/",
        views.DerivedFeatureListCreateApi.as_view(),
        name="derived-features",
    ),
    path(
        "projects/<id:project_id>/derived-features/preview",
        views.DerivedFeaturePreviewApi.as_view(),
        name="derived-feature-preview",
    ),
    path(
        "projects/<id:project_id>/derived-features/<id:feature_id>/",
        views.DerivedFeatureDetailApi.as_view(),
        name="derived-feature",
    ),
    path(
        "projects/<id:project_id>/derived-features/<id:feature_id>/retire",
        views.DerivedFeatureRetireApi.as_view(),
        name="derived-feature-retire",
    ),
    path(
        "projects/<id:project_id>/feature-sets/",
        views.FeatureSetListApi.as_view(),
        name="feature-sets",
    ),
    path(
        "projects/<id:project_id>/derived-projects",
        views.DerivedProjectApi.as_view(),
        name="derived-projects",
    ),
    path(
        "training-runs/<id:run_id>/reproduce",
        views.TrainingRunReproduceApi.as_view(),
        name="training-run-reproduce",
    ),
    path(
        "training-runs/<id:run_id>/cancel",
        views.TrainingRunCancelApi.as_view(),
        name="training-run-cancel",
    ),
    path("cases/<id:case_id>/labels", views.CaseLabelApi.as_view(), name="case-labels"),
    path("cases/<id:case_id>/skip", views.CaseSkipApi.as_view(), name="case-skip"),
    path("cases/<id:case_id>/comments", views.CaseCommentApi.as_view(), name="case-comments"),
    path("mentions/", views.MentionListApi.as_view(), name="mentions"),
    path("training-runs/<id:run_id>/", views.TrainingRunDetailApi.as_view(), name="training-run"),
]
