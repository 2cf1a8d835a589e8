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
    # PROTECT: a case or project with labels cannot be deleted; its history would go with it
    # (and the database refuses to delete label rows of a case that still exists).
    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="labels", db_index=False)
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
            # The few adjudications among a million labels, which annotator agreement reads
            # at every view of the review board.
            models.Index(
                fields=["project", "id"],
                name="label_adjudicated_idx",
                condition=models.Q(kind="adjudicated"),
            ),
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
    """The production model's prediction for a case, written by the modeling worker.

    Labeling reads its own table instead of importing the modeling app.

    Derived data, replaced wholesale at each deploy from the version's stored predictions: the
    foreign keys are not checked by the database (Django still cascades deletes), because
    PostgreSQL's deferred check of a million rows at commit took 8 s of every deploy.
    """

    case = models.OneToOneField(
        Case, on_delete=models.CASCADE, related_name="score", db_constraint=False
    )
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    model_version_number = models.PositiveIntegerField()
    predicted_label = models.CharField(max_length=100)
    confidence = models.FloatField()
    # The probability of each class, in the order of the project's classes, as packed
    # little-endian float64: the queue's uncertainty and minority strategies read it.
    probabilities = models.BinaryField(default=b"")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.case_id}: {self.predicted_label} ({self.confidence:.2f})"


class QueueStrategy(models.TextChoices):
    IMPORT_ORDER = "import_order", "In order of import"
    RANDOM = "random", "Random"
    RECENT_FIRST = "recent_first", "Most recent first"
    UNCERTAINTY = "uncertainty", "Uncertainty"
    MINORITY = "minority", "Minority-targeted"
    MIX = "mix", "Mix"


# What each strategy does, in the words the queue page shows next to it.
STRATEGY_HELP = {
    QueueStrategy.IMPORT_ORDER: "cases in the order they were imported",
    QueueStrategy.RANDOM: "a seeded random order",
    QueueStrategy.RECENT_FIRST: "the most recent cases first",
    QueueStrategy.UNCERTAINTY: "the cases the deployed model is least sure of",
    QueueStrategy.MINORITY: "the cases most likely to be of a rare class",
    QueueStrategy.MIX: "uncertainty or minority-targeting, with a share of random cases",
}


class UncertaintyMeasure(models.TextChoices):
    LEAST_CONFIDENT = "least_confident", "Least confident (1 − top probability)"
    MARGIN = "margin", "Margin (top two probabilities closest)"
    ENTROPY = "entropy", "Entropy of the probabilities"


class QueueSettings(models.Model):
    """One version of a project's queue settings; the newest is in force. Rows are never
    changed, so any lease can be explained by the settings (and seed) it was handed out under."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    strategy = models.CharField(
        max_length=20, choices=QueueStrategy.choices, default=QueueStrategy.IMPORT_ORDER
    )
    uncertainty_measure = models.CharField(
        max_length=20, choices=UncertaintyMeasure.choices, default=UncertaintyMeasure.MARGIN
    )
    target_class = models.CharField(
        max_length=100, blank=True, help_text="The rare class that minority-targeting looks for."
    )
    mix_base = models.CharField(
        max_length=20,
        choices=[
            (QueueStrategy.UNCERTAINTY, "Uncertainty"),
            (QueueStrategy.MINORITY, "Minority-targeted"),
        ],
        default=QueueStrategy.UNCERTAINTY,
    )
    random_share = models.FloatField(
        default=0.2, help_text="In a mix, the share of cases drawn at random."
    )
    seed = models.PositiveIntegerField(default=0)
    lease_minutes = models.PositiveIntegerField(default=15)
    overlap_share = models.FloatField(
        default=0.0, help_text="Share of cases that several clinicians label independently."
    )
    overlap_labels = models.PositiveSmallIntegerField(
        default=2, help_text="How many clinicians label each overlap case."
    )
    note = models.CharField(max_length=500, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "queue settings"
        indexes = [models.Index(fields=["project", "-id"], name="queue_settings_project_idx")]

    def __str__(self) -> str:
        return f"{self.get_strategy_display()} (project {self.project_id}, #{self.pk})"


class QueueBuild(models.Model):
    """One computation of the queue order, by the worker, from a settings version and the
    scores of a model version."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    settings = models.ForeignKey(QueueSettings, on_delete=models.PROTECT, related_name="+")
    model_version_number = models.PositiveIntegerField(null=True, blank=True)
    strategy_used = models.CharField(max_length=20, choices=QueueStrategy.choices)
    cases_ranked = models.PositiveIntegerField(default=0)
    note = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"queue build {self.pk} of project {self.project_id}"


class TaskKind(models.TextChoices):
    RELABEL = "relabel", "Relabel"
    ADJUDICATE = "adjudicate", "Adjudicate"


class TaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class LabelTask(models.Model):
    """A request to relabel a case, or to settle clinicians' disagreement on it.

    With no assignee it is for the project's pool: any clinician (relabel) or reviewer
    (adjudicate) may take it. Open tasks come before new cases in a person's queue.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=TaskKind.choices)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    label = models.ForeignKey(
        Label, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["project", "kind", "id"],
                name="task_open_idx",
                condition=models.Q(status="open"),
            ),
            models.Index(fields=["case", "status"], name="task_case_idx"),
        ]
        constraints = [
            # One open adjudication per case: two clinicians' disagreement is settled once.
            models.UniqueConstraint(
                fields=["case"],
                name="task_one_open_adjudication",
                condition=models.Q(status="open", kind="adjudicate"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} case {self.case_id} ({self.status})"


class LeaseState(models.TextChoices):
    ACTIVE = "active", "Active"
    LABELED = "labeled", "Labeled"
    SKIPPED = "skipped", "Skipped"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class Lease(models.Model):
    """A case handed to one person for a limited time, and what came of it.

    A person holds at most one active lease per project (the case on their screen). `labeled`
    and `skipped` leases also record that the person has seen the case: the queue never hands
    it to them again.
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+", db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    task = models.ForeignKey(
        LabelTask, on_delete=models.CASCADE, null=True, blank=True, related_name="leases"
    )
    state = models.CharField(max_length=20, choices=LeaseState.choices, default=LeaseState.ACTIVE)
    rank = models.BigIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["case", "user"], name="lease_case_user_idx"),
            models.Index(
                fields=["project", "expires_at"],
                name="lease_active_idx",
                condition=models.Q(state="active"),
            ),
            models.Index(fields=["user", "project", "state"], name="lease_user_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user"],
                name="lease_one_active_per_user",
                condition=models.Q(state="active"),
            )
        ]

    def __str__(self) -> str:
        return f"case {self.case_id} to {self.user_id} ({self.state})"


class LabelCount(models.Model):
    """How many of a project's cases currently carry each label ('' = unlabeled), kept by the
    label services so that progress is a read of a few rows, whatever the project's size."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=100, blank=True)
    cases = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "value"], name="label_count_unique")
        ]

    def __str__(self) -> str:
        return f"{self.value or 'unlabeled'}: {self.cases}"
