from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.api import views

app_name = "api"
urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: no inline script for the CSP.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("projects/", views.ProjectListCreateApi.as_view(), name="projects"),
    path("projects/<int:project_id>/", views.ProjectDetailApi.as_view(), name="project"),
    path("projects/<int:project_id>/members/", views.ProjectMemberApi.as_view(), name="members"),
    path("projects/<int:project_id>/cases/", views.CaseListApi.as_view(), name="cases"),
    path("projects/<int:project_id>/cases/import", views.CaseImportApi.as_view(), name="import"),
    path("projects/<int:project_id>/export", views.LabelExportApi.as_view(), name="export"),
    path("projects/<int:project_id>/queue/next", views.QueueNextApi.as_view(), name="queue-next"),
    path(
        "projects/<int:project_id>/queue/release",
        views.QueueReleaseApi.as_view(),
        name="queue-release",
    ),
    path(
        "projects/<int:project_id>/queue/settings",
        views.QueueSettingsApi.as_view(),
        name="queue-settings",
    ),
    path("projects/<int:project_id>/agreement", views.AgreementApi.as_view(), name="agreement"),
    path("projects/<int:project_id>/tasks", views.TaskListCreateApi.as_view(), name="tasks"),
    path(
        "projects/<int:project_id>/training-runs",
        views.TrainingRunListCreateApi.as_view(),
        name="training-runs",
    ),
    path(
        "projects/<int:project_id>/model-versions/",
        views.ModelVersionListApi.as_view(),
        name="model-versions",
    ),
    path(
        "projects/<int:project_id>/model-versions/<int:number>/",
        views.ModelVersionDetailApi.as_view(),
        name="model-version",
    ),
    path(
        "projects/<int:project_id>/model-versions/<int:number>/deploy",
        views.ModelVersionDeployApi.as_view(),
        name="model-version-deploy",
    ),
    path("projects/<int:project_id>/rollback", views.RollbackApi.as_view(), name="rollback"),
    path(
        "projects/<int:project_id>/deployments/",
        views.DeploymentListApi.as_view(),
        name="deployments",
    ),
    path("projects/<int:project_id>/predict", views.PredictApi.as_view(), name="predict"),
    path("projects/<int:project_id>/objective", views.ObjectiveApi.as_view(), name="objective"),
    path(
        "projects/<int:project_id>/training-config",
        views.TrainingConfigApi.as_view(),
        name="training-config",
    ),
    path("projects/<int:project_id>/alerts", views.AlertListApi.as_view(), name="alerts"),
    path(
        "projects/<int:project_id>/label-issues/",
        views.LabelIssueListApi.as_view(),
        name="label-issues",
    ),
    path(
        "projects/<int:project_id>/worklists/",
        views.WorklistListCreateApi.as_view(),
        name="worklists",
    ),
    path(
        "projects/<int:project_id>/worklists/agreement",
        views.WorklistAgreementApi.as_view(),
        name="worklist-agreement",
    ),
    path(
        "projects/<int:project_id>/worklists/pairs",
        views.PreferencePairsApi.as_view(),
        name="worklist-pairs",
    ),
    path(
        "projects/<int:project_id>/worklists/<int:worklist_id>/",
        views.WorklistDetailApi.as_view(),
        name="worklist",
    ),
    path(
        "projects/<int:project_id>/worklists/<int:worklist_id>/session",
        views.RerankSessionApi.as_view(),
        name="worklist-session",
    ),
    path(
        "projects/<int:project_id>/worklists/<int:worklist_id>/judgments",
        views.JudgmentCreateApi.as_view(),
        name="worklist-judgments",
    ),
    path(
        "projects/<int:project_id>/derived-features/",
        views.DerivedFeatureListCreateApi.as_view(),
        name="derived-features",
    ),
    path(
        "projects/<int:project_id>/derived-features/preview",
        views.DerivedFeaturePreviewApi.as_view(),
        name="derived-feature-preview",
    ),
    path(
        "projects/<int:project_id>/derived-features/<int:feature_id>/",
        views.DerivedFeatureDetailApi.as_view(),
        name="derived-feature",
    ),
    path(
        "projects/<int:project_id>/derived-features/<int:feature_id>/retire",
        views.DerivedFeatureRetireApi.as_view(),
        name="derived-feature-retire",
    ),
    path(
        "projects/<int:project_id>/feature-sets/",
        views.FeatureSetListApi.as_view(),
        name="feature-sets",
    ),
    path(
        "projects/<int:project_id>/derived-projects",
        views.DerivedProjectApi.as_view(),
        name="derived-projects",
    ),
    path(
        "training-runs/<int:run_id>/reproduce",
        views.TrainingRunReproduceApi.as_view(),
        name="training-run-reproduce",
    ),
    path("cases/<int:case_id>/labels", views.CaseLabelApi.as_view(), name="case-labels"),
    path("cases/<int:case_id>/skip", views.CaseSkipApi.as_view(), name="case-skip"),
    path("cases/<int:case_id>/comments", views.CaseCommentApi.as_view(), name="case-comments"),
    path("mentions/", views.MentionListApi.as_view(), name="mentions"),
    path("training-runs/<int:run_id>/", views.TrainingRunDetailApi.as_view(), name="training-run"),
]
