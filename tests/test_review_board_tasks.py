"""Following up what the board asked: closed tasks and their outcome, the labels in dispute,
select-all on the board; the discussion of a case one labels independently; unseen mentions."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.cases.models import Case
from apps.labeling.models import LabelTask, TaskKind, TaskStatus
from apps.labeling.services import label_record, queue_next, queue_settings_change
from apps.projects.models import Role
from apps.projects.services import membership_set
from apps.review import services
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def cases(project, data_scientist, import_frame):
    import_frame(project, data_scientist, make_cases_frame(12, labeled=0.0, seed=5))
    return list(Case.objects.filter(project=project).order_by("id"))


@pytest.fixture
def sam(project):
    from apps.accounts.models import User

    user = User.objects.create_user(username="sam", password="a-long-test-password")
    membership_set(project=project, username="sam", role=Role.CLINICIAN)
    return user


def _relabel(project, case, reviewer, clinician, value, reason="check it"):
    services.relabel_tasks_open(
        project=project, case_ids=[case.pk], created_by=reviewer, reason=reason, assignee=clinician
    )
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert lease.case_id == case.pk and lease.task.kind == TaskKind.RELABEL
    label_record(case=case, value=value, author=clinician, task=lease.task)
    return LabelTask.objects.get(pk=lease.task_id)


def test_closed_tasks_are_listed_with_their_outcome(
    client, project, cases, clinician, reviewer, sam
):
    first, second, third = cases[:3]
    for case in (first, second, third):
        label_record(case=case, value="heart_failure", author=clinician)
    kept = _relabel(project, first, reviewer, sam, "heart_failure", reason="NT-proBNP?")
    changed = _relabel(project, second, reviewer, sam, "no_heart_failure", reason="age?")
    # The relabel that disagreed asked for an adjudication; a reviewer settles it.
    adjudication = LabelTask.objects.get(case=second, kind=TaskKind.ADJUDICATE)
    other_reviewer = _reviewer(project, "rita")
    label_record(case=second, value="no_heart_failure", author=other_reviewer, task=adjudication)
    # One request is cancelled before anyone answers it.
    services.relabel_tasks_open(
        project=project, case_ids=[third.pk], created_by=reviewer, reason="never mind"
    )
    LabelTask.objects.filter(case=third, status=TaskStatus.OPEN).update(status=TaskStatus.CANCELLED)

    client.force_login(reviewer)
    url = reverse("labeling:agreement", args=[project.pk])
    page = client.get(url)
    html = page.content.decode()
    assert page.status_code == 200
    assert "No relabel request yet" not in html
    assert "No open relabel request: the answered ones are under “Closed tasks” below." in html
    closed = {c.task.pk: c for c in page.context["closed_tasks"]}
    assert set(closed) == {kept.pk, changed.pk, adjudication.pk} | set(
        LabelTask.objects.filter(case=third).values_list("pk", flat=True)
    )
    assert closed[kept.pk].changed is False and closed[kept.pk].before == "heart_failure"
    assert closed[changed.pk].changed is True and closed[changed.pk].before == "heart_failure"
    # Who asked, when, what came of it, and by whom.
    assert "From the review board: NT-proBNP?" in html
    assert "by sam" in html and "by rita" in html
    assert '<strong>yes</strong> <span class="small muted">was heart_failure</span>' in html
    assert 'no <span class="small muted">kept heart_failure</span>' in html
    assert '<span class="pill">cancelled</span>' in html
    assert html.count("rafael <span") >= 3  # asked by the reviewer


def test_closed_tasks_are_paged_and_read_in_a_fixed_number_of_queries(
    client, project, cases, clinician, reviewer, sam, monkeypatch
):
    from apps.labeling import selectors as labeling_selectors

    for case in cases[:8]:
        label_record(case=case, value="heart_failure", author=clinician)
    for case in cases[:3]:
        _relabel(project, case, reviewer, sam, "no_heart_failure")
    client.force_login(reviewer)
    url = reverse("labeling:agreement", args=[project.pk])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        return len(captured)

    three = queries()
    for case in cases[3:8]:
        _relabel(project, case, reviewer, sam, "no_heart_failure")
    assert queries() == three  # the labels in dispute of eight adjudications as of three
    # Pages of three: newest first, then older ones, then the end.
    real = labeling_selectors.task_closed_list
    monkeypatch.setattr(
        labeling_selectors, "task_closed_list", lambda **kw: real(**{**kw, "limit": 3})
    )
    first = client.get(url).context
    assert len(first["closed_tasks"]) == 3 and first["closed_older"]
    ids = [c.task.pk for c in first["closed_tasks"]]
    assert ids == sorted(ids, reverse=True)
    second = client.get(url, {"closed_before": first["closed_older"]}).context
    assert max(c.task.pk for c in second["closed_tasks"]) < ids[-1]
    bad = client.get(url, {"closed_before": "soon"})
    assert bad.status_code == 400
    assert "closed_before &#x27;soon&#x27; is not a task number." in bad.content.decode()


def _reviewer(project, username):
    from apps.accounts.models import User

    user = User.objects.create_user(username=username, password="a-long-test-password")
    membership_set(project=project, username=username, role=Role.REVIEWER)
    return user


def test_the_labels_in_dispute_of_a_relabel_are_listed(
    client, project, cases, clinician, reviewer, sam, data_scientist, import_frame
):
    case = cases[0]
    label_record(case=case, value="heart_failure", author=clinician)
    _relabel(project, case, reviewer, sam, "no_heart_failure")
    client.force_login(reviewer)
    page = client.get(reverse("labeling:agreement", args=[project.pk]))
    (dispute,) = page.context["disagreements"]
    assert dispute.opinions == {"clara": "heart_failure", "sam": "no_heart_failure"}
    html = page.content.decode()
    assert "clara: <strong>heart_failure</strong> · sam: <strong>no_heart_failure</strong>" in html
    # A questioned label that came from a file is the file's.
    frame = make_cases_frame(3, labeled=1.0, seed=9, start="2025-01-01")
    frame["external_id"] = [f"f{i}" for i in range(3)]
    import_frame(project, data_scientist, frame)
    imported = Case.objects.get(project=project, external_id="f0")
    questioned = imported.current_label
    other = "no_heart_failure" if questioned == "heart_failure" else "heart_failure"
    _relabel(project, imported, reviewer, sam, other)
    disputes = {
        d.task.case_id: d.opinions
        for d in client.get(reverse("labeling:agreement", args=[project.pk])).context[
            "disagreements"
        ]
    }
    assert disputes[imported.pk] == {"imported": questioned, "sam": other}


def test_the_board_selects_every_case_of_its_page(client, wdbc_board):
    project, users = wdbc_board
    client.force_login(users["reviewer"])
    html = client.get(reverse("review:board", args=[project.pk])).content.decode()
    assert '<input type="checkbox" data-select-page="case"' in html
    from django.contrib.staticfiles import finders

    with open(finders.find("js/casebook.js"), encoding="utf-8") as handle:
        script = handle.read()
    assert "input[data-select-page]" in script


@pytest.fixture
def wdbc_board(settings, tmp_path):
    from tests.test_review import _wdbc_load

    project, _, users, version = _wdbc_load(settings, tmp_path)
    services.label_issues_find(version_id=version.pk)
    return project, users


# --- The discussion of an overlap case -------------------------------------------------------


def test_an_overlap_case_says_its_discussion_exists_and_opens_after_labeling(
    client, project, cases, clinician, reviewer, sam, data_scientist
):
    queue_settings_change(project=project, changed_by=data_scientist, overlap_share=1.0)
    case = cases[0]
    Case.objects.filter(pk=case.pk).update(queue_wanted=2, queue_open=2)
    case.refresh_from_db()
    services.comment_add(case=case, author=reviewer, body="Look at the creatinine")
    services.comment_add(case=case, author=reviewer, body="and the age")
    label_record(case=case, value="heart_failure", author=sam)
    client.force_login(clinician)
    url = reverse("review:comments", args=[project.pk, case.pk])
    thread = client.get(url).content.decode()
    assert "Look at the creatinine" not in thread
    assert "This case has a discussion of 2 comments." in thread
    assert "the discussion stays hidden until you have given your own label" in thread
    assert "2 comments, hidden" in thread
    # Once Clara has labeled the case, she reads and joins it.
    label_record(case=case, value="no_heart_failure", author=clinician)
    thread = client.get(url).content.decode()
    assert "Look at the creatinine" in thread and "and the age" in thread
    assert 'name="body"' in thread and "stays hidden" not in thread


# --- Unseen mentions in the top bar ----------------------------------------------------------


def test_the_top_bar_counts_unseen_mentions_in_one_query(
    client, project, cases, clinician, reviewer
):
    from apps.review.models import Mention

    services.comment_add(case=cases[0], author=reviewer, body="@clara have a look")
    services.comment_add(case=cases[1], author=reviewer, body="@clara and this one")
    client.force_login(clinician)
    home = reverse("workbench:home")
    with CaptureQueriesContext(connection) as captured:
        html = client.get(home).content.decode()
    counted = [q for q in captured.captured_queries if "review_mention" in q["sql"]]
    assert len(counted) == 1
    assert 'Mentions <span class="pill open" title="2 unseen">2' in html
    Mention.objects.filter(user=clinician).update(seen_at="2026-01-01T00:00:00Z")
    html = client.get(home).content.decode()
    assert ">Mentions</a>" in html
    # Nobody logged in: no count, no query.
    client.logout()
    with CaptureQueriesContext(connection) as captured:
        client.get(reverse("login"))
    assert not [q for q in captured.captured_queries if "review_mention" in q["sql"]]
