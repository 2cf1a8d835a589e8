"""A blind relabel from the labeling screen: the task can be answered, nothing on the page or in
its messages names the questioned label or its author, and a real stale case is still caught."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.cases.models import Case
from apps.labeling.models import Label, LabelKind, LabelTask, TaskKind, TaskStatus
from apps.labeling.services import label_record
from apps.projects.models import Role
from apps.projects.services import membership_set
from apps.review.services import relabel_tasks_open
from tests.conftest import _user, make_cases_frame

pytestmark = pytest.mark.django_db

SEEN = re.compile(r'name="seen_label_id" value="(\d+)"')
ALERT = re.compile(r'<p class="msg error" role="alert">(.*?)</p>', re.S)


@pytest.fixture
def questioned(project, data_scientist, clinician, reviewer, import_frame):
    """Clara labeled a case heart_failure; the reviewer sends it back to the pool, blind (the
    project's default)."""
    import_frame(project, data_scientist, make_cases_frame(3, labeled=0.0))
    case = Case.objects.filter(project=project).order_by("pk").first()
    label_record(case=case, value="heart_failure", author=clinician)
    assert project.relabel_blind
    relabel_tasks_open(
        project=project, case_ids=[case.pk], created_by=reviewer, reason="NT-proBNP is low"
    )
    ben = _user("ben")
    membership_set(project=project, username="ben", role=Role.CLINICIAN)
    case.refresh_from_db()
    return case, ben


def _label_page(client, project):
    return client.get(reverse("labeling:label", args=[project.pk])).content.decode()


def _answer(client, project, case, page: str, value: str):
    task = LabelTask.objects.get(case=case, kind=TaskKind.RELABEL)
    return client.post(
        reverse("labeling:submit", args=[project.pk, case.pk]),
        {"value": value, "seen_label_id": SEEN.search(page).group(1), "task_id": task.pk},
        headers={"HX-Request": "true"},
    )


def test_a_blind_relabel_is_answered_from_the_labeling_screen(client, project, questioned):
    case, ben = questioned
    client.force_login(ben)
    page = _label_page(client, project)
    assert f'data-case-id="{case.pk}"' in page and "Relabel blind" in page
    # Neither the questioned label nor who gave it is on the page.
    assert "Current label" not in page and "clara" not in page
    assert "This case's labels" not in page

    response = _answer(client, project, case, page, "no_heart_failure")

    assert response.status_code == 200, ALERT.findall(response.content.decode())
    relabel = Label.objects.filter(case=case).order_by("-id").first()
    assert (relabel.author, relabel.kind, relabel.value) == (
        ben,
        LabelKind.RELABELED,
        "no_heart_failure",
    )
    task = LabelTask.objects.get(case=case, kind=TaskKind.RELABEL)
    assert task.status == TaskStatus.DONE and task.label == relabel
    # The two disagree: a reviewer settles it.
    assert LabelTask.objects.filter(
        case=case, kind=TaskKind.ADJUDICATE, status=TaskStatus.OPEN
    ).exists()


def test_a_blind_relabel_changed_meanwhile_is_refused_without_naming_the_label(
    client, project, questioned, clinician
):
    case, ben = questioned
    client.force_login(ben)
    page = _label_page(client, project)
    # While Ben looks, Clara corrects her own label from "My recent labels".
    label_record(
        case=case,
        value="no_heart_failure",
        author=clinician,
        seen_label_id=int(SEEN.search(page).group(1)),
    )

    response = _answer(client, project, case, page, "heart_failure")

    body = response.content.decode()
    assert response.status_code == 409
    (message,) = ALERT.findall(body)
    assert "labeled by someone else" in message and "not saved" in message
    for hidden in ("clara", "no_heart_failure", "heart_failure"):
        assert hidden not in message
    assert "clara" not in body and "Current label" not in body
    assert Label.objects.filter(case=case, author=ben).count() == 0
    # The page now holds the case as it is: the next key press is saved.
    again = _answer(client, project, case, body, "heart_failure")
    assert again.status_code == 200
    assert Label.objects.filter(case=case, author=ben, kind=LabelKind.RELABELED).count() == 1


def test_a_label_given_in_another_tab_is_named_as_yours(client, project, clinician, questioned):
    case = Case.objects.filter(project=project).order_by("pk")[1]
    client.force_login(clinician)
    url = reverse("labeling:submit", args=[project.pk, case.pk])
    # Two tabs showed the unlabeled case; the first one labels it.
    label_record(case=case, value="heart_failure", author=clinician, seen_label_id=0)
    response = client.post(
        url, {"value": "no_heart_failure", "seen_label_id": "0"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 409
    (message,) = ALERT.findall(response.content.decode())
    assert "You labeled case" in message and "another tab or window" in message
    assert "changed by clara" not in message


def _answer_as(client, project, user, value: str):
    client.force_login(user)
    page = _label_page(client, project)
    case_id = int(re.search(r'data-case-id="(\d+)"', page).group(1))
    case = Case.objects.get(pk=case_id)
    return case, page, _answer(client, project, case, page, value)


def test_undoing_a_blind_relabel_answer_does_not_show_the_questioned_label(
    client, project, questioned
):
    case, ben = questioned
    _, _, response = _answer_as(client, project, ben, "no_heart_failure")
    assert response.status_code == 200
    undone = client.post(
        reverse("labeling:undo", args=[project.pk]), headers={"HX-Request": "true"}
    ).content.decode()
    # Ben holds the task again, blind; the value the case went back to is Clara's label.
    assert f'data-case-id="{case.pk}"' in undone and "Relabel blind" in undone
    assert "back to" not in undone
    assert f">{case.external_id}</a>" not in undone  # not in "My recent labels" either


def test_the_questioned_author_is_not_handed_the_blind_pool_task(client, project, questioned):
    case, ben = questioned
    clara = Label.objects.get(case=case).author
    client.force_login(clara)
    assert f'data-case-id="{case.pk}"' not in _label_page(client, project)
    client.force_login(ben)
    assert f'data-case-id="{case.pk}"' in _label_page(client, project)


def test_the_api_hides_a_blind_relabels_history_from_the_one_answering(client, project, questioned):
    from rest_framework.test import APIClient

    case, ben = questioned
    client.force_login(ben)
    _label_page(client, project)  # Ben now holds the task
    api = APIClient()
    api.force_authenticate(ben)
    history = api.get(f"/api/cases/{case.pk}/labels").json()
    assert history == []
    api.force_authenticate(Label.objects.get(case=case).author)
    assert [row["value"] for row in api.get(f"/api/cases/{case.pk}/labels").json()] == [
        "heart_failure"
    ]


def test_a_blind_task_answered_by_someone_else_does_not_say_by_whom(
    client, project, questioned, clinician
):
    case, ben = questioned
    client.force_login(ben)
    page = _label_page(client, project)
    task = LabelTask.objects.get(case=case, kind=TaskKind.RELABEL)
    label_record(case=case, value="no_heart_failure", author=clinician, task=task)
    response = _answer(client, project, case, page, "heart_failure")
    assert response.status_code == 409
    (message,) = ALERT.findall(response.content.decode())
    assert "someone else answered it" in message and "clara" not in message


def test_the_mentions_page_hides_a_comment_on_a_case_held_blind(
    client, project, questioned, reviewer
):
    from apps.review.services import comment_add

    case, ben = questioned
    comment_add(case=case, author=reviewer, body="@ben clara said heart_failure, look again")
    client.force_login(ben)
    _label_page(client, project)  # Ben holds the blind relabel
    page = client.get(reverse("review:mentions")).content.decode()
    assert case.external_id in page and "clara said" not in page
    assert "Hidden until you have given your label" in page
    _answer(client, project, case, _label_page(client, project), "no_heart_failure")
    assert "clara said" in client.get(reverse("review:mentions")).content.decode()


def test_cases_hidden_for_an_overlap_labeler_until_they_give_theirs(
    project, data_scientist, clinician, reviewer, import_frame
):
    from apps.labeling.selectors import case_ids_hidden_for
    from apps.labeling.services import queue_next, queue_settings_change

    queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.0, overlap_labels=2)
    import_frame(project, data_scientist, make_cases_frame(2, labeled=0.0, seed=4))
    ids = list(Case.objects.filter(project=project).values_list("pk", flat=True))
    assert set(Case.objects.filter(pk__in=ids).values_list("queue_wanted", flat=True)) == {2}
    assert case_ids_hidden_for(user=clinician, case_ids=ids) == set(ids)
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    label_record(case=lease.case, value="heart_failure", author=clinician)
    assert case_ids_hidden_for(user=clinician, case_ids=ids) == set(ids) - {lease.case_id}
    assert case_ids_hidden_for(user=reviewer, case_ids=ids) == set(ids)


def test_class_counts_that_would_tell_the_questioned_label_are_not_shown(
    client, project, questioned, clinician, reviewer
):
    _, ben = questioned
    client.force_login(ben)
    page = _label_page(client, project)
    assert 'class="table compact balance"' not in page
    assert "while relabels are blind" in page
    home = client.get(reverse("workbench:project", args=[project.pk])).content.decode()
    assert 'class="table compact balance"' not in home
    client.force_login(reviewer)
    home = client.get(reverse("workbench:project", args=[project.pk])).content.decode()
    assert 'class="table compact balance"' in home
    project.relabel_blind = False
    project.save(update_fields=["relabel_blind"])
    client.force_login(clinician)
    assert 'class="table compact balance"' in _label_page(client, project)


def test_no_relabel_while_the_case_is_being_adjudicated_and_the_dispute_names_the_file(
    client, project, data_scientist, reviewer, import_frame
):
    from apps.labeling.services import task_open

    import_frame(project, data_scientist, make_cases_frame(3, labeled=1.0, seed=2))
    case = Case.objects.filter(project=project).order_by("pk").first()
    relabel_tasks_open(project=project, case_ids=[case.pk], created_by=reviewer, reason="look")
    ben = _user("ben")
    membership_set(project=project, username="ben", role=Role.CLINICIAN)
    other = next(c for c in project.classes if c != case.current_label)
    _, _, response = _answer_as(client, project, ben, other)
    assert response.status_code == 200
    dispute = LabelTask.objects.get(case=case, kind=TaskKind.ADJUDICATE, status=TaskStatus.OPEN)
    assert "(imported)" in dispute.reason and data_scientist.username not in dispute.reason
    with pytest.raises(ValidationError, match="open adjudication"):
        task_open(case=case, kind=TaskKind.RELABEL, created_by=reviewer)
    opened, skipped = relabel_tasks_open(
        project=project, case_ids=[case.pk], created_by=reviewer, reason="again"
    )
    assert (opened, skipped) == (0, 1)
    assert LabelTask.objects.filter(case=case, kind=TaskKind.RELABEL, status="open").count() == 0
