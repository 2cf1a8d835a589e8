"""The audit log: consequential actions are recorded with who, when and from where; nobody
changes or deletes an event, not through the admin, the API or the database."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.urls import reverse

from apps.audit.models import AuditAction, AuditEvent
from apps.labeling.services import label_record
from apps.modeling import services as modeling_services
from apps.projects.models import Role
from apps.projects.services import membership_set
from tests.conftest import PASSWORD, make_cases_frame

pytestmark = pytest.mark.django_db


def _actions(**filters) -> list[str]:
    return list(
        AuditEvent.objects.filter(**filters).order_by("id").values_list("action", flat=True)
    )


def test_logins_and_failed_logins_are_recorded_with_their_address(client, clinician):
    login_url = reverse("login")
    client.post(login_url, {"username": "clara", "password": "wrong"}, REMOTE_ADDR="10.1.2.3")
    client.post(login_url, {"username": "clara", "password": PASSWORD}, REMOTE_ADDR="10.1.2.4")
    failed, logged_in = AuditEvent.objects.order_by("id")
    assert failed.action == AuditAction.LOGIN_FAILED and failed.actor is None
    assert failed.actor_name == "clara" and failed.ip == "10.1.2.3"
    assert "wrong" not in str(failed.detail) + failed.summary  # never the password
    assert logged_in.action == AuditAction.LOGIN and logged_in.actor == clinician
    assert logged_in.ip == "10.1.2.4"


def test_labels_relabels_and_exports_are_recorded(
    client, project, data_scientist, clinician, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(5, labeled=0.0))
    assert _actions(project_id=project.pk, action=AuditAction.IMPORT) == [AuditAction.IMPORT]
    case = project.cases.order_by("id").first()
    client.force_login(clinician)
    client.post(
        reverse("labeling:submit", args=[project.pk, case.pk]),
        {"value": "heart_failure"},
        headers={"HX-Request": "true"},
        REMOTE_ADDR="10.9.9.9",
    )
    (event,) = AuditEvent.objects.filter(action=AuditAction.LABEL)
    assert event.actor == clinician and event.project_id == project.pk
    assert event.object_id == str(case.pk) and event.ip == "10.9.9.9"
    case.refresh_from_db()
    label_record(case=case, value="no_heart_failure", author=data_scientist)
    relabel = AuditEvent.objects.get(action=AuditAction.RELABEL)
    assert "was heart_failure" in relabel.summary and relabel.ip is None  # not from a request
    client.force_login(data_scientist)
    client.get(reverse("labeling:export", args=[project.pk, "history", "csv"]))
    assert AuditEvent.objects.filter(action=AuditAction.EXPORT, actor=data_scientist).exists()


def test_settings_and_role_changes_are_recorded(
    project, data_scientist, reviewer, import_frame, settings, tmp_path
):
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    modeling_services.objective_change(
        project=project, changed_by=data_scientist, metric="balanced_accuracy", note="rare class"
    )
    modeling_services.training_config_change(
        project=project, changed_by=data_scientist, model_family="random_forest"
    )
    membership_set(
        project=project,
        username=reviewer.username,
        role=Role.DATA_SCIENTIST,
        changed_by=data_scientist,
    )
    actions = _actions(project_id=project.pk, actor=data_scientist)
    assert actions == [AuditAction.OBJECTIVE, AuditAction.TRAINING_CONFIG, AuditAction.ROLE]
    role = AuditEvent.objects.filter(action=AuditAction.ROLE, actor=data_scientist).get()
    assert role.detail == {"user": "rafael", "from": "reviewer", "to": "data_scientist"}


def test_the_admin_shows_the_log_but_cannot_add_change_or_delete(client, data_scientist):
    event = AuditEvent.objects.create(
        action=AuditAction.LOGIN, actor_name="x", summary="x logged in"
    )
    data_scientist.is_staff = True
    data_scientist.is_superuser = True  # even a superuser
    data_scientist.save()
    client.force_login(data_scientist)
    assert client.get(reverse("admin:audit_auditevent_changelist")).status_code == 200
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    change = reverse("admin:audit_auditevent_change", args=[event.pk])
    assert client.post(change, {"summary": "edited"}).status_code == 403
    delete = reverse("admin:audit_auditevent_delete", args=[event.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    event.refresh_from_db()
    assert event.summary == "x logged in"
    assert not Permission.objects.filter(codename="change_auditevent", user=data_scientist).exists()


def test_the_database_refuses_to_change_an_event(data_scientist):
    event = AuditEvent.objects.create(action=AuditAction.LOGIN, actor_name="x", summary="x")
    with pytest.raises((DatabaseError, IntegrityError)), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(summary="rewritten")
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).delete()
    event.refresh_from_db()
    assert event.summary == "x"


def test_no_api_endpoint_writes_the_audit_log():
    from django.urls import get_resolver

    def walk(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern), p

    for route, _ in walk(get_resolver().url_patterns):
        if route.startswith("api/"):
            assert "audit" not in route, route
