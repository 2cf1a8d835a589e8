"""The Django admin: a data scientist (no superuser, no staff flag) enters it by their role,
sees their own projects' records only and retrains, deploys and rolls back there; clinicians
and reviewers stay out; the label history cannot be edited there."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditAction, AuditEvent
from apps.labeling.models import Label
from apps.modeling.models import RunTrigger, TrainingRun
from apps.projects.models import Membership, Project, Role
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

SCOPED_LISTS = [
    "admin:projects_project_changelist",
    "admin:modeling_trainingrun_changelist",
    "admin:modeling_modelversion_changelist",
    "admin:modeling_deployment_changelist",
    "admin:modeling_monitoringreport_changelist",
    "admin:modeling_objective_changelist",
    "admin:modeling_trainingconfig_changelist",
    "admin:labeling_label_changelist",
    "admin:labeling_labeltask_changelist",
    "admin:labeling_queuesettings_changelist",
    "admin:cases_importbatch_changelist",
    "admin:features_featuresetversion_changelist",
    "admin:audit_auditevent_changelist",
]


def _admin_login(client, username: str):
    return client.post(
        reverse("admin:login") + "?next=/admin/",
        {"username": username, "password": PASSWORD},
    )


def test_a_data_scientist_enters_the_admin_by_their_role(client, project, data_scientist):
    assert not data_scientist.is_staff and not data_scientist.is_superuser
    response = _admin_login(client, data_scientist.username)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    index = client.get("/admin/").content.decode()
    for name in ("Projects", "Training runs", "Model versions", "Deployments"):
        assert name in index
    assert "Monitoring reports" in index
    assert "You don’t have permission" not in index
    assert "Users" not in index  # people are the superuser's


@pytest.mark.parametrize("persona", ["clinician", "reviewer"])
def test_clinicians_and_reviewers_cannot_enter_the_admin(client, project, request, persona):
    user = request.getfixturevalue(persona)
    user.is_staff = True  # not even with the staff flag set by hand
    user.save()
    response = _admin_login(client, user.username)
    assert response.status_code == 200
    assert "The admin is for data scientists and admins" in response.content.decode()
    client.force_login(user)
    assert client.get("/admin/").status_code == 302
    changelist = reverse("admin:projects_project_changelist")
    assert client.get(changelist).status_code == 302


def test_the_admin_follows_the_role(client, project, data_scientist):
    client.force_login(data_scientist)
    assert client.get("/admin/").status_code == 200
    Membership.objects.filter(project=project, user=data_scientist).update(role=Role.REVIEWER)
    assert client.get("/admin/").status_code == 302


def test_nothing_of_another_project_is_listed_counted_or_reachable(
    client, project, outsider, data_scientist
):
    other = Project.objects.get(name="Someone else's project")
    theirs = TrainingRun.objects.create(project=other, trigger=RunTrigger.MANUAL, labels_version=0)
    mine = TrainingRun.objects.create(project=project, trigger=RunTrigger.MANUAL, labels_version=0)
    AuditEvent.objects.create(
        action=AuditAction.RETRAIN, actor_name="olga", project_id=other.pk, summary="secret run"
    )
    client.force_login(data_scientist)
    for name in SCOPED_LISTS:
        response = client.get(reverse(name))
        assert response.status_code == 200, name
        body = response.content.decode()
        assert "Someone else" not in body and "secret run" not in body, name
        assert "olga" not in body, name
    runs = client.get(reverse("admin:modeling_trainingrun_changelist")).content.decode()
    assert "1 training run" in runs and f"{mine.pk}" in runs
    # By id: the other project and its run are as if they did not exist.
    for name, pk in (
        ("admin:projects_project_change", other.pk),
        ("admin:modeling_trainingrun_change", theirs.pk),
    ):
        response = client.get(reverse(name, args=[pk]), follow=True)
        assert "doesn’t exist" in response.content.decode(), name
    # A project filter naming the other project's id shows nothing of it.
    filtered = client.get(reverse("admin:audit_auditevent_changelist") + f"?project={other.pk}")
    assert "secret run" not in filtered.content.decode()


def test_retrain_action_queues_a_run(client, project, data_scientist):
    client.force_login(data_scientist)
    changelist = reverse("admin:projects_project_changelist")
    assert project.name in client.get(changelist).content.decode()
    response = client.post(
        changelist, {"action": "retrain", "_selected_action": [project.pk]}, follow=True
    )
    run = TrainingRun.objects.get(project=project)
    assert run.trigger == RunTrigger.ADMIN and run.requested_by == data_scientist
    assert f"run {run.pk} queued" in response.content.decode()


def test_a_project_where_one_is_only_a_reviewer_is_not_in_the_admin(
    client, project, data_scientist, outsider
):
    other = Project.objects.get(name="Someone else's project")
    Membership.objects.create(project=other, user=data_scientist, role=Role.REVIEWER)
    client.force_login(data_scientist)
    body = client.get(reverse("admin:projects_project_changelist")).content.decode()
    assert project.name in body and other.name not in body
    response = client.post(
        reverse("admin:projects_project_changelist"),
        {"action": "retrain", "_selected_action": [other.pk]},
        follow=True,
    )
    assert not TrainingRun.objects.filter(project=other).exists()
    assert response.status_code == 200


def test_the_audit_log_names_the_project_and_filters_by_project_and_person(
    client, project, data_scientist, clinician
):
    for actor in (data_scientist, clinician):
        AuditEvent.objects.create(
            action=AuditAction.LABEL,
            actor=actor,
            actor_name=actor.username,
            project_id=project.pk,
            summary=f"event of {actor.username}",
        )
    client.force_login(data_scientist)
    url = reverse("admin:audit_auditevent_changelist")
    body = client.get(url).content.decode()
    assert f'<td class="field-project_name">{project.name}</td>' in body
    by_person = client.get(url + "?person=clara").content.decode()
    assert "event of clara" in by_person and "event of dana" not in by_person
    by_project = client.get(url + f"?project={project.pk}").content.decode()
    assert "event of clara" in by_project and "event of dana" in by_project


def test_label_history_is_read_only_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("admin:labeling_label_add")).status_code == 403
    from django.contrib import admin

    label_admin = admin.site._registry[Label]
    request = type("R", (), {"user": admin_user})()
    assert not label_admin.has_change_permission(request)
    assert not label_admin.has_delete_permission(request)


def test_the_top_bar_links_to_the_admin_for_those_who_may_enter(
    client, project, data_scientist, clinician
):
    client.force_login(data_scientist)
    assert 'href="/admin/">Admin</a>' in client.get(reverse("workbench:home")).content.decode()
    clinician.is_staff = True
    clinician.save()
    client.force_login(clinician)
    assert 'href="/admin/"' not in client.get(reverse("workbench:home")).content.decode()
