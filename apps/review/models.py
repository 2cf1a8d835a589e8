"""Error analysis: each labeled case's out-of-sample verdict from a model version (the board
shows the production version's by default), ranked by how likely its label is wrong."""

from django.conf import settings
from django.db import models

from apps.cases.models import Case, ImportBatch
from apps.labeling.models import Label
from apps.modeling.models import ModelVersion
from apps.projects.models import Project


class LabelIssue(models.Model):
    """One labeled case as confident learning sees it (cleanlab): the label given, the class
    the out-of-fold probabilities suggest, and the label's quality score (lower: more likely
    wrong). Each version's verdicts are rows of their own: the board shows the production
    version's while a newer one is judged, and a few versions are kept (services.VERSIONS_KEPT).

    Derived data written a million rows at a time: like the case scores, the foreign keys are
    not checked by the database (Django still cascades deletes)."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    label = models.ForeignKey(
        Label, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    given_label = models.CharField(max_length=100)
    suggested_label = models.CharField(max_length=100)
    suggested_probability = models.FloatField()
    given_probability = models.FloatField()
    label_quality = models.FloatField()
    is_label_issue = models.BooleanField()
    misclassified = models.BooleanField()
    # Who gave the label; None for a label that came from a file (import_batch), which is the
    # file's and not the person's who imported it.
    labeled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        db_constraint=False,
    )
    import_batch = models.ForeignKey(
        ImportBatch, on_delete=models.SET_NULL, null=True, related_name="+", db_constraint=False
    )
    labeled_at = models.DateTimeField()
    occurred_at = models.DateTimeField(null=True)
    # The case's features when the verdicts were computed, for the board's feature ranges:
    # 8 bytes per feature at 8 × Feature.position, encoded so that bytes sort as the numbers
    # do (apps.review.feature_keys). A range is then a comparison of bytes on this row, which
    # SQLite and PostgreSQL both make natively on the rows the keyset walk already reads.
    # Decoding Case.features in SQL instead needs a function of our own on each database (on
    # SQLite a Python callback per row), a join to the case for every row walked and counted,
    # and per-row float arithmetic; the features are in memory when verdicts are computed, and
    # a case's features never change after its import.
    feature_keys = models.BinaryField(default=b"")

    class Meta:
        indexes = [
            models.Index(
                fields=["model_version", "label_quality", "id"], name="label_issue_version_rank_idx"
            ),
        ]

    def __str__(self) -> str:
        verdict = f"{self.given_label} → {self.suggested_label}"
        return f"{self.case_id}: {verdict} ({self.label_quality:.2f})"


class LabelIssueComputation(models.Model):
    """When and how one model version's label issues were found (once per version)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    cases = models.PositiveIntegerField()
    issues = models.PositiveIntegerField()
    misclassified = models.PositiveIntegerField()
    folds = models.PositiveSmallIntegerField()
    model_family = models.CharField(max_length=60)
    seconds = models.FloatField()
    # The board's counts, counted once with the verdicts rather than over a million rows at
    # every page view: "slices", [given, suggested, flagged, cases] for each combination;
    # "months", [YYYY-MM, cases, misclassified, flagged]; "annotators", [user id, labels,
    # flagged] of the labels people gave; "imported", [import batch id, labels, flagged] of
    # the labels that came from files. Empty for computations stored before the board kept them.
    summary = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["model_version"], name="label_issues_once_per_version")
        ]

    def __str__(self) -> str:
        return f"label issues of {self.project} from v{self.model_version_id}"


class SavedView(models.Model):
    """A named slice of the board (its filters), shared by the project's reviewers."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=80)
    # Room for several feature ranges (three parameters each) besides the other filters.
    query = models.CharField(max_length=2000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="saved_view_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class Comment(models.Model):
    """A message in a case's discussion; never edited or deleted, like labels."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["case", "id"], name="comment_thread_idx")]

    def __str__(self) -> str:
        return f"{self.author} on case {self.case_id}"


class Mention(models.Model):
    """A member named with @ in a comment: their list of mentions shows it until seen."""

    comment = models.ForeignKey(Comment, on_delete=models.CASCADE, related_name="mentions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["comment", "user"], name="mention_once_per_comment")
        ]
        indexes = [models.Index(fields=["user", "seen_at"], name="mention_inbox_idx")]

    def __str__(self) -> str:
        return f"@{self.user} in comment {self.comment_id}"
