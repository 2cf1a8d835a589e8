"""Housekeeping tied to the life of a project's cases."""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from apps.cases import feature_cache
from apps.projects.models import Project


@receiver(post_delete, sender=Project, dispatch_uid="cases.project_copy_remove")
def project_deleted(sender, instance: Project, **kwargs) -> None:
    # After the commit: a rolled-back delete keeps its project, and its copy stays valid.
    project_id = instance.pk
    transaction.on_commit(lambda: feature_cache.project_copy_remove(project_id=project_id))
