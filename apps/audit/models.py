"""The audit log: who did what, when and from where. Append-only.

Rows keep the actor's name and the project's id as plain values, not database-checked keys:
deleting a user or a project must not rewrite or delete what they did. A database trigger
refuses UPDATE (and, on PostgreSQL, DELETE) of rows, so not even a bug in the app can change
the log; the admin and the API offer no way to.
"""

from django.conf import settings
from django.db import models


class AuditAction(models.TextChoices):
    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login_failed", "Failed login"
    LOGOUT = "logout", "Logged out"
    LABEL = "label", "Labeled"
    RELABEL = "relabel", "Relabeled"
    ADJUDICATE = "adjudicate", "Adjudicated"
    UNDO = "undo", "Undid a label"
    IMPORT = "import", "Imported cases"
    EXPORT = "export", "Exported"
    OBJECTIVE = "objective", "Changed the objective"
    TRAINING_CONFIG = "training_config", "Changed the training configuration"
    RETRAIN = "retrain", "Asked for a retrain"
    CANCEL_RUN = "cancel_run", "Cancelled a training run"
    DEPLOY = "deploy", "Deployed a model version"
    ROLLBACK = "rollback", "Rolled back"
    ROLE = "role", "Changed a member's role"
    RELABEL_TASK = "relabel_task", "Asked for relabeling"
    DERIVED_PROJECT = "derived_project", "Made a derived project"
    FEATURE_SET = "feature_set", "Changed the derived features"


class AuditEvent(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    # The name as it was: a renamed or deleted user's events still say who.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    project_id = models.BigIntegerField(null=True, blank=True)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    summary = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["project_id", "id"], name="audit_project_idx"),
            models.Index(fields=["actor", "id"], name="audit_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name or 'system'}: {self.summary}"
