"""The append-only label history, skips, and the model's scores that labeling may show."""

from django.conf import settings
from django.db import models

from apps.cases.models import Case, ImportBatch
from apps.projects.models import Project


class LabelKind(models.TextChoices):
    IMPORTED = "imported", "Imported"
    LABELED = "labeled", "Labeled"
    RELABELED = "relabeled", "Relabeled"
    ADJUDICATED = "adjudicated", "Adjudicated"
    UNDONE = "undone", "Undone"


class Label(models.Model):
    """One entry of a case's label history. Rows are never updated or deleted.

    The newest row of a case is its current label; an `undone` row carries the value that was
    current before the label it undoes ('' when there was none).
    """

    # Indexes and checks chosen for bulk imports of labels: the composite indexes below cover
    # the foreign keys' lookups, and `project` (a copy of the case's) and `import_batch` are
    # written only by the services, from rows they hold.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="labels", db_index=False)
    value = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=20, choices=LabelKind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    note = models.CharField(max_length=500, blank=True)
    undoes = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    import_batch = models.ForeignKey(
        ImportBatch,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["case", "id"], name="label_case_idx"),
            models.Index(fields=["project", "id"], name="label_project_idx"),
            models.Index(fields=["author", "id"], name="label_author_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.case_id}: {self.value or '—'} ({self.kind})"


class Skip(models.Model):
    """A clinician passed on a case; it is not offered to them again."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "case"], name="skip_user_case_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} skipped {self.case_id}"


class CaseScore(models.Model):
    """The newest model's prediction for a case, written by the modeling worker.

    Labeling reads its own table instead of importing the modeling app.
    """

    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="score")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    model_version_number = models.PositiveIntegerField()
    predicted_label = models.CharField(max_length=100)
    confidence = models.FloatField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.case_id}: {self.predicted_label} ({self.confidence:.2f})"
