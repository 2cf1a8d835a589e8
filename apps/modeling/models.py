"""Training runs and the model versions they produce; both are kept forever."""

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.modeling.ml.objectives import ObjectiveSpec
from apps.projects.models import Project


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # An automatic run that found the same labels as the last model: no new version.
    SKIPPED = "skipped", "Skipped (labels unchanged)"
    # Stopped by a data scientist: nothing of it is stored.
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class RunTrigger(models.TextChoices):
    AUTO = "auto", "Labels changed"
    MANUAL = "manual", "Requested in the app"
    ADMIN = "admin", "Requested in the admin"
    API = "api", "Requested through the API"


class ObjectiveMetric(models.TextChoices):
    ACCURACY = "accuracy", "Accuracy"
    BALANCED_ACCURACY = "balanced_accuracy", "Balanced accuracy"
    ROC_AUC = "roc_auc", "ROC AUC"
    PR_AUC = "pr_auc", "PR AUC (average precision)"
    F_BETA = "f_beta", "F-beta"
    RECALL_AT_PRECISION = "recall_at_precision", "Recall at a fixed precision"
    PRECISION_AT_K = "precision_at_k", "Precision at k"
    EXPECTED_COST = "expected_cost", "Expected cost (cost matrix)"


class Objective(models.Model):
    """What the project optimizes. Each change is a new row (who, when, why); the newest row
    is in force, and every run and model version points at the row it was chosen under."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="objectives")
    metric = models.CharField(max_length=30, choices=ObjectiveMetric.choices)
    positive_class = models.CharField(
        max_length=100, blank=True, help_text="The class of interest; empty means the last class."
    )
    beta = models.FloatField(default=1.0)
    min_precision = models.FloatField(default=0.8)
    k = models.PositiveIntegerField(default=100)
    cost_matrix = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=300, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.spec().describe()

    def spec(self) -> ObjectiveSpec:
        return ObjectiveSpec(
            metric=self.metric,
            positive_class=self.positive_class,
            beta=self.beta,
            min_precision=self.min_precision,
            k=self.k,
            cost_matrix=self.cost_matrix or [],
        )


class ModelFamily(models.TextChoices):
    LOGISTIC_REGRESSION = "logistic_regression", "Logistic regression"
    HIST_GRADIENT_BOOSTING = "hist_gradient_boosting", "Histogram gradient boosting"
    RANDOM_FOREST = "random_forest", "Random forest"
    AUTO = "auto", "Best of the three under the objective (cross-validated)"


class TrainingConfig(models.Model):
    """How the project trains, versioned like the objective: the newest row is in force."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_configs")
    model_family = models.CharField(
        max_length=40, choices=ModelFamily.choices, default=ModelFamily.LOGISTIC_REGRESSION
    )
    class_weight = models.CharField(
        max_length=20, blank=True, choices=[("", "None"), ("balanced", "Balanced")]
    )
    window_months = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Train on the last N months of labeled cases; empty: all."
    )
    features = models.JSONField(
        default=list, blank=True, help_text="Feature names the model uses; empty: all."
    )
    hyperparameters = models.JSONField(default=dict, blank=True)
    seed = models.PositiveIntegerField(default=0)
    test_fraction = models.FloatField(default=0.2)
    cv_folds = models.PositiveSmallIntegerField(default=5)
    note = models.CharField(max_length=300, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_model_family_display()} (config {self.pk})"

    def params(self) -> dict[str, Any]:
        """The parameters a run records and trains with."""
        return {
            "model_family": self.model_family,
            "class_weight": self.class_weight or None,
            "window_months": self.window_months,
            "features": list(self.features or []),
            "hyperparameters": dict(self.hyperparameters or {}),
            "test_fraction": self.test_fraction,
            "cv_folds": self.cv_folds,
        }


