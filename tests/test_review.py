"""The review board: confident learning finds the demo's deliberately wrong labels, the board
filters and pages them, and a reviewer sends them back to clinicians."""

from __future__ import annotations

import pytest
from celery import current_app
from django.urls import reverse
from rest_framework.test import APIClient

from apps.labeling.models import LabelTask, TaskKind
from apps.modeling import services as modeling_services
from apps.modeling.models import RunStatus, RunTrigger
from apps.review import services
from apps.review.filters import BoardFilters
from apps.review.models import LabelIssue
from apps.review.selectors import label_issue_page

pytestmark = pytest.mark.django_db


@pytest.fixture
def wdbc(settings, tmp_path):
    """The breast-cancer demo project (40 of 398 labels flipped on purpose), trained once."""
    return _wdbc_load(settings, tmp_path)


def _wdbc_load(settings, tmp_path, edit=None):
    """The breast-cancer project, its cases first passed through `edit` (a function of the
    cases' DataFrame): a case's features never change once stored, so a test that needs other
    values imports them."""
    from apps.workbench import demo_data
    from apps.workbench.demo import demo_project_load, demo_users_ensure

    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    users = demo_users_ensure(password="a-long-test-password")
    dataset = demo_data.breast_cancer()
    if edit is not None:
        edit(dataset.cases)
    project = demo_project_load(dataset=dataset, users=users).project
    run, _ = modeling_services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
    run = modeling_services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return project, dataset, users, run.model_version


def test_confident_learning_finds_most_of_the_flipped_labels(wdbc):
    project, dataset, _, version = wdbc
    computation = services.label_issues_find(version_id=version.pk)
    assert computation.cases == 398 and computation.folds == 5
    flagged = set(
        LabelIssue.objects.filter(project=project, is_label_issue=True).values_list(
            "case__external_id", flat=True
        )
    )
    flipped = set(dataset.flipped_external_ids)
    found = flagged & flipped
    # Most of the 40 deliberate errors, and mostly deliberate errors among what is flagged.
    assert len(found) / len(flipped) >= 0.7, (len(found), len(flagged))
    assert len(found) / len(flagged) >= 0.7, (len(found), len(flagged))
    # The ranking puts them first: of the 40 lowest label-quality scores, most are flipped.
    lowest = LabelIssue.objects.filter(project=project).order_by("label_quality")[:40]
    assert sum(i.case.external_id in flipped for i in lowest) >= 28
    # The suggestion for a flipped case is its true class.
    for issue in LabelIssue.objects.filter(project=project, case__external_id__in=found):
        assert issue.suggested_label == dataset.true_labels[issue.case.external_id]
    # Idempotent: the same version again changes nothing.
    assert services.label_issues_find(version_id=version.pk) is None


