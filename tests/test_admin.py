"""The Django admin: a data scientist retrains from it; label history cannot be edited there."""

import pytest
from django.urls import reverse

from apps.labeling.models import Label
from apps.modeling.models import RunTrigger, TrainingRun
from apps.projects.models import Membership, Role
from apps.workbench.demo import data_scientists_group

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_scientist(data_scientist):
    data_scientist.is_staff = True
    data_scientist.save()
    data_scientist.groups.add(data_scientists_group())
    return data_scientist


def test_retrain_action_queues_a_run(client, project, staff_scientist):
    client.force_login(staff_scientist)
    changelist = reverse("admin:projects_project_changelist")
    assert project.name in client.get(changelist).content.decode()
    response = client.post(
        changelist, {"action": "retrain", "_selected_action": [project.pk]}, follow=True
    )
    run = TrainingRun.objects.get(project=project)
    assert run.trigger == RunTrigger.ADMIN and run.requested_by == staff_scientist
    assert f"run {run.pk} queued" in response.content.decode()


def test_retrain_action_needs_the_data_scientist_role(client, project, staff_scientist):
    Membership.objects.filter(project=project, user=staff_scientist).update(role=Role.REVIEWER)
    client.force_login(staff_scientist)
    response = client.post(
        reverse("admin:projects_project_changelist"),
        {"action": "retrain", "_selected_action": [project.pk]},
        follow=True,
    )
    assert "needs the data scientist role" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_staff_see_only_their_projects(client, project, outsider, staff_scientist):
    client.force_login(staff_scientist)
    body = client.get(reverse("admin:projects_project_changelist")).content.decode()
    assert "Someone else" not in body


def test_label_history_is_read_only_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("admin:labeling_label_add")).status_code == 403
    from django.contrib import admin

    label_admin = admin.site._registry[Label]
    request = type("R", (), {"user": admin_user})()
    assert not label_admin.has_change_permission(request)
    assert not label_admin.has_delete_permission(request)
