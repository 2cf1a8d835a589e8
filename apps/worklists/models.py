"""Worklists: the production model's top cases for a class, reranked and judged by reviewers.

A worklist is frozen when it is made (its cases and the model's order), so that every reviewer
reranks the same list and later model versions can be scored against the experts' orders.
"""

from django.conf import settings
from django.db import models

from apps.cases.models import Case
from apps.modeling.models import ModelVersion
from apps.projects.models import Project


class WorklistSource(models.TextChoices):
    RECENT_UNLABELED = "recent_unlabeled", "Unlabeled cases of the last months"
    UNLABELED = "unlabeled", "All unlabeled cases"
    ALL = "all", "All cases"


class Judgment(models.TextChoices):
    ACTIONABLE = "actionable", "Actionable"
    NOT_ACTIONABLE = "not_actionable", "Not actionable"
    NEEDS_INFORMATION = "needs_information", "Needs more information"


class Worklist(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="worklists")
    name = models.CharField(max_length=120)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    risk_class = models.CharField(max_length=100, help_text="Cases ranked by this class's risk.")
    source = models.CharField(max_length=20, choices=WorklistSource.choices)
    months = models.PositiveSmallIntegerField(null=True, blank=True)
    size = models.PositiveSmallIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name


class WorklistItem(models.Model):
    """A case on a worklist, at the place the model gave it (1 = highest risk)."""

    worklist = models.ForeignKey(Worklist, on_delete=models.CASCADE, related_name="items")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    model_rank = models.PositiveSmallIntegerField()
    risk = models.FloatField()

    class Meta:
        ordering = ["model_rank"]
        constraints = [
            models.UniqueConstraint(fields=["worklist", "case"], name="worklist_item_once"),
            models.UniqueConstraint(fields=["worklist", "model_rank"], name="worklist_item_rank"),
        ]

    def __str__(self) -> str:
        return f"{self.worklist_id}#{self.model_rank}: case {self.case_id}"


class RerankSession(models.Model):
    """One reviewer's order of a worklist, saved as they go; each reviewer has their own."""

    worklist = models.ForeignKey(Worklist, on_delete=models.CASCADE, related_name="sessions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    # The case ids in the reviewer's order: a whole order is saved at once, so a session is
    # never half-moved, and a stale page's save is detected by `revision`.
    order = models.JSONField(default=list)
    revision = models.PositiveIntegerField(default=0)
    moves = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["worklist", "reviewer"], name="rerank_one_per_reviewer")
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} on worklist {self.worklist_id}"


class CaseJudgment(models.Model):
    """A reviewer's judgment of a case on a worklist. Append-only like labels: the newest row
    per (session, case) is the judgment in force, the older ones are its history."""

    session = models.ForeignKey(RerankSession, on_delete=models.CASCADE, related_name="judgments")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=20, choices=Judgment.choices)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["session", "case", "id"], name="judgment_history_idx")]

    def __str__(self) -> str:
        return f"{self.case_id}: {self.value}"
