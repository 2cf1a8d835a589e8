"""Derived features: a project's own columns, computed from its raw features by an expression
(`expressions.py`), and the versioned feature sets they make up.

A definition row is the feature as it stands now; every change to the definitions (adding,
changing, retiring one) appends a feature-set version holding all the definitions in force
after it. Training runs point at the version they used and record its expressions, so a model
version never depends on the rows here staying as they were.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.projects.models import Project


class DerivedFeature(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="derived_features")
    name = models.CharField(max_length=100)
    expression = models.TextField()
    unit = models.CharField(max_length=40, blank=True)
    group = models.CharField(max_length=60, blank=True)
    description = models.CharField(max_length=300, blank=True)
    # Shown to clinicians on the labeling screen, next to the raw features of its group.
    show_in_labeling = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now=True)
    # Retired features stay, so that the versions and runs that used them can be read.
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["project", "id"]
        constraints = [
            # A name is taken only while the feature is in force: a retired name can come back.
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=Q(retired_at__isnull=True),
                name="derived_feature_unique_active_name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} = {self.expression}"

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    def snapshot(self) -> dict:
        """What a feature-set version keeps of it."""
        return {
            "name": self.name,
            "expression": self.expression,
            "unit": self.unit,
            "group": self.group,
            "description": self.description,
            "show_in_labeling": self.show_in_labeling,
        }


class FeatureSetVersion(models.Model):
    """The derived features in force after one change, with who made it, when and why.
    Append-only: version n+1 is written by the change that follows."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="feature_sets")
    number = models.PositiveIntegerField()
    # Every definition in force, in an order they can be computed in (each after the derived
    # features it reads): [{name, expression, unit, group, description, show_in_labeling}].
    definitions = models.JSONField(default=list)
    change = models.CharField(max_length=300, help_text="What changed, e.g. 'Added bmi'.")
    note = models.CharField(max_length=300, blank=True, help_text="Why.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="feature_set_number")
        ]

    def __str__(self) -> str:
        return f"{self.project} feature set v{self.number}"

    @property
    def names(self) -> list[str]:
        return [d["name"] for d in self.definitions]
