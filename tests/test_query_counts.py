"""The hot pages cost the same number of queries whatever the project's size: next case, a label
submitted, the review board and the rerank page, each measured on a project of 20 cases and on
one of 1,000, with the same people, a trained and deployed model, its label issues and a
worklist."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.labeling.selectors import lease_active_for
from apps.labeling.services import cases_import
from apps.modeling import services as modeling_services
from apps.modeling.models import Deployment, RunStatus, RunTrigger
from apps.projects.models import Role
from apps.projects.services import FeatureSpec, membership_set, project_create
from apps.review.services import label_issues_find
from apps.worklists.models import WorklistSource
from apps.worklists.services import worklist_create
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db

SIZES = (20, 1000)


def _project(size: int, people, folder):
    data_scientist, clinician, reviewer = people
    project = project_create(
        name=f"Cohort of {size}",
        classes=["no_heart_failure", "heart_failure"],
        features=[FeatureSpec(name=n) for n in ("age", "creatinine", "nt_pro_bnp")],
        created_by=data_scientist,
    )
    membership_set(project=project, username=clinician.username, role=Role.CLINICIAN)
    membership_set(project=project, username=reviewer.username, role=Role.REVIEWER)
    path = folder / f"cases-{size}.csv"
    # Enough labels of both classes to train on, however small the project.
    frame = make_cases_frame(size, seed=size, labeled=0.8)
    frame.loc[: size // 2, "label"] = "no_heart_failure"
    frame.loc[size // 2 : size * 8 // 10, "label"] = "heart_failure"
    frame.loc[size * 8 // 10 + 1 :, "label"] = ""  # the rest wait in the queue
    frame.to_csv(path, index=False)
    cases_import(project=project, path=path, filename=path.name, imported_by=data_scientist)
    project.refresh_from_db()
    run, _ = modeling_services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
    run = modeling_services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    for deployment in Deployment.objects.filter(project=project, scores_applied_at__isnull=True):
        modeling_services.deployment_apply(deployment_id=deployment.pk)
    label_issues_find(version_id=run.model_version.pk)
    worklist = worklist_create(
        project=project,
        name="Highest risk",
        risk_class="heart_failure",
        size=5,
        source=WorklistSource.ALL,
        created_by=reviewer,
    )
    return project, worklist


def _count(client: Client, method: str, url: str, **extra) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = getattr(client, method)(url, **extra)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries)


def _costs(project, worklist, clinician, reviewer) -> dict[str, int]:
    labeler, looker = Client(), Client()
    labeler.force_login(clinician)
    looker.force_login(reviewer)
    costs = {"next case": _count(labeler, "get", reverse("labeling:label", args=[project.pk]))}
    held = lease_active_for(project=project, user=clinician)
    costs["submit"] = _count(
        labeler,
        "post",
        reverse("labeling:submit", args=[project.pk, held.case_id]),
        data={"value": "heart_failure"},
        headers={"HX-Request": "true"},
    )
    costs["board"] = _count(looker, "get", reverse("review:board", args=[project.pk]))
    costs["rerank"] = _count(
        looker, "get", reverse("worklists:rerank", args=[project.pk, worklist.pk])
    )
    return costs


def test_the_hot_pages_cost_the_same_queries_at_20_and_1000_cases(
    settings, tmp_path, data_scientist, clinician, reviewer
):
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    people = (data_scientist, clinician, reviewer)
    measured = {}
    for size in SIZES:
        project, worklist = _project(size, people, tmp_path)
        measured[size] = _costs(project, worklist, clinician, reviewer)
    small, large = (measured[size] for size in SIZES)
    assert small == large, measured
    assert all(count > 0 for count in small.values()), small
