"""The label history is append-only in the database itself: raw SQL cannot rewrite a label row
(nor, on PostgreSQL, delete one), and a case or project that has labels cannot be deleted."""

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.urls import reverse

from apps.cases.models import Case
from apps.labeling.models import Label
from apps.labeling.services import label_record
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled(project, data_scientist, clinician, import_frame):
    import_frame(project, data_scientist, make_cases_frame(3, labeled=0.0))
    case = Case.objects.filter(project=project).order_by("pk").first()
    return label_record(case=case, value="heart_failure", author=clinician)


def _raw(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_the_database_refuses_to_rewrite_a_label(labeled):
    with pytest.raises((DatabaseError, IntegrityError)), transaction.atomic():
        _raw("UPDATE labeling_label SET value = %s WHERE id = %s", ["no_heart_failure", labeled.pk])
    with pytest.raises((DatabaseError, IntegrityError)), transaction.atomic():
        Label.objects.filter(pk=labeled.pk).update(author_id=labeled.author_id)
    assert Label.objects.get(pk=labeled.pk).value == "heart_failure"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's test runs empty tables")
def test_postgresql_refuses_to_delete_a_label(labeled):
    with pytest.raises(DatabaseError), transaction.atomic():
        _raw("DELETE FROM labeling_label WHERE id = %s", [labeled.pk])
    assert Label.objects.filter(pk=labeled.pk).exists()


def test_a_case_or_project_with_labels_cannot_be_deleted(labeled, project):
    with pytest.raises(ProtectedError), transaction.atomic():
        Case.objects.get(pk=labeled.case_id).delete()
    with pytest.raises(ProtectedError), transaction.atomic():
        project.delete()
    assert Label.objects.filter(pk=labeled.pk).exists()
    # A case nobody labeled can go.
    unlabeled = Case.objects.filter(project=project).exclude(pk=labeled.case_id).first()
    unlabeled.delete()
    assert not Case.objects.filter(pk=unlabeled.pk).exists()


def test_the_admin_says_why_a_project_with_labels_stays(client, admin_user, labeled, project):
    client.force_login(admin_user)
    url = reverse("admin:projects_project_delete", args=[project.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "Cannot delete project" in page.content.decode()
    refused = client.post(url, {"post": "yes"})
    assert refused.status_code in (200, 403)
    assert Label.objects.filter(pk=labeled.pk).exists()
