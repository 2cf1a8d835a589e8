"""A project: the classes a case can be labeled with, its features and its members."""

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    REVIEWER = "reviewer", "Reviewer (SME)"
    DATA_SCIENTIST = "data_scientist", "Data scientist"
    ADMIN = "admin", "Admin"


# Each role can do everything the roles below it can.
ROLE_RANK: dict[str, int] = {
    Role.CLINICIAN: 1,
    Role.REVIEWER: 2,
    Role.DATA_SCIENTIST: 3,
    Role.ADMIN: 4,
}


class Project(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    classes = models.JSONField(help_text="Label classes in the order of their number keys.")
    show_predictions = models.BooleanField(
        default=False,
        help_text="Show the model's prediction while labeling. Off by default to avoid anchoring.",
    )
    auto_retrain = models.BooleanField(default=True)
    retrain_min_new_labels = models.PositiveIntegerField(
        default=20, help_text="Retrain as soon as this many labels changed since the last run."
    )
    retrain_quiet_seconds = models.PositiveIntegerField(
        default=60, help_text="Or retrain once labeling has been quiet this long."
    )
    # Bumped by the labeling service with every label row; the retrain scheduler compares it
    # with the version a run was trained on.
    # A clinician answering a relabel task does not see the label being questioned, so that it
    # does not sway the second look.
    relabel_blind = models.BooleanField(default=True)
    # Deploy every new model version as soon as it is trained (otherwise only the first;
    # later ones wait for a data scientist to deploy them).
    auto_deploy = models.BooleanField(default=False)
    # Alerts on the project page.
    alert_min_class_share = models.FloatField(
        default=0.10, help_text="Alert when a class has less than this share of the labels."
    )
    alert_stale_margin = models.FloatField(
        default=0.05,
        help_text="Alert when the objective on recent months is worse than before by more.",
    )
    alert_psi_threshold = models.FloatField(
        default=0.25, help_text="Alert when a feature's population stability index passes this."
    )
    alert_recent_months = models.PositiveSmallIntegerField(
        default=3, help_text="How many of the latest months count as recent."
    )
    # A project made from another's worklist judgments (e.g. target "actionable"): the same
    # cases, labeled by the reviewers' judgments, to train a model of what needs action.
    derived_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="derived"
    )
    derived_target = models.CharField(max_length=60, blank=True)
    # The derived features in force (apps.features), as the newest feature-set version holds
    # them: a copy the features service keeps with each version, so that the labeling screen
    # computes the ones shown to clinicians from the project row it has already read.
    feature_set_definitions = models.JSONField(default=list, blank=True)
    labels_version = models.PositiveBigIntegerField(default=0)
    last_labeled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Feature(models.Model):
    """A numeric column of the cases. `position` is its index in the stored feature vector."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="features")
    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField()
    unit = models.CharField(max_length=40, blank=True)
    group = models.CharField(max_length=60, blank=True)
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["project", "position"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="feature_unique_name"),
            models.UniqueConstraint(fields=["project", "position"], name="feature_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} in {self.project}"
