"""Training runs and the model versions they produce; both are kept forever."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.projects.models import Project


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # An automatic run that found the same labels as the last model: no new version.
    SKIPPED = "skipped", "Skipped (labels unchanged)"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class RunTrigger(models.TextChoices):
    AUTO = "auto", "Labels changed"
    MANUAL = "manual", "Requested in the app"
    ADMIN = "admin", "Requested in the admin"
    API = "api", "Requested through the API"


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
    model_family = models.CharField(max_length=60)
    file_path = models.CharField(max_length=500)
    file_sha256 = models.CharField(max_length=64)
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="model_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.number}"
