"""A small but complete project for the suites that walk every route: members in each role, an
outsider with a project of their own, cases, a trained and deployed model version, a worklist,
a relabel task and a derived feature.

Made once per test module inside a transaction that is rolled back at the module's end
(`module_world`); each test then runs in a savepoint of it, so what one request writes is gone
before the next test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

from apps.accounts.models import User
from apps.features import services as feature_services
from apps.labeling import services as labeling_services
from apps.labeling.models import TaskKind
from apps.modeling import services as modeling_services
from apps.modeling.models import Deployment, RunStatus, RunTrigger
from apps.projects.models import ROLE_RANK, Project, Role
from apps.projects.services import FeatureSpec, membership_set, project_create
from apps.worklists import services as worklist_services
from apps.worklists.models import WorklistSource
from tests.conftest import make_cases_frame

PROJECT_NAME = "Zeta ward cohort"
OTHER_NAME = "Someone else's project"


@dataclass
class World:
    project: Project
    other: Project
    users: dict[str, User]
    clients: dict[str, Client]
    tokens: dict[str, str]
    # URL parameters naming the project's objects, and the same with the outsider's case and run.
    params: dict[str, object]
    other_params: dict[str, object]


def _import(project: Project, user: User, frame, folder: Path) -> None:
    path = folder / f"cases-{project.pk}.csv"
    frame.to_csv(path, index=False)
    labeling_services.cases_import(project=project, path=path, filename=path.name, imported_by=user)


def build_world(folder: Path) -> World:
    users = {
        persona: User.objects.create_user(username=f"world-{persona}", password="x" * 16)
        for persona in ("outsider", *ROLE_RANK)
    }
    project = project_create(
        name=PROJECT_NAME,
        classes=["no_heart_failure", "heart_failure"],
        features=[
            FeatureSpec(name="age", unit="years"),
            FeatureSpec(name="creatinine", unit="mg/dL"),
            FeatureSpec(name="nt_pro_bnp", unit="pg/mL"),
        ],
        created_by=users[Role.ADMIN],
    )
    for role in (Role.CLINICIAN, Role.REVIEWER, Role.DATA_SCIENTIST):
        membership_set(project=project, username=users[role].username, role=role)
    frame = make_cases_frame(120, labeled=0.8, seed=5)
    _import(project, users[Role.DATA_SCIENTIST], frame, folder)
    project.refresh_from_db()

    run, _ = modeling_services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
    run = modeling_services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    for deployment in Deployment.objects.filter(project=project, scores_applied_at__isnull=True):
        modeling_services.deployment_apply(deployment_id=deployment.pk)
    worklist = worklist_services.worklist_create(
        project=project,
        name="Heart failure risk",
        risk_class="heart_failure",
        size=5,
        source=WorklistSource.UNLABELED,
        created_by=users[Role.REVIEWER],
    )
    case = worklist.items.order_by("model_rank").first().case
    labeled = project.cases.exclude(current_label="").order_by("id").first()
    labeling_services.task_open(
        case=labeled, kind=TaskKind.RELABEL, created_by=users[Role.REVIEWER], reason="look again"
    )
    derived, _ = feature_services.derived_feature_create(
        project=project,
        created_by=users[Role.REVIEWER],
        name="bnp_per_age",
        expression="nt_pro_bnp / age",
    )

    # The outsider's own project, with cases and a (queued) run of its own.
    other = project_create(name=OTHER_NAME, classes=["a", "b"], created_by=users["outsider"])
    _import(other, users["outsider"], make_cases_frame(12, seed=9).drop(columns=["label"]), folder)
    other_run, _ = modeling_services.training_run_request(project=other, trigger=RunTrigger.MANUAL)

    clients = {"anonymous": Client()}
    for persona, user in users.items():
        clients[persona] = Client()
        clients[persona].force_login(user)
    tokens = {persona: Token.objects.create(user=user).key for persona, user in users.items()}
    params = {
        "project_id": project.pk,
        "case_id": case.pk,
        "run_id": run.pk,
        "number": run.model_version.number,
        "worklist_id": worklist.pk,
        "feature_id": derived.pk,
        "what": "labels",
        "file_format": "csv",
    }
    other_params = {
        **params,
        "case_id": other.cases.order_by("id").first().pk,
        "run_id": other_run.pk,
    }
    return World(project, other, users, clients, tokens, params, other_params)


@contextmanager
def module_world(django_db_blocker, folder: Path) -> Iterator[World]:
    """The world, in a transaction open for as long as the context lasts, then rolled back."""
    with override_settings(CASEBOOK_MODEL_DIR=folder / "models"):
        with django_db_blocker.unblock():
            outer = transaction.atomic()
            outer.__enter__()
        try:
            with django_db_blocker.unblock():
                built = build_world(folder)
            yield built
        finally:
            with django_db_blocker.unblock():
                transaction.set_rollback(True)
                outer.__exit__(None, None, None)
