"""Shared fixtures: the personas of a project, and helpers to build case files."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import pandas as pd
import pytest

from apps.accounts.models import User
from apps.projects.models import Project, Role
from apps.projects.services import FeatureSpec, membership_set, project_create

PASSWORD = "a-long-test-password"


def require_service(condition: bool, what: str) -> None:
    """Skip a test whose server is missing here, but fail it in CI, where .ci/run starts every
    server the suite needs: a missing one there is a broken run, not a pass."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI (.ci/run starts it)")
    pytest.skip(f"{what} is not available")


def _user(username: str) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    return user


@pytest.fixture
def data_scientist(db) -> User:
    """Dana may create projects before she is in any (the site administrator's permission)."""
    from django.contrib.auth.models import Permission

    user = _user("dana")
    user.user_permissions.add(Permission.objects.get(codename="add_project"))
    return user


@pytest.fixture
def clinician(db) -> User:
    return _user("clara")


@pytest.fixture
def reviewer(db) -> User:
    return _user("rafael")


@pytest.fixture
def outsider(db) -> User:
    """A member of another project only."""
    user = _user("olga")
    project_create(name="Someone else's project", classes=["a", "b"], created_by=user)
    return user


@pytest.fixture
def project(data_scientist, clinician, reviewer) -> Project:
    project = project_create(
        name="Heart failure",
        classes=["no_heart_failure", "heart_failure"],
        features=[
            FeatureSpec(name="age", unit="years", group="Demographics"),
            FeatureSpec(name="creatinine", unit="mg/dL", group="Labs"),
            FeatureSpec(name="nt_pro_bnp", unit="pg/mL", group="Labs"),
        ],
        created_by=data_scientist,
    )
    # A project always keeps an admin: Ada holds it so the creator can be a data scientist.
    _user("ada")
    membership_set(project=project, username="ada", role=Role.ADMIN)
    membership_set(project=project, username=data_scientist.username, role=Role.DATA_SCIENTIST)
    membership_set(project=project, username=clinician.username, role=Role.CLINICIAN)
    membership_set(project=project, username=reviewer.username, role=Role.REVIEWER)
    return project


def make_cases_frame(n: int, seed: int = 0, labeled: float = 1.0, start: str = "2024-01-01"):
    """A small heart-failure-like frame whose label depends on the features (so models learn)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    age = rng.normal(65, 10, n).round(1)
    creatinine = rng.lognormal(0, 0.3, n).round(2)
    bnp = rng.lognormal(5, 1, n).round(0)
    risk = 0.04 * (age - 65) + 1.2 * (np.log(bnp) - 5) + rng.normal(0, 0.7, n)
    label = np.where(risk > 0.8, "heart_failure", "no_heart_failure").astype(object)
    label[rng.random(n) >= labeled] = ""
    return pd.DataFrame(
        {
            "external_id": [f"p{i:06d}" for i in range(n)],
            "occurred_at": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "age": age,
            "creatinine": creatinine,
            "nt_pro_bnp": bnp,
            "label": label,
        }
    )


@pytest.fixture
def import_frame(tmp_path) -> Callable[..., object]:
    """Import a frame of cases into a project through the real import service, as CSV."""
    from apps.labeling.services import cases_import

    def run(project: Project, user: User, frame: pd.DataFrame):
        path = tmp_path / f"import-{project.pk}-{len(frame)}.csv"
        frame.to_csv(path, index=False)
        return cases_import(project=project, path=path, filename=path.name, imported_by=user)

    return run


@pytest.fixture
def cases_csv(tmp_path) -> Callable[..., object]:
    def write(frame: pd.DataFrame | str, name: str = "cases.csv"):
        path = tmp_path / name
        if isinstance(frame, str):
            path.write_text(frame, encoding="utf-8")
        else:
            frame.to_csv(path, index=False)
        return path

    return write


def csv_upload(text: str, name: str = "cases.csv") -> io.BytesIO:
    handle = io.BytesIO(text.encode())
    handle.name = name
    return handle
