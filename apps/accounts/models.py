"""Casebook's user model; roles are per project (see apps.projects)."""

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A person: clinician, reviewer, data scientist or admin, depending on the project."""

    def __str__(self) -> str:
        return self.get_full_name() or self.username
