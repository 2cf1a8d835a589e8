"""Lists a clinician or reviewer picks from: "My recent labels" beside the case, and the
assignee list of the review board."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.cases.models import Case
from apps.labeling import selectors
from apps.labeling.models import LabelKind
from apps.labeling.services import label_record, label_undo_last
from apps.review.services import label_issues_find
from tests.conftest import make_cases_frame
from tests.test_review import wdbc  # noqa: F401  (the trained breast-cancer demo project)

pytestmark = pytest.mark.django_db


@pytest.fixture
def cases(project, data_scientist, import_frame):
    import_frame(project, data_scientist, make_cases_frame(4, labeled=0.0))
    return list(Case.objects.filter(project=project).order_by("pk"))


def _label_correct_and_undo(case, clinician):
    """Three rows of one case by one clinician: a label, its correction, the undo of that."""
    label_record(case=case, value="heart_failure", author=clinician)
    label_record(case=case, value="no_heart_failure", author=clinician)
    return label_undo_last(project=case.project, author=clinician)


def test_recent_labels_show_each_case_once_with_my_newest_label(
    project, cases, clinician, reviewer, django_assert_num_queries
):
    first, second, third, _ = cases
    label_record(case=first, value="heart_failure", author=clinician)
    undo = _label_correct_and_undo(second, clinician)
    label_record(case=third, value="heart_failure", author=reviewer)  # someone else's

    with django_assert_num_queries(1):
        recent = list(selectors.label_recent_for_user(project=project, user=clinician))

    assert [(label.case_id, label.kind) for label in recent] == [
        (second.pk, LabelKind.UNDONE),
        (first.pk, LabelKind.LABELED),
    ]
    assert recent[0].pk == undo.pk


def test_recent_labels_keep_the_limit_in_cases_not_rows(project, cases, clinician):
    for case in cases:
        label_record(case=case, value="heart_failure", author=clinician)
    _label_correct_and_undo(cases[0], clinician)

    recent = selectors.label_recent_for_user(project=project, user=clinician, limit=3)

    assert [label.case_id for label in recent] == [cases[0].pk, cases[3].pk, cases[2].pk]


def test_the_label_page_lists_a_corrected_case_once(client, project, cases, clinician):
    _label_correct_and_undo(cases[0], clinician)
    client.force_login(clinician)

    page = client.get(reverse("labeling:label", args=[project.pk])).content.decode()

    recent = page.split("My recent labels", 1)[1].split("</ul>", 1)[0]
    assert recent.count(f'?case={cases[0].pk}"') == 1, recent


def test_the_board_names_each_assignee_and_role_once(client, wdbc):  # noqa: F811
    project, _, users, version = wdbc
    label_issues_find(version_id=version.pk)
    client.force_login(users["reviewer"])

    page = client.get(reverse("review:board", args=[project.pk])).content.decode()

    select = re.search(r'<select name="assignee">(.*?)</select>', page, re.S)
    assert select is not None, "the board has no assignee list"
    options = dict(re.findall(r'<option value="([^"]+)">([^<]+)</option>', select.group(1)))
    assert options["reviewer"] == "reviewer · Reviewer (SME)"
    assert options["clinician"] == "clinician · Clinician"
