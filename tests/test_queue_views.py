"""The queue and agreement pages, relabel requests and the queue endpoints of the API."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.cases.models import Case
from apps.labeling import selectors
from apps.labeling.models import LabelKind, LabelTask, Lease, LeaseState, TaskStatus
from apps.labeling.services import label_record, queue_settings_change
from apps.projects.models import Role
from apps.projects.services import membership_set
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db
HF, NO = "heart_failure", "no_heart_failure"


@pytest.fixture
def cases(project, data_scientist, import_frame):
    import_frame(project, data_scientist, make_cases_frame(6, labeled=0.0))
    return list(Case.objects.filter(project=project).order_by("pk"))


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- Pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["labeling:queue", "labeling:agreement"])
def test_review_pages_are_for_reviewers(
    client, project, cases, clinician, reviewer, outsider, name
):
    url = reverse(name, args=[project.pk])
    client.force_login(clinician)
    assert client.get(url).status_code == 403
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(reviewer)
    assert client.get(url).status_code == 200


def test_a_reviewer_changes_the_strategy_and_sees_the_history(client, project, cases, reviewer):
    client.force_login(reviewer)
    url = reverse("labeling:queue", args=[project.pk])
    form = {
        "strategy": "mix",
        "uncertainty_measure": "entropy",
        "target_class": HF,
        "mix_base": "minority",
        "random_share": "25",
        "seed": "42",
        "lease_minutes": "10",
        "overlap_share": "10",
        "overlap_labels": "3",
        "note": "model predicts the majority",
    }
    response = client.post(url, form)
    assert response.status_code == 302
    current = selectors.queue_settings_current(project_id=project.pk)
    assert (current.strategy, current.mix_base, current.target_class) == ("mix", "minority", HF)
    assert (current.random_share, current.overlap_share, current.seed) == (0.25, 0.1, 42)
    assert current.changed_by == reviewer
    page = client.get(url).content.decode()
    assert "model predicts the majority" in page and "Queue settings saved" in page


def test_a_bad_strategy_change_names_the_problem_and_changes_nothing(
    client, project, cases, reviewer
):
    client.force_login(reviewer)
    url = reverse("labeling:queue", args=[project.pk])
    form = {
        "strategy": "minority",
        "uncertainty_measure": "margin",
        "target_class": "",
        "mix_base": "uncertainty",
        "random_share": "20",
        "seed": "0",
        "lease_minutes": "15",
        "overlap_share": "0",
        "overlap_labels": "2",
    }
    response = client.post(url, form)
    assert response.status_code == 400
    assert "Choose the rare class to target" in response.content.decode()
    assert selectors.queue_settings_current(project_id=project.pk).pk is None
    form.update(target_class=HF, lease_minutes="0")
    response = client.post(url, form)
    assert response.status_code == 400
    assert "greater than or equal to 1" in response.content.decode()


def test_the_label_page_hands_out_a_case_under_a_lease(client, project, cases, clinician):
    client.force_login(clinician)
    page = client.get(reverse("labeling:label", args=[project.pk])).content.decode()
    assert cases[0].external_id in page and "Held for you until" in page
    lease = Lease.objects.get(user=clinician, state=LeaseState.ACTIVE)
    assert lease.case == cases[0]


def test_an_overlap_case_is_labeled_blind(client, project, data_scientist, clinician, reviewer):
    queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.0)
    import tempfile
    from pathlib import Path

    from apps.labeling.services import cases_import
    from tests.conftest import make_cases_frame as frame

    path = Path(tempfile.mkdtemp()) / "c.csv"
    frame(2, labeled=0.0).to_csv(path, index=False)
    cases_import(project=project, path=path, filename="c.csv", imported_by=data_scientist)
    case = Case.objects.filter(project=project).order_by("pk").first()
    label_record(case=case, value=HF, author=reviewer)
    client.force_login(clinician)
    page = client.get(reverse("labeling:label", args=[project.pk])).content.decode()
    assert case.external_id in page
    assert "label this case independently" in page
    assert "This case's labels" not in page and "Current label" not in page


def test_adjudication_from_the_agreement_page(client, project, cases, clinician, reviewer):
    ben_user = _member(project, "ben")
    Case.objects.filter(pk=cases[0].pk).update(queue_wanted=2, queue_open=2)
    cases[0].queue_wanted = 2
    label_record(case=cases[0], value=HF, author=clinician)
    label_record(case=cases[0], value=NO, author=ben_user)
    task = LabelTask.objects.get(case=cases[0], status=TaskStatus.OPEN)
    client.force_login(reviewer)
    page = client.get(reverse("labeling:agreement", args=[project.pk])).content.decode()
    assert f"?task={task.pk}" in page and "Cohen" in page
    page = client.get(reverse("labeling:label", args=[project.pk]) + f"?task={task.pk}")
    body = page.content.decode()
    assert "Adjudication" in body and "ben" in body and f'name="task_id" value="{task.pk}"' in body
    response = client.post(
        reverse("labeling:submit", args=[project.pk, cases[0].pk]),
        {"value": HF, "task_id": task.pk, "seen_label_id": cases[0].labels.last().pk},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200 and "Adjudicated" in response.content.decode()
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE and task.label.kind == LabelKind.ADJUDICATED


def test_a_clinician_cannot_take_an_adjudication(client, project, cases, clinician, reviewer):
    task = LabelTask.objects.create(project=project, case=cases[1], kind="adjudicate")
    client.force_login(clinician)
    page = client.get(reverse("labeling:label", args=[project.pk]) + f"?task={task.pk}")
    assert "Only reviewers adjudicate" in page.content.decode()


def test_a_reviewer_asks_a_clinician_to_relabel_and_it_comes_first(
    client, project, cases, clinician, reviewer
):
    label_record(case=cases[3], value=NO, author=reviewer)
    client.force_login(reviewer)
    url = reverse("labeling:relabel_request", args=[project.pk, cases[3].pk])
    response = client.post(url, {"assignee": "clara", "reason": "BNP is high"})
    assert response.status_code == 302
    task = LabelTask.objects.get(case=cases[3])
    assert (task.assignee, task.reason, task.created_by) == (clinician, "BNP is high", reviewer)
    client.force_login(clinician)
    page = client.get(reverse("labeling:label", args=[project.pk])).content.decode()
    assert cases[3].external_id in page and "Relabel requested" in page and "BNP is high" in page


def test_a_relabel_request_for_a_stranger_is_refused(client, project, cases, reviewer, outsider):
    client.force_login(reviewer)
    url = reverse("labeling:relabel_request", args=[project.pk, cases[3].pk])
    response = client.post(url, {"assignee": "olga"}, follow=True)
    assert "Choose a member" in response.content.decode()
    assert not LabelTask.objects.exists()


def test_a_clinician_cannot_request_relabels(client, project, cases, clinician):
    client.force_login(clinician)
    url = reverse("labeling:relabel_request", args=[project.pk, cases[3].pk])
    assert client.post(url, {"assignee": ""}).status_code == 403


def _member(project, username, role=Role.CLINICIAN):

    user = User.objects.create_user(username=username, password="x-long-password")
    membership_set(project=project, username=username, role=role)
    return user


# --- API ------------------------------------------------------------------------------------


def test_api_next_leases_and_release_gives_back(project, cases, clinician, reviewer):
    url = reverse("api:queue-next", args=[project.pk])
    first = api(clinician).get(url)
    assert first.status_code == 200
    assert first.json()["id"] == cases[0].pk and first.json()["lease"]["expires_at"]
    assert api(clinician).get(url).json()["lease"]["id"] == first.json()["lease"]["id"]
    assert api(reviewer).get(url).json()["id"] == cases[1].pk
    release = api(clinician).post(reverse("api:queue-release", args=[project.pk]))
    assert release.status_code == 200
    assert api(clinician).post(reverse("api:queue-release", args=[project.pk])).status_code == 204
    other = _member(project, "ben")
    assert api(other).get(url).json()["id"] == cases[0].pk


def test_api_label_with_a_stale_view_is_a_conflict(project, cases, clinician, reviewer):
    label_record(case=cases[0], value=HF, author=reviewer)
    response = api(clinician).post(
        reverse("api:case-labels", args=[cases[0].pk]),
        {"value": NO, "seen_label_id": 0},
        format="json",
    )
    assert response.status_code == 409
    assert "was changed by rafael" in response.json()["detail"]


def test_api_queue_settings_read_and_change(project, cases, clinician, reviewer):
    url = reverse("api:queue-settings", args=[project.pk])
    assert api(clinician).get(url).status_code == 403
    assert api(reviewer).get(url).json()["strategy"] == "import_order"
    response = api(reviewer).put(
        url, {"strategy": "minority", "target_class": HF, "note": "rare"}, format="json"
    )
    assert response.status_code == 200 and response.json()["target_class"] == HF
    bad = api(reviewer).put(url, {"strategy": "minority", "target_class": "flu"}, format="json")
    assert bad.status_code == 400 and "not a class" in bad.json()["detail"]
    bad = api(reviewer).put(url, {"lease_minutes": 0}, format="json")
    assert bad.status_code == 400 and "lease_minutes" in bad.json()["errors"]


def test_api_tasks_and_agreement(project, cases, clinician, reviewer):
    url = reverse("api:tasks", args=[project.pk])
    created = api(reviewer).post(
        url, {"case": cases[2].pk, "assignee": "clara", "reason": "check"}, format="json"
    )
    assert created.status_code == 201 and created.json()["assignee"] == "clara"
    assert api(clinician).post(url, {"case": cases[2].pk}, format="json").status_code == 403
    unknown = api(reviewer).post(url, {"case": cases[2].pk, "assignee": "nobody"}, format="json")
    assert unknown.status_code == 400 and "nobody" in unknown.json()["detail"]
    assert [t["case"] for t in api(reviewer).get(url).json()] == [cases[2].pk]
    lease = api(clinician).get(reverse("api:queue-next", args=[project.pk])).json()["lease"]
    assert lease["task"]["id"] == created.json()["id"]
    agreement = api(reviewer).get(reverse("api:agreement", args=[project.pk]))
    assert agreement.status_code == 200 and agreement.json()["cases"] == 0


def test_a_clinician_cannot_settle_an_adjudication_by_naming_it(project, cases, clinician):
    task = LabelTask.objects.create(project=project, case=cases[1], kind="adjudicate")
    response = api(clinician).post(
        reverse("api:case-labels", args=[cases[1].pk]),
        {"value": HF, "task_id": task.pk},
        format="json",
    )
    assert response.status_code == 400 and "Only reviewers" in response.json()["detail"]
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN and not cases[1].labels.exists()


def test_a_task_assigned_to_someone_else_cannot_be_answered(project, cases, clinician, reviewer):
    other = _member(project, "ben")
    task = LabelTask.objects.create(project=project, case=cases[1], kind="relabel", assignee=other)
    response = api(clinician).post(
        reverse("api:case-labels", args=[cases[1].pk]),
        {"value": HF, "task_id": task.pk},
        format="json",
    )
    assert response.status_code == 400 and "assigned to ben" in response.json()["detail"]


def test_token_authentication_accepts_a_token_and_names_a_bad_one(project, cases, clinician):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=clinician)
    client = APIClient()
    url = reverse("api:queue-next", args=[project.pk])
    ok = client.get(url, headers={"Authorization": f"Token {token.key}"})
    assert ok.status_code == 200 and ok.json()["id"] == cases[0].pk
    bad = client.get(url, headers={"Authorization": "Token not-a-token"})
    assert bad.status_code == 401 and bad.json()["detail"] == "Invalid token."
    clinician.is_active = False
    clinician.save()
    gone = client.get(url, headers={"Authorization": f"Token {token.key}"})
    assert gone.status_code == 401
