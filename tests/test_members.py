"""Members and project creation: a project admin removes a member (page and API), whose held
cases and tasks are handed back; only data scientists and admins create projects."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditAction, AuditEvent
from apps.cases.models import Case
from apps.labeling.models import Label, LabelTask, Lease, LeaseState, TaskKind, TaskStatus
from apps.labeling.services import label_record, queue_next, task_open
from apps.projects.models import Membership, Project, Role
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_clinician(project, data_scientist, clinician, reviewer, import_frame):
    """Clara labeled a case, holds another and has a relabel task assigned to her."""
    import_frame(project, data_scientist, make_cases_frame(6, labeled=0.0))
    cases = list(Case.objects.filter(project=project).order_by("pk"))
    label_record(case=cases[0], value="heart_failure", author=clinician)
    task = task_open(case=cases[0], kind=TaskKind.RELABEL, created_by=reviewer, assignee=clinician)
    held = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert held is not None
    return task, held


def test_an_admin_removes_a_member_whose_work_goes_back(client, project, busy_clinician):
    task, held = busy_clinician
    admin = Membership.objects.get(project=project, role=Role.ADMIN).user
    client.force_login(admin)
    response = client.post(
        reverse("workbench:member_remove", args=[project.pk]), {"username": "clara"}
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(project=project, user__username="clara").exists()
    held.refresh_from_db()
    task.refresh_from_db()
    assert held.state == LeaseState.RELEASED
    assert task.status == TaskStatus.OPEN and task.assignee is None
    assert Label.objects.filter(author__username="clara").count() == 1  # history stays
    event = AuditEvent.objects.filter(action=AuditAction.ROLE, project_id=project.pk).latest("id")
    assert event.actor == admin and event.detail["to"] is None
    assert event.detail["cases_released"] >= 1 and event.detail["tasks_to_pool"] == 1
    page = client.get(reverse("projects:members", args=[project.pk])).content.decode()
    assert "clara is no longer a member" in page
    # Clara no longer reaches the project.
    client.force_login(held.user)
    assert client.get(reverse("labeling:label", args=[project.pk])).status_code == 404


def test_the_last_admin_cannot_be_removed_and_nothing_changes(client, project, busy_clinician):
    _, held = busy_clinician
    admin = Membership.objects.get(project=project, role=Role.ADMIN).user
    client.force_login(admin)
    url = reverse("workbench:member_remove", args=[project.pk])
    response = client.post(url, {"username": admin.username})
    assert response.status_code == 400
    assert "only admin" in response.content.decode()
    assert Membership.objects.filter(project=project, user=admin, role=Role.ADMIN).exists()
    response = client.post(url, {"username": "nobody-here"})
    assert response.status_code == 400
    assert "&#x27;nobody-here&#x27; is not a member" in response.content.decode()
    held.refresh_from_db()
    assert held.state == LeaseState.ACTIVE


def test_only_an_admin_removes_members(client, project, data_scientist, clinician):
    client.force_login(data_scientist)
    response = client.post(
        reverse("workbench:member_remove", args=[project.pk]), {"username": "clara"}
    )
    assert response.status_code == 403
    assert Membership.objects.filter(project=project, user=clinician).exists()


def test_the_api_removes_a_member(project, busy_clinician):
    task, _ = busy_clinician
    api = APIClient()
    api.force_authenticate(Membership.objects.get(project=project, role=Role.ADMIN).user)
    url = f"/api/projects/{project.pk}/members/"
    assert api.delete(url, {"username": "clara"}, format="json").status_code == 204
    assert not Membership.objects.filter(project=project, user__username="clara").exists()
    again = api.delete(url, {"username": "clara"}, format="json")
    assert again.status_code == 400 and "not a member" in str(again.json())
    assert LabelTask.objects.get(pk=task.pk).assignee is None
    assert not Lease.objects.filter(user__username="clara", state=LeaseState.ACTIVE).exists()


def test_clinicians_and_reviewers_cannot_create_projects(client, project, clinician, reviewer):
    for user in (clinician, reviewer):
        client.force_login(user)
        home = client.get(reverse("workbench:home")).content.decode()
        assert "New project" not in home
        assert client.get(reverse("projects:create")).status_code == 403
        response = client.post(reverse("projects:create"), {"name": "Mine", "classes": "a, b"})
        assert response.status_code == 403
        api = APIClient()
        api.force_authenticate(user)
        refused = api.post("/api/projects/", {"name": "Mine", "classes": ["a", "b"]}, format="json")
        assert (
            refused.status_code == 403 and "data scientists and admins" in refused.json()["detail"]
        )
    assert not Project.objects.filter(name="Mine").exists()


def test_a_data_scientist_of_a_project_creates_another(client, project, reviewer):
    Membership.objects.filter(project=project, user=reviewer).update(role=Role.DATA_SCIENTIST)
    client.force_login(reviewer)
    assert "New project" in client.get(reverse("workbench:home")).content.decode()
    response = client.post(reverse("projects:create"), {"name": "Sepsis", "classes": "a, b"})
    assert response.status_code == 302
    assert Membership.objects.get(project__name="Sepsis").user == reviewer