def test_the_board_filters_pages_and_sends_cases_back(client, wdbc):
    project, dataset, users, version = wdbc
    services.label_issues_find(version_id=version.pk)
    reviewer = users["reviewer"]
    client.force_login(reviewer)
    url = reverse("review:board", args=[project.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert b"Likely label errors" in page.content
    # Keyset pages of 10 cover every flagged case once, in rank order.
    seen, after = [], None
    while True:
        filters = BoardFilters.from_query({"kind": "issues", **({"after": after} if after else {})})
        rows, following = label_issue_page(project=project, filters=filters, limit=10)
        seen += [(r.label_quality, r.pk) for r in rows]
        if following is None:
            break
        after = f"{following[0]!r},{following[1]}"
    assert seen == sorted(seen)
    assert len(seen) == LabelIssue.objects.filter(project=project, is_label_issue=True).count()
    # Filters: one given class only.
    given = dataset.classes[0]
    rows, _ = label_issue_page(
        project=project, filters=BoardFilters.from_query({"kind": "all", "given": given}), limit=500
    )
    assert rows and {r.given_label for r in rows} == {given}
    bad = client.get(url + "?max_quality=high&month=May")
    assert b"max quality &#x27;high&#x27; is not a number" in bad.content
    assert b"is not YYYY-MM" in bad.content
    # Send the five most likely errors back to the pool, with a reason.
    top = LabelIssue.objects.filter(project=project, is_label_issue=True).order_by("label_quality")[
        :5
    ]
    ids = [i.case_id for i in top]
    response = client.post(
        reverse("review:relabel", args=[project.pk]),
        {"case": ids, "reason": "the model disagrees strongly", "assignee": ""},
        follow=True,
    )
    assert b"Opened 5 relabel tasks" in response.content
    tasks = LabelTask.objects.filter(project=project, kind=TaskKind.RELABEL)
    assert sorted(tasks.values_list("case_id", flat=True)) == sorted(ids)
    assert all("the model disagrees strongly" in t.reason for t in tasks)
    again = client.post(
        reverse("review:relabel", args=[project.pk]),
        {"case": ids, "reason": "again", "assignee": ""},
        follow=True,
    )
    assert b"5 already had an open relabel or adjudication" in again.content
    assert tasks.count() == 5
    # Clinicians do not see the board.
    client.force_login(users["clinician"])
    assert client.get(url).status_code == 403


def test_label_issues_api(wdbc, outsider):
    project, _, users, version = wdbc
    services.label_issues_find(version_id=version.pk)
    api = APIClient()
    api.force_authenticate(users["reviewer"])
    body = api.get(f"/api/projects/{project.pk}/label-issues/?kind=issues&limit=5").json()
    assert len(body["results"]) == 5 and body["next_after"]
    first = body["results"][0]
    assert {"case_id", "external_id", "given_label", "suggested_label", "label_quality"} <= set(
        first
    )
    scores = [r["label_quality"] for r in body["results"]]
    assert scores == sorted(scores)
    more = api.get(
        f"/api/projects/{project.pk}/label-issues/?kind=issues&limit=5&after={body['next_after']}"
    ).json()
    assert more["results"][0]["label_quality"] >= scores[-1]
    assert api.get(f"/api/projects/{project.pk}/label-issues/?max_quality=x").status_code == 400
    api.force_authenticate(users["clinician"])
    assert api.get(f"/api/projects/{project.pk}/label-issues/").status_code == 403
    api.force_authenticate(outsider)
    assert api.get(f"/api/projects/{project.pk}/label-issues/").status_code == 404


def test_relabel_that_disagrees_goes_to_adjudication_and_history_keeps_every_row(
    client, project, clinician, reviewer, data_scientist, import_frame
):
    from apps.accounts.models import User
    from apps.cases.models import Case
    from apps.labeling.models import Label, TaskStatus
    from apps.labeling.services import label_record, queue_next
    from apps.projects.models import Role
    from apps.projects.services import membership_set
    from tests.conftest import make_cases_frame

    import_frame(project, data_scientist, make_cases_frame(30, labeled=0.0, seed=1))
    second = User.objects.create_user(username="sam", password="a-long-test-password")
    membership_set(project=project, username="sam", role=Role.CLINICIAN)
    case = Case.objects.filter(project=project).first()
    label_record(case=case, value="heart_failure", author=clinician)

    opened, pending = services.relabel_tasks_open(
        project=project,
        case_ids=[case.pk],
        created_by=reviewer,
        reason="NT-proBNP does not fit",
        assignee=second,
    )
    assert (opened, pending) == (1, 0)
    lease = queue_next(project=project, user=second, role=Role.CLINICIAN)
    assert lease.case_id == case.pk and lease.task.kind == TaskKind.RELABEL
    # Blind by default: the questioned label is not on the page, nor in the API's case.
    client.force_login(second)
    page = client.get(reverse("labeling:label", args=[project.pk])).content.decode()
    assert "Relabel blind" in page and "This case's labels" not in page
    api = APIClient()
    api.force_authenticate(second)
    assert api.get(f"/api/projects/{project.pk}/queue/next").json()["current_label"] == ""

    label_record(case=case, value="no_heart_failure", author=second, task=lease.task)
    adjudication = LabelTask.objects.get(case=case, kind=TaskKind.ADJUDICATE)
    assert adjudication.status == TaskStatus.OPEN and adjudication.assignee is None
    assert "sam relabeled it no_heart_failure; it was heart_failure" in adjudication.reason
    # The reviewer's decision becomes the current label; every row stays.
    held = queue_next(project=project, user=reviewer, role=Role.REVIEWER)
    assert held.task_id == adjudication.pk
    label_record(case=case, value="heart_failure", author=reviewer, task=adjudication)
    case.refresh_from_db()
    assert case.current_label == "heart_failure"
    history = list(Label.objects.filter(case=case).order_by("id").values_list("kind", "value"))
    assert history == [
        ("labeled", "heart_failure"),
        ("relabeled", "no_heart_failure"),
        ("adjudicated", "heart_failure"),
    ]
    adjudication.refresh_from_db()
    assert adjudication.status == TaskStatus.DONE


def test_a_relabel_that_agrees_needs_no_adjudication_and_blindness_is_a_setting(
    client, project, clinician, reviewer, data_scientist, import_frame
):
    from apps.cases.models import Case
    from apps.labeling.services import label_record, queue_next
    from apps.projects.models import Role
    from tests.conftest import make_cases_frame

    import_frame(project, data_scientist, make_cases_frame(10, labeled=0.0, seed=2))
    project.relabel_blind = False
    project.save(update_fields=["relabel_blind"])
    case = Case.objects.filter(project=project).first()
    label_record(case=case, value="heart_failure", author=reviewer)
    services.relabel_tasks_open(
        project=project, case_ids=[case.pk], created_by=reviewer, reason="check", assignee=clinician
    )
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    client.force_login(clinician)
    page = client.get(reverse("labeling:label", args=[project.pk])).content.decode()
    i = page.find("Relabel blind")
    assert i < 0, page[i - 300 : i + 100]
    assert "This case's labels" in page
    label_record(case=case, value="heart_failure", author=clinician, task=lease.task)
    assert not LabelTask.objects.filter(case=case, kind=TaskKind.ADJUDICATE).exists()


def test_comments_mention_members_only_and_reach_their_mentions(
    client, project, clinician, reviewer, data_scientist, outsider, import_frame
):
    from apps.cases.models import Case
    from apps.review.models import Comment, Mention
    from tests.conftest import make_cases_frame

    import_frame(project, data_scientist, make_cases_frame(5, labeled=1.0, seed=4))
    case = Case.objects.filter(project=project).first()
    client.force_login(reviewer)
    url = reverse("review:comments", args=[project.pk, case.pk])
    # A mention that would reach nobody is refused, and the draft is kept.
    refused = client.post(url, {"body": "@olga what do you think?"})
    assert refused.status_code == 400
    assert "Not members of this project: @olga" in refused.content.decode()
    assert "@olga what do you think?" in refused.content.decode()
    assert not Comment.objects.exists()
    posted = client.post(url, {"body": f"@{clinician.username} NT-proBNP looks off, @dana too?"})
    assert posted.status_code == 200 and "NT-proBNP looks off" in posted.content.decode()
    assert set(Mention.objects.values_list("user__username", flat=True)) == {"clara", "dana"}
    # Clara's mentions list it; marking it seen keeps it listed, as seen.
    client.force_login(clinician)
    page = client.get(reverse("review:mentions"))
    assert "NT-proBNP looks off" in page.content.decode()
    mention = Mention.objects.get(user=clinician)
    client.post(reverse("review:mentions"), {"mention": [mention.pk]})
    mention.refresh_from_db()
    assert mention.seen_at is not None
    # The API: the thread, a new comment, the mentions.
    api = APIClient()
    api.force_authenticate(clinician)
    thread = api.get(f"/api/cases/{case.pk}/comments").json()
    assert [c["author"] for c in thread] == ["rafael"]
    reply = api.post(f"/api/cases/{case.pk}/comments", {"body": "@rafael agreed"}, format="json")
    assert reply.status_code == 201
    api.force_authenticate(reviewer)
    assert api.get("/api/mentions/?unseen=1").json()[0]["body"] == "@rafael agreed"
    empty = api.post(f"/api/cases/{case.pk}/comments", {"body": "  "}, format="json")
    assert empty.status_code == 400
    # Someone outside the project sees neither the thread nor the mentions.
    api.force_authenticate(outsider)
    assert api.get(f"/api/cases/{case.pk}/comments").status_code == 404
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    assert "NT-proBNP" not in client.get(reverse("review:mentions")).content.decode()


def test_saved_views_and_annotator_agreement(client, wdbc):
    from apps.labeling.services import label_record
    from apps.review.models import SavedView
    from apps.review.selectors import annotator_agreement

    project, dataset, users, version = wdbc
    services.label_issues_find(version_id=version.pk)
    client.force_login(users["reviewer"])
    save = reverse("review:save_view", args=[project.pk])
    response = client.post(
        save,
        {"name": "confident misses", "query": "kind=misclassified&min_confidence=0.9"},
        follow=True,
    )
    assert "Saved the view “confident misses”" in response.content.decode()
    view = SavedView.objects.get(project=project)
    assert view.query == "kind=misclassified&min_confidence=0.9"
    board = client.get(reverse("review:board", args=[project.pk])).content.decode()
    assert "confident misses" in board
    again = client.post(save, {"name": "confident misses", "query": "kind=all"}, follow=True)
    assert "exists already" in again.content.decode()
    bad = client.post(save, {"name": "x", "query": "min_confidence=lots"}, follow=True)
    assert "is not a number" in bad.content.decode()
    # Agreement with adjudication: two clinicians labeled a case, the reviewer settled it.
    from apps.cases.models import Case

    case = Case.objects.filter(project=project, current_label="").first()
    label_record(case=case, value=dataset.classes[0], author=users["clinician"])
    label_record(case=case, value=dataset.classes[1], author=users["clinician2"])
    label_record(case=case, value=dataset.classes[1], author=users["reviewer"], kind="adjudicated")
    agreement = annotator_agreement(project=project)
    assert agreement["clinician"] == {"adjudicated": 1, "agreed": 0, "share": 0.0}
    assert agreement["clinician2"] == {"adjudicated": 1, "agreed": 1, "share": 1.0}


def test_the_discussion_is_hidden_from_a_blind_relabel(
    client, project, clinician, reviewer, data_scientist, import_frame
):
    from apps.cases.models import Case
    from apps.labeling.services import label_record, queue_next
    from apps.projects.models import Role
    from tests.conftest import make_cases_frame

    import_frame(project, data_scientist, make_cases_frame(5, labeled=0.0, seed=6))
    case = Case.objects.filter(project=project).first()
    label_record(case=case, value="heart_failure", author=reviewer)
    services.comment_add(case=case, author=reviewer, body="I labeled it heart failure")
    services.relabel_tasks_open(
        project=project, case_ids=[case.pk], created_by=reviewer, reason="check", assignee=clinician
    )
    queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    client.force_login(clinician)
    thread = client.get(reverse("review:comments", args=[project.pk, case.pk])).content.decode()
    assert "I labeled it heart failure" not in thread
    assert "relabeling this case blind, so the discussion stays hidden" in thread
    assert "1 comment, hidden" in thread
    client.force_login(reviewer)
    board_thread = client.get(reverse("review:comments", args=[project.pk, case.pk]))
    assert "I labeled it heart failure" in board_thread.content.decode()


def test_error_rates_by_feature_band_count_every_case_once(client, wdbc):
    from apps.review.selectors import error_rates_by_feature_band

    project, _, users, version = wdbc
    services.label_issues_find(version_id=version.pk)
    computation = services.LabelIssueComputation.objects.get(model_version=version)
    bands = error_rates_by_feature_band(
        project=project, feature="mean_radius", computation=computation
    )
    assert len(bands) == 5
    assert sum(b["cases"] for b in bands) == 398
    assert (
        sum(b["misclassified"] for b in bands)
        == LabelIssue.objects.filter(project=project, misclassified=True).count()
    )
    assert (
        error_rates_by_feature_band(project=project, feature="shoe_size", computation=computation)
        is None
    )
    client.force_login(users["reviewer"])
    page = client.get(reverse("review:board", args=[project.pk]) + "?band_feature=mean_radius")
    assert "mean_radius (fifths of the labeled cases)" in page.content.decode()


def test_lost_label_issues_are_sent_again_once_due(wdbc, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    _, _, _, version = wdbc
    sent: list = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: sent.append((name, args)))
    assert services.label_issues_mend() == []  # just trained: not due yet
    later = timezone.now() + timedelta(minutes=20)
    assert services.label_issues_mend(now=later) == [version.pk]
    assert sent == [("review.find_label_issues", [version.pk])]
    services.label_issues_find(version_id=version.pk)
    assert services.label_issues_mend(now=later) == []  # found: nothing to send
    assert services.label_issues_mend(now=timezone.now() + timedelta(days=2)) == []


def test_mentions_end_before_punctuation_and_blind_threads_stay_hidden_in_the_api(
    project, clinician, reviewer, data_scientist, import_frame
):
    from apps.cases.models import Case
    from apps.labeling.services import label_record, queue_next
    from apps.projects.models import Role
    from apps.review.models import Mention
    from tests.conftest import make_cases_frame

    import_frame(project, data_scientist, make_cases_frame(5, labeled=0.0, seed=8))
    case = Case.objects.filter(project=project).first()
    services.comment_add(case=case, author=reviewer, body="Thanks @clara. Also @dana, see this.")
    assert set(Mention.objects.values_list("user__username", flat=True)) == {"clara", "dana"}
    label_record(case=case, value="heart_failure", author=reviewer)
    services.relabel_tasks_open(
        project=project, case_ids=[case.pk], created_by=reviewer, reason="check", assignee=clinician
    )
    queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    api = APIClient()
    api.force_authenticate(clinician)
    assert api.get(f"/api/cases/{case.pk}/comments").json() == []


def test_a_constant_feature_still_counts_every_case(settings, tmp_path):
    import numpy as np

    from apps.cases.models import Case
    from apps.review.selectors import error_rates_by_feature_band

    def constant_radius(cases):
        cases["mean_radius"] = 1.0

    project, _, _, version = _wdbc_load(settings, tmp_path, constant_radius)
    computation = services.label_issues_find(version_id=version.pk)
    first = Case.objects.filter(project=project).first()
    width = len(np.frombuffer(bytes(first.features), dtype="<f8"))
    bands = error_rates_by_feature_band(
        project=project, feature="mean_radius", computation=computation
    )
    assert width == 30 and len(bands) == 1 and bands[0]["cases"] == 398


def _feature_column(project, name):
    """Each case's value of one feature, by case id, from the cases themselves."""
    from apps.cases.selectors import case_feature_matrix

    matrix = case_feature_matrix(project_id=project.pk)
    column = matrix.values[:, matrix.feature_names.index(name)]
    return dict(zip(matrix.case_ids.tolist(), column.tolist(), strict=True))


def _all_rows(project, query, features):
    """Every row the board shows for a query, following the keyset pages."""
    rows, after = [], None
    while True:
        filters = BoardFilters.from_query(
            {**query, **({"after": after} if after else {})}, features=features
        )
        assert not filters.errors, filters.errors
        page, following = label_issue_page(project=project, filters=filters, limit=37)
        rows += page
        if following is None:
            return rows
        after = f"{following[0]!r},{following[1]}"


@pytest.mark.parametrize("window", [5, 2000])
def test_feature_ranges_return_what_they_say_and_missing_never_matches(
    settings, tmp_path, window, monkeypatch
):
    import math

    import numpy as np

    from apps.cases.models import Case
    from apps.review import selectors
    from apps.review.selectors import (
        board_features,
        label_issue_computation_latest,
        label_issue_total,
    )

    # A page is looked for in windows of the ranking: tiny ones make every page span several.
    monkeypatch.setattr(selectors, "RANGE_WINDOW", window)
    # On PostgreSQL the verdicts are written in COPYs of this many rows.
    monkeypatch.setattr(services, "COPY_ROWS", 50)
    # Three labeled cases come without their mean radius.
    blanked_external_ids = []

    def blank_radius(cases):
        rows = cases.index[cases["label"] != ""][:3]
        cases.loc[rows, "mean_radius"] = np.nan
        blanked_external_ids.extend(cases.loc[rows, "external_id"])

    project, _, _, version = _wdbc_load(settings, tmp_path, blank_radius)
    blanked = list(Case.objects.filter(project=project, external_id__in=blanked_external_ids))
    assert len(blanked) == 3
    services.label_issues_find(version_id=version.pk)
    features = board_features(project=project)
    radius = _feature_column(project, "mean_radius")
    texture = _feature_column(project, "mean_texture")
    labeled = set(LabelIssue.objects.filter(project=project).values_list("case_id", flat=True))

    def expected(test):
        return {c for c in labeled if test(radius[c], texture[c])}

    # A closed range, bounds included: 14 ≤ mean_radius ≤ 18.
    edge = sorted(v for c, v in radius.items() if c in labeled and 14 <= v <= 18)[0]
    query = {"kind": "all", "min.mean_radius": repr(edge), "max.mean_radius": "18"}
    rows = _all_rows(project, query, features)
    assert {r.case_id for r in rows} == expected(lambda r, t: edge <= r <= 18)
    assert any(r.range_values == [edge] for r in rows)  # the lower bound itself matches
    assert all(r.range_values == [radius[r.case_id]] for r in rows)
    assert LabelIssue.objects.filter(project=project).count() == 398
    filters = BoardFilters.from_query(query, features=features)
    computation = label_issue_computation_latest(project=project)
    assert label_issue_total(project=project, filters=filters, computation=computation) == (
        len(rows),
        True,
    )
    # Two features at once, one bound each, with another filter.
    query = {"kind": "all", "min.mean_radius": "15", "max.mean_texture": "20", "given": "malignant"}
    rows = _all_rows(project, query, features)
    want = {
        c
        for c in expected(lambda r, t: r >= 15 and t <= 20)
        if LabelIssue.objects.get(project=project, case_id=c).given_label == "malignant"
    }
    assert want and {r.case_id for r in rows} == want
    assert all(len(r.range_values) == 2 for r in rows)
    # Missing never matches, even with an open bound on either side.
    blanked_ids = {c.pk for c in blanked}
    assert all(math.isnan(radius[c]) for c in blanked_ids)
    for query in ({"min.mean_radius": "-1e300"}, {"max.mean_radius": "1e300"}):
        rows = _all_rows(project, {"kind": "all", **query}, features)
        assert {r.case_id for r in rows} == labeled - blanked_ids
    # A range nothing satisfies, and one below every value.
    assert _all_rows(project, {"kind": "all", "min.mean_radius": "1000"}, features) == []
    assert _all_rows(project, {"kind": "all", "max.mean_radius": "-5"}, features) == []


def test_feature_ranges_refuse_bad_input_with_a_clear_error(client, wdbc):
    from apps.review.selectors import board_features

    project, _, users, version = wdbc
    services.label_issues_find(version_id=version.pk)
    features = board_features(project=project)

    def errors(query):
        return BoardFilters.from_query(query, features=features).errors

    assert errors({"min.shoe_size": "3"}) == ["No feature 'shoe_size' in this project."]
    assert errors({"min.mean_radius": "sixty"}) == [
        "mean_radius: the minimum 'sixty' is not a number."
    ]
    assert errors({"max.mean_radius": "inf"}) == [
        "mean_radius: the maximum must be a finite number."
    ]
    assert errors({"min.mean_radius": "18", "max.mean_radius": "14"}) == [
        "mean_radius: the minimum 18 is above the maximum 14."
    ]
    assert errors({"add_feature": "mean_radius"}) == [
        "Give mean_radius a minimum, a maximum or both."
    ]
    assert errors({"add_min": "3"}) == ["Choose the feature of the new range."]
    too_many = {f"min.{name}": "0" for name in list(features)[:11]}
    assert errors(too_many) == ["At most 10 feature ranges at once, not 11."]
    # Both bounds cleared in the form: the range is simply gone.
    assert errors({"min.mean_radius": "", "max.mean_radius": ""}) == []
    client.force_login(users["reviewer"])
    url = reverse("review:board", args=[project.pk])
    page = client.get(url + "?min.shoe_size=3&max.mean_radius=big")
    assert page.status_code == 400
    assert "No feature &#x27;shoe_size&#x27; in this project." in page.content.decode()
    assert "mean_radius: the maximum &#x27;big&#x27; is not a number." in page.content.decode()
    # A refused new range is shown again as typed, once.
    page = client.get(url, {"add_min": "3", "add_max": "9"}).content.decode()
    assert "Choose the feature of the new range." in page
    assert 'name="add_min" value="3"' in page and 'name="add_max" value="9"' in page
    page = client.get(url, {"add_feature": "mean_radius", "add_max": "20", "min.shoe_size": "3"})
    html = page.content.decode()
    assert html.count('name="max.mean_radius" value="20" inputmode') == 1
    assert 'name="add_max" value=""' in html and 'name="min.shoe_size" value="3"' in html
    api = APIClient()
    api.force_authenticate(users["reviewer"])
    answer = api.get(f"/api/projects/{project.pk}/label-issues/?min.mean_radius=x")
    assert answer.status_code == 400
    assert answer.json()["detail"] == "mean_radius: the minimum 'x' is not a number."


def test_feature_ranges_in_the_form_the_api_and_a_saved_view(client, wdbc):
    from apps.review.models import SavedView

    project, _, users, version = wdbc
    services.label_issues_find(version_id=version.pk)
    radius = _feature_column(project, "mean_radius")
    client.force_login(users["reviewer"])
    url = reverse("review:board", args=[project.pk])
    # The form's new-range row: a feature and its bounds.
    page = client.get(
        url, {"kind": "all", "add_feature": "mean_radius", "add_min": "15", "add_max": "20"}
    )
    html = page.content.decode()
    assert page.status_code == 200
    assert (
        'name="min.mean_radius" value="15"' in html and 'name="max.mean_radius" value="20"' in html
    )
    shown = page.context["rows"]
    assert shown and all(15 <= radius[r.case_id] <= 20 for r in shown)
    # The next page keeps the range.
    assert "min.mean_radius=15" in page.context["next_query"]
    # The API takes the same parameters.
    api = APIClient()
    api.force_authenticate(users["reviewer"])
    body = api.get(
        f"/api/projects/{project.pk}/label-issues/",
        {"kind": "all", "min.mean_radius": "15", "max.mean_radius": "20", "limit": 500},
    ).json()
    assert body["count"] == len(body["results"]) > len(shown) - 1
    assert all(15 <= radius[r["case_id"]] <= 20 for r in body["results"])
    # Saved, the view keeps the ranges and opens the same slice.
    save = reverse("review:save_view", args=[project.pk])
    client.post(
        save,
        {
            "name": "large tumours",
            "query": "kind=all&min.mean_radius=15&max.mean_radius=20&max.mean_texture=25",
        },
    )
    view = SavedView.objects.get(project=project, name="large tumours")
    assert view.query == "kind=all&min.mean_radius=15&max.mean_radius=20&max.mean_texture=25"
    reopened = client.get(f"{url}?{view.query}")
    texture = _feature_column(project, "mean_texture")
    assert [r.case_id for r in reopened.context["rows"]] == [
        r["case_id"] for r in body["results"] if texture[r["case_id"]] <= 25
    ][:50]
    # A saved view whose filters do not fit is refused with the reason.
    names = ",".join("x" * 100 for _ in range(25))
    too_long = client.post(
        save, {"name": "long", "query": f"kind=all&annotator={names}"}, follow=True
    )
    assert "too long to save" in too_long.content.decode()
    assert not SavedView.objects.filter(name="long").exists()


def test_board_counts_come_from_the_verdicts_or_a_capped_count(client, wdbc, monkeypatch):
    from apps.review import selectors
    from apps.review.models import LabelIssueComputation

    project, dataset, users, version = wdbc
    computation = services.label_issues_find(version_id=version.pk)
    computation = LabelIssueComputation.objects.get(pk=computation.pk)
    issues = LabelIssue.objects.filter(project=project)
    # Kind and classes: the counts stored with the verdicts, equal to counting the rows.
    for kind in ("issues", "misclassified", "all"):
        for given in ("", *dataset.classes):
            for suggested in ("", *dataset.classes):
                query = {"kind": kind, "given": given, "suggested": suggested}
                filters = BoardFilters.from_query(query)
                rows = selectors._filtered(computation, filters)
                assert (
                    selectors.label_issue_count_stored(filters=filters, computation=computation)
                    == rows.count()
                ), query
    # The tables per month and per clinician: the same from the stored counts as counted live
    # (a computation stored without them).
    unstored = LabelIssueComputation(
        pk=computation.pk, model_version_id=computation.model_version_id, summary={}
    )
    assert selectors.error_rates_by_month(
        project=project, computation=computation
    ) == selectors.error_rates_by_month(project=project, computation=unstored)
    assert selectors.error_rates_by_annotator(
        project=project, computation=computation
    ) == selectors.error_rates_by_annotator(project=project, computation=unstored)
    by_annotator = selectors.error_rates_by_annotator(project=project, computation=unstored)
    assert sum(a["labels"] for a in by_annotator) == 398
    # Any other filter is counted in the database, up to the cap.
    monkeypatch.setattr(selectors, "COUNT_CAP", 10)
    filters = BoardFilters.from_query({"kind": "all", "max_quality": "0.9"})
    assert selectors.label_issue_count_stored(filters=filters, computation=computation) is None
    assert issues.filter(label_quality__lte=0.9).count() > 10
    assert selectors.label_issue_total(
        project=project, filters=filters, computation=computation
    ) == (10, False)
    fifth = issues.filter(is_label_issue=True).order_by("label_quality")[4].label_quality
    filters = BoardFilters.from_query({"kind": "issues", "max_quality": repr(fifth)})
    exact = issues.filter(is_label_issue=True, label_quality__lte=fifth).count()
    assert 5 <= exact <= 10
    assert selectors.label_issue_total(
        project=project, filters=filters, computation=computation
    ) == (exact, True)
    # The page shows a stored count at once and counts anything else after it is shown.
    client.force_login(users["reviewer"])
    url = reverse("review:board", args=[project.pk])
    page = client.get(url).content.decode()
    flagged = issues.filter(is_label_issue=True).count()
    assert f"{flagged} cases" in page and "Counting" not in page
    page = client.get(url, {"kind": "all", "max_quality": "0.9"}).content.decode()
    assert "Counting the cases…" in page
    assert "fragment=count" in page and "max_quality=0.9" in page
    fragment = client.get(
        url, {"kind": "all", "max_quality": "0.9", "fragment": "count"}, HTTP_HX_REQUEST="true"
    )
    assert fragment.status_code == 200
    assert "More than 10 cases" in fragment.content.decode()
    assert "<table" not in fragment.content.decode()
    api = APIClient()
    api.force_authenticate(users["reviewer"])
    body = api.get(f"/api/projects/{project.pk}/label-issues/", {"max_quality": repr(fifth)}).json()
    assert (body["count"], body["count_exact"]) == (exact, True)
    body = api.get(f"/api/projects/{project.pk}/label-issues/", {"kind": "all"}).json()
    assert (body["count"], body["count_exact"]) == (398, True)


def test_label_authorship_is_read_as_the_orm_reads_it(wdbc, clinician):
    """Who gave each label row and when, as the board stores it: on PostgreSQL read as bytea
    the server concatenates; it must say what the ORM says, row for row."""
    import numpy as np

    from apps.cases.models import Case
    from apps.labeling.models import Label
    from apps.labeling.selectors import label_rows_authorship
    from apps.labeling.services import label_record

    project, _, _, _ = wdbc
    for case in Case.objects.filter(project=project, current_label="")[:5]:
        label_record(case=case, value="malignant", author=clinician, seen_label_id=0)
    watermark = Label.objects.filter(project=project).order_by("-pk")[1].pk  # not the newest
    ids, authors, times, batches = label_rows_authorship(project_id=project.pk, watermark=watermark)
    rows = list(
        Label.objects.filter(project=project, pk__lte=watermark)
        .order_by("pk")
        .values_list("pk", "author_id", "created_at", "import_batch_id")
    )
    assert len(rows) > 398 and ids.tolist() == [r[0] for r in rows]
    assert authors.tolist() == [r[1] for r in rows]
    assert batches.tolist() == [r[3] or 0 for r in rows]
    assert 0 in batches.tolist() and len(set(batches.tolist())) == 2  # the import, and people
    assert clinician.pk in authors.tolist()
    expected = np.array([r[2].replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
    np.testing.assert_array_equal(times, expected)
    empty = label_rows_authorship(project_id=project.pk, watermark=0)
    assert [len(a) for a in empty] == [0, 0, 0, 0]
