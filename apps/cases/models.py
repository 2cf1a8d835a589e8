"""Cases and the imports that brought them in."""

from django.conf import settings
from django.db import models

from apps.projects.models import Project

# The queue rank of a case no strategy has placed yet: after every ranked case, in import order.
UNRANKED = 10**15


class ImportBatch(models.Model):
    """One successful import of a file. Failed imports store nothing."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_batches")
    filename = models.CharField(max_length=255)
    file_format = models.CharField(max_length=10)
    case_count = models.PositiveIntegerField(default=0)
    label_count = models.PositiveIntegerField(default=0)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.filename} ({self.case_count} cases)"


class Case(models.Model):
    """A patient or record to label.

    Feature values are stored as one packed little-endian float64 vector per case, in the order of
    the project's features (NaN = missing): training reads a million cases as one buffer instead of
    building a million dicts from JSON.
    """

    # No database-level foreign keys or single-column indexes on project and import batch:
    # PostgreSQL checks a foreign key row by row at commit, which doubled the time of a
    # million-row import, and (project, external_id) already indexes the project. The import
    # service is the only writer of these columns and takes them from the project it imports
    # into and the batch it has just created; Django still cascades and protects on delete.
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        related_name="cases",
        db_constraint=False,
        db_index=False,
    )
    external_id = models.CharField(max_length=200)
    occurred_at = models.DateTimeField(null=True, blank=True)
    features = models.BinaryField()
    import_batch = models.ForeignKey(
        ImportBatch,
        on_delete=models.PROTECT,
        related_name="cases",
        null=True,
        blank=True,
        db_constraint=False,
        db_index=False,
    )
    # The value of the newest label row ('' when unlabeled). Only the labeling service writes
    # it, in the same transaction as the label row, with the case row locked.
    current_label = models.CharField(max_length=100, blank=True, default="")
    # The labeling queue's state, kept on the case so that handing out the next case is one
    # read of a partial index instead of a join: its place in the queue (lower first, ties by
    # id), how many labels the project wants for it (more than one for overlap), and how many
    # it still takes from new clinicians right now (wanted − given − leased).
    queue_rank = models.BigIntegerField(default=UNRANKED, db_default=UNRANKED)
    queue_wanted = models.PositiveSmallIntegerField(default=1, db_default=1)
    queue_open = models.PositiveSmallIntegerField(default=1, db_default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], name="case_unique_external_id"
            )
        ]
        indexes = [
            models.Index(
                fields=["project", "queue_rank", "id"],
                name="case_queue_idx",
                condition=models.Q(queue_open__gt=0),
            ),
        ]

    def __str__(self) -> str:
        return self.external_id
