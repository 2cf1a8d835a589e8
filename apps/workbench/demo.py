"""Loading the demo: users of each role and the two demo projects, through the real services."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from apps.accounts.models import User
from apps.labeling.services import cases_import, queue_settings_change
from apps.projects.models import Project, Role
from apps.projects.services import FeatureSpec, membership_set, project_create
from apps.workbench import demo_data

DEMO_PASSWORD = "casebook-demo"
DEMO_USERS = [
    ("clinician", Role.CLINICIAN, "Clara", "Clinician"),
    ("clinician2", Role.CLINICIAN, "Ben", "Clinician"),
    ("reviewer", Role.REVIEWER, "Rafael", "Reviewer"),
    ("scientist", Role.DATA_SCIENTIST, "Dana", "Scientist"),
    ("admin", Role.ADMIN, "Ada", "Admin"),
]


@dataclass
class DemoProject:
    project: Project
    created: bool
    cases: int
    labels: int


def demo_users_ensure(*, password: str = DEMO_PASSWORD) -> dict[str, User]:
    users = {}
    for username, role, first, last in DEMO_USERS:
        user, created = User.objects.get_or_create(
            username=username, defaults={"first_name": first, "last_name": last}
        )
        if created:
            user.set_password(password)
            # The demo admin is a superuser; the scientist enters the Django admin by their
            # data scientist role (config/admin_site.py), with no staff flag to keep in step.
            if role == Role.ADMIN:
                user.is_staff = user.is_superuser = True
            user.save()
        users[username] = user
    return users


def demo_project_load(*, dataset: demo_data.DemoDataset, users: dict[str, User]) -> DemoProject:
    """Create the project and import its cases, unless a project of that name exists."""
    existing = Project.objects.filter(name=dataset.name).first()
    if existing is not None:
        return DemoProject(project=existing, created=False, cases=0, labels=0)
    owner = users["scientist"]
    with transaction.atomic():
        project = project_create(
            name=dataset.name,
            description=dataset.description,
            classes=dataset.classes,
            features=[
                FeatureSpec(name=f.name, unit=f.unit, group=f.group, description=f.description)
                for f in dataset.features
            ],
            created_by=owner,
        )
        for username, role, _, _ in DEMO_USERS:
            if username != "scientist":
                membership_set(project=project, username=username, role=role)
        membership_set(project=project, username="scientist", role=Role.DATA_SCIENTIST)
        # A tenth of the cases go to two clinicians, so agreement can be measured from the start.
        queue_settings_change(
            project=project,
            changed_by=owner,
            overlap_share=0.1,
            overlap_labels=2,
            note="Demo: a tenth of the cases are labeled by two clinicians.",
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{dataset.name}.parquet"
            dataset.cases.to_parquet(path, index=False)
            result = cases_import(project=project, path=path, filename=path.name, imported_by=owner)
    return DemoProject(project=project, created=True, cases=result.imported, labels=result.labels)