class TrainingRun(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trigger = models.CharField(max_length=20, choices=RunTrigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The project's labels_version when the run was requested: the scheduler retrains again only
    # when labels moved past it.
    labels_version = models.PositiveBigIntegerField()
    params = models.JSONField(default=dict)
    seed = models.PositiveIntegerField(default=0)
    # The objective and training configuration in force when the run was requested.
    objective = models.ForeignKey(
        Objective, on_delete=models.PROTECT, null=True, blank=True, related_name="runs"
    )
    training_config = models.ForeignKey(
        TrainingConfig, on_delete=models.PROTECT, null=True, blank=True, related_name="runs"
    )
    # The feature-set version in force when the run was requested (None: the project had no
    # derived features). The definitions the model reads are also copied into `params`
    # ("derived"), so that the model computes them as it was trained, whatever changes later.
    feature_set = models.ForeignKey(
        "features.FeatureSetVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="runs",
    )
    # The last check that retraining from the snapshot gives the same predictions.
    reproduction = models.JSONField(default=dict, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    # Reproducibility: the exact label rows trained on, and what trained them.
    label_watermark = models.PositiveBigIntegerField(null=True, blank=True)
    snapshot_sha256 = models.CharField(max_length=64, blank=True)
    labels_sha256 = models.CharField(
        max_length=64, blank=True, help_text="Which case had which label, whatever the rows."
    )
    snapshot_path = models.CharField(max_length=500, blank=True)
    feature_names = models.JSONField(default=list)
    code_version = models.CharField(max_length=64, blank=True)
    library_versions = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the run was last handed to the broker; the scheduler sends it again only when a
    # worker has not picked it up for a while (the broker may have been down).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Never two runs of one project at once, whichever process asks.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="training_run_one_active_per_project",
            )
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.project} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    training_run = models.OneToOneField(
        TrainingRun, on_delete=models.PROTECT, related_name="model_version"
    )
    number = models.PositiveIntegerField()
    model_family = models.CharField(max_length=60, choices=ModelFamily.choices)
    file_path = models.CharField(max_length=500)
    file_sha256 = models.CharField(max_length=64)
    metrics = models.JSONField(default=dict)
    # Curves, calibration, the objective per month and the cross-validation: the run's charts.
    evaluation = models.JSONField(default=dict)
    # Chosen under this objective; its value on the held-out cases.
    objective = models.ForeignKey(
        Objective, on_delete=models.PROTECT, null=True, blank=True, related_name="model_versions"
    )
    objective_value = models.FloatField(null=True, blank=True)
    # The decision threshold on the positive class's probability that the objective chose
    # (None: the most probable class).
    threshold = models.FloatField(null=True, blank=True)
    positive_class = models.CharField(max_length=100, blank=True)
    # Every case's probabilities under this version (Parquet), made after training.
    predictions_path = models.CharField(max_length=500, blank=True)
    predictions_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="model_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.number}"


class DeploymentAction(models.TextChoices):
    DEPLOY = "deploy", "Deployed"
    ROLLBACK = "rollback", "Rolled back"
    AUTO = "auto", "Deployed automatically"


class Deployment(models.Model):
    """Which model version serves the project, as an append-only log: the newest row is
    production. Promoting is one insert, so every reader sees either the old or the new
    version, never a mix."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="deployments"
    )
    action = models.CharField(max_length=20, choices=DeploymentAction.choices)
    note = models.CharField(max_length=300, blank=True)
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Set by the worker once the version's predictions of every case are stored for the
    # queue, the boards and the worklists.
    scores_applied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="deployment_newest_idx")]

    def __str__(self) -> str:
        return f"{self.project}: v{self.model_version.number} ({self.action})"


class MonitoringReport(models.Model):
    """What the periodic check found about the production model: the figures and the alerts
    they raised. Kept, so a team can see when a model went stale."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="monitoring_reports"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    figures = models.JSONField(default=dict)
    alerts = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Check of {self.project} at {self.created_at:%Y-%m-%d %H:%M}"
