"""Pages: each view's happy path, outsider → 404, too-low role → 403, bad input → a clear error."""

import pytest
from django.urls import reverse

from apps.cases.models import Case
from apps.labeling.models import Label, LabelKind
from apps.modeling.models import TrainingRun
from apps.projects.models import Membership, Role
from tests.conftest import csv_upload, make_cases_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def cases(project, data_scientist, import_frame):
    import_frame(project, data_scientist, make_cases_frame(6, labeled=0.0))
    return list(Case.objects.filter(project=project).order_by("pk"))


def login(client, user):
    client.force_login(user)
    return client


def test_anonymous_is_sent_to_log_in(client, project):
    response = client.get(reverse("workbench:project", args=[project.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_home_lists_only_my_projects(client, project, clinician, outsider):
    body = login(client, clinician).get(reverse("workbench:home")).content.decode()
    assert "Heart failure" in body and "Someone else" not in body
    body = login(client, outsider).get(reverse("workbench:home")).content.decode()
    assert "Heart failure" not in body and "Someone else" in body


@pytest.mark.parametrize(
    "name",
    ["workbench:project", "labeling:label", "modeling:runs"],
)
def test_member_pages_hide_the_project_from_outsiders(client, project, outsider, clinician, name):
    url = reverse(name, args=[project.pk])
    assert login(client, outsider).get(url).status_code == 404
    assert login(client, clinician).get(url).status_code == 200


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("labeling:import", "get"),
        ("projects:settings", "get"),
        ("modeling:retrain", "post"),
        ("projects:members", "get"),
    ],
)
def test_data_pages_need_a_higher_role(client, project, clinician, outsider, name, method):
    url = reverse(name, args=[project.pk])
    assert getattr(login(client, clinician), method)(url).status_code == 403
    assert getattr(login(client, outsider), method)(url).status_code == 404


def test_labeling_screen_shows_the_case_grouped_with_units(client, project, cases, clinician):
    body = login(client, clinician).get(reverse("labeling:label", args=[project.pk])).content
    body = body.decode()
    assert cases[0].external_id in body
    assert "Demographics" in body and "Labs" in body and "mg/dL" in body
    assert "<kbd>1</kbd> no_heart_failure" in body and "<kbd>2</kbd> heart_failure" in body
    assert "Model suggests" not in body  # predictions are off by default


def test_labeling_posts_return_the_next_case_as_a_fragment(client, project, cases, clinician):
    login(client, clinician)
    url = reverse("labeling:submit", args=[project.pk, cases[0].pk])
    response = client.post(url, {"value": "heart_failure"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body  # a fragment, not a page
    assert f"Labeled {cases[0].external_id} as heart_failure." in body
    assert cases[1].external_id in body
    label = Label.objects.get(case=cases[0])
    assert (label.value, label.kind, label.author) == (
        "heart_failure",
        LabelKind.LABELED,
        clinician,
    )


def test_an_unknown_label_is_refused_with_a_message(client, project, cases, clinician):
    login(client, clinician)
    url = reverse("labeling:submit", args=[project.pk, cases[0].pk])
    response = client.post(url, {"value": "flu"}, headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "Unknown label &#x27;flu&#x27;" in response.content.decode()
    assert not Label.objects.exists()


def test_a_case_of_another_project_cannot_be_labeled_through_mine(
    client, project, cases, clinician, outsider, data_scientist
):
    other = Membership.objects.get(user=outsider).project
    Membership.objects.create(project=other, user=clinician, role=Role.CLINICIAN)
    url = reverse("labeling:submit", args=[other.pk, cases[0].pk])
    response = login(client, clinician).post(url, {"value": "a"})
    assert response.status_code == 404
    assert not Label.objects.exists()


def test_skip_and_undo(client, project, cases, clinician):
    login(client, clinician)
    hx = {"HX-Request": "true"}
    client.post(reverse("labeling:skip", args=[project.pk, cases[0].pk]), headers=hx)
    response = client.get(reverse("labeling:label", args=[project.pk]), headers=hx)
    assert cases[1].external_id in response.content.decode()
    client.post(
        reverse("labeling:submit", args=[project.pk, cases[1].pk]), {"value": "heart_failure"}
    )
    response = client.post(reverse("labeling:undo", args=[project.pk]), headers=hx)
    assert f"Undid your label of {cases[1].external_id}" in response.content.decode()
    assert list(Label.objects.values_list("kind", flat=True)) == ["labeled", "undone"]


def test_import_page_reports_each_bad_row_and_stores_nothing(client, project, data_scientist):
    login(client, data_scientist)
    bad = "external_id,age,creatinine,nt_pro_bnp,label\na,70,1,x,heart_failure\nb,1,1,1,flu\n"
    response = client.post(
        reverse("labeling:import", args=[project.pk]),
        {"file": csv_upload(bad)},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "nothing was stored" in body
    assert "&#x27;x&#x27; is not a number" in body and "unknown label &#x27;flu&#x27;" in body
    assert not Case.objects.exists()


def test_import_page_imports_a_good_file(client, project, data_scientist):
    login(client, data_scientist)
    good = "external_id,age,creatinine,nt_pro_bnp,label\na,70,1,300,heart_failure\nb,60,1,30,\n"
    response = client.post(
        reverse("labeling:import", args=[project.pk]),
        {"file": csv_upload(good)},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Imported <strong>2</strong> cases" in response.content.decode()
    assert "casesImported" in response.headers["HX-Trigger"]
    assert Case.objects.count() == 2 and Label.objects.count() == 1


def test_exports_for_data_scientists(client, project, cases, clinician, data_scientist):
    client.force_login(clinician)
    client.post(
        reverse("labeling:submit", args=[project.pk, cases[0].pk]), {"value": "heart_failure"}
    )
    url = reverse("labeling:export", args=[project.pk, "labels", "csv"])
    assert client.get(url).status_code == 403
    response = login(client, data_scientist).get(url)
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("external_id,occurred_at,label,kind,labeled_by")
    assert lines[1].startswith("p000000,") and ",heart_failure,labeled,clara," in lines[1]
    parquet = client.get(reverse("labeling:export", args=[project.pk, "history", "parquet"]))
    assert parquet.content[:4] == b"PAR1"


def test_retrain_button_queues_one_run(client, project, cases, data_scientist):
    login(client, data_scientist)
    url = reverse("modeling:retrain", args=[project.pk])
    first = client.post(url, headers={"HX-Request": "true"})
    second = client.post(url, headers={"HX-Request": "true"})
    run = TrainingRun.objects.get()
    assert f"Run {run.pk} queued." in first.content.decode()
    assert f"Run {run.pk} is already queued." in second.content.decode()
    assert 'hx-trigger="every 2s"' in second.content.decode()  # the panel polls while active


def test_create_project_form(client, data_scientist):
    login(client, data_scientist)
    response = client.post(reverse("projects:create"), {"name": "X", "classes": "only_one"})
    assert "at least two label classes" in response.content.decode()
    response = client.post(
        reverse("projects:create"),
        {"name": "Sepsis", "classes": "sepsis, no_sepsis", "features": "lactate, mmol/L, Labs"},
    )
    assert response.status_code == 302
    membership = Membership.objects.get(project__name="Sepsis")
    assert membership.user == data_scientist and membership.role == Role.ADMIN
    assert list(membership.project.classes) == ["sepsis", "no_sepsis"]


def test_settings_and_members(client, project, data_scientist, clinician, outsider):
    login(client, data_scientist)
    response = client.post(
        reverse("projects:settings", args=[project.pk]),
        {
            "show_predictions": "on",
            "auto_retrain": "on",
            "retrain_min_new_labels": 5,
            "retrain_quiet_seconds": 30,
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.show_predictions and project.retrain_min_new_labels == 5
    # The creator is the project's admin: only they manage members.
    Membership.objects.filter(project=project, user=data_scientist).update(role=Role.ADMIN)
    response = client.post(
        reverse("projects:members", args=[project.pk]), {"username": "nobody", "role": "clinician"}
    )
    assert "No user named &#x27;nobody&#x27;" in response.content.decode()
    client.post(
        reverse("projects:members", args=[project.pk]),
        {"username": outsider.username, "role": "reviewer"},
    )
    assert Membership.objects.get(project=project, user=outsider).role == Role.REVIEWER


def test_labeling_a_case_takes_a_fixed_number_of_queries(
    client, project, cases, clinician, django_assert_num_queries
):
    """The hot path of the labeling screen: session, user, access, case; the label write (one
    read that locks the case, label, counts, lease, case, labels version, audit event; on
    PostgreSQL these writes go in one round trip); then the next case
    (one read of the queue's state for the person, then candidate, lease, case), its features
    and history, the progress counts and the recent labels. None of them grows with the
    number of cases."""
    login(client, clinician)
    url = reverse("labeling:submit", args=[project.pk, cases[0].pk])
    with django_assert_num_queries(24):
        response = client.post(url, {"value": "heart_failure"}, headers={"HX-Request": "true"})
    assert response.status_code == 200


def test_a_stale_labeling_screen_says_who_labeled_the_case_meanwhile(
    client, project, cases, clinician, reviewer
):
    from apps.labeling.services import label_record

    login(client, clinician)
    page = client.get(reverse("labeling:label", args=[project.pk])).content.decode()
    assert 'name="seen_label_id" value="0"' in page
    label_record(case=cases[0], value="no_heart_failure", author=reviewer)
    response = client.post(
        reverse("labeling:submit", args=[project.pk, cases[0].pk]),
        {"value": "heart_failure", "seen_label_id": "0"},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 409
    assert "changed by rafael" in body and "Your label was not saved" in body
    assert list(Label.objects.values_list("value", flat=True)) == ["no_heart_failure"]


def test_the_last_admin_cannot_step_down(client, project, data_scientist):
    Membership.objects.filter(project=project, user__username="ada").delete()
    Membership.objects.filter(project=project, user=data_scientist).update(role=Role.ADMIN)
    login(client, data_scientist)
    response = client.post(
        reverse("projects:members", args=[project.pk]),
        {"username": data_scientist.username, "role": "clinician"},
    )
    assert "only admin" in response.content.decode()
    assert Membership.objects.get(project=project, user=data_scientist).role == Role.ADMIN
