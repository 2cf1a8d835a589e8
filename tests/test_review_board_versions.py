"""The review board's verdicts: whose version they are (production's by default, another on
request), and whose labels they judge (a person's, or a file's)."""

from __future__ import annotations

import pytest
from celery import current_app
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core import tasks as task_queue
from apps.modeling import services as modeling_services
from apps.modeling.models import RunStatus, RunTrigger
from apps.review import selectors, services
from apps.review.filters import IMPORTED, BoardFilters
from apps.review.models import LabelIssue, LabelIssueComputation, SavedView
from tests.test_review import _wdbc_load

pytestmark = pytest.mark.django_db


@pytest.fixture
def wdbc(settings, tmp_path):
    return _wdbc_load(settings, tmp_path)


def _train(project, seed: int):
    run, _ = modeling_services.training_run_request(
        project=project, trigger=RunTrigger.MANUAL, seed=seed
    )
    run = modeling_services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run.model_version


# --- Imported labels are the file's ----------------------------------------------------------


def test_imported_labels_are_the_files_not_the_importers(client, wdbc):
    from apps.cases.models import Case, ImportBatch
    from apps.labeling.services import label_record

    project, dataset, users, version = wdbc
    scientist, clinician = users["scientist"], users["clinician"]
    # One case labeled by a person, besides the 398 the demo file brought.
    case = Case.objects.filter(project=project, current_label="").first()
    label_record(case=case, value=dataset.classes[0], author=clinician)
    version = _train(project, seed=3)
    services.label_issues_find(version_id=version.pk)
    batch = ImportBatch.objects.get(project=project)
    assert batch.imported_by == scientist
    shown = LabelIssue.objects.filter(model_version=version)
    assert shown.count() == 399
    # No verdict credits the importer; each imported label names its import.
    assert not shown.filter(labeled_by=scientist).exists()
    assert shown.filter(import_batch=batch, labeled_by__isnull=True).count() == 398
    assert shown.get(case=case).labeled_by == clinician
    assert shown.get(case=case).import_batch is None

    # Annotator quality: the clinician's one label, and an "imported" row of its own.
    computation = LabelIssueComputation.objects.get(model_version=version)
    rows = selectors.error_rates_by_annotator(project=project, computation=computation)
    by_name = {r["username"]: r for r in rows}
    assert "scientist" not in by_name
    assert by_name["clinician"]["labels"] == 1
    assert by_name[IMPORTED]["labels"] == 398 and by_name[IMPORTED]["files"] == [batch]
    assert (
        by_name[IMPORTED]["issues"] == shown.filter(import_batch=batch, is_label_issue=True).count()
    )
    # The same when counted from the rows (a computation stored without the counts).
    unstored = LabelIssueComputation(pk=computation.pk, model_version_id=version.pk, summary={})
    assert selectors.error_rates_by_annotator(project=project, computation=unstored) == rows

    # The "Labeled by" filter: imported, or one person.
    imported, _ = selectors.label_issue_page(
        project=project,
        filters=BoardFilters.from_query({"kind": "all", "annotator": IMPORTED}),
        limit=500,
    )
    assert len(imported) == 398 and all(r.import_batch_id == batch.pk for r in imported)
    by_scientist, _ = selectors.label_issue_page(
        project=project, filters=BoardFilters.from_query({"kind": "all", "annotator": "scientist"})
    )
    assert by_scientist == []

    # The board says so.
    client.force_login(users["reviewer"])
    url = reverse("review:board", args=[project.pk])
    html = client.get(url).content.decode()
    when = timezone.localtime(batch.created_at)
    assert (
        f'title="A label from the file {batch.filename}, imported {when:%-d %b %Y, %H:%M}"' in html
    )
    assert ">scientist <span" not in html and "labeled by scientist" not in html
    assert '<option value="(imported)"' in html
    assert "the files' labels, no one's own" in html
    page = client.get(url, {"kind": "all", "annotator": IMPORTED})
    assert page.status_code == 200 and len(page.context["rows"]) == 50
    # And the API.
    api = APIClient()
    api.force_authenticate(users["reviewer"])
    body = api.get(f"/api/projects/{project.pk}/label-issues/", {"kind": "all", "limit": 500})
    who = {(r["labeled_by"], r["imported_from"]) for r in body.json()["results"]}
    assert who == {(None, batch.filename), ("clinician", None)}


def test_an_adjudication_counts_no_imported_label_as_the_importers_opinion(wdbc):
    from apps.cases.models import Case
    from apps.labeling.services import label_record
    from apps.review.selectors import annotator_agreement

    project, dataset, users, _ = wdbc
    case = Case.objects.filter(project=project).exclude(current_label="").first()
    other = next(c for c in dataset.classes if c != case.current_label)
    label_record(case=case, value=other, author=users["reviewer"], kind="adjudicated")
    assert "scientist" not in annotator_agreement(project=project)


# --- Whose version -----------------------------------------------------------------------------


def test_the_board_shows_the_production_versions_verdicts_and_another_on_request(client, wdbc):
    from apps.modeling.models import Deployment

    project, _, users, first = wdbc
    assert Deployment.objects.get(project=project).model_version == first
    services.label_issues_find(version_id=first.pk)
    second = _train(project, seed=11)
    services.label_issues_find(version_id=second.pk)
    # Both versions' verdicts are kept, each its own.
    assert LabelIssue.objects.filter(model_version=first).count() == 398
    assert LabelIssue.objects.filter(model_version=second).count() == 398
    production = Deployment.objects.get(project=project)

    client.force_login(users["reviewer"])
    url = reverse("review:board", args=[project.pk])
    page = client.get(url, {"kind": "all"})
    html = page.content.decode()
    assert page.context["computation"].model_version == first
    assert {r.model_version_id for r in page.context["rows"]} == {first.pk}
    assert (
        f"Verdicts of version 1</strong>, in production since "
        f"{timezone.localtime(production.created_at):%-d %b %Y, %H:%M}" in html
    )
    assert '<option value="2" >version 2 · newest</option>' in html
    assert '<option value="1" >version 1 · production</option>' in html

    # Another version, by the query string: the page, the next page and the count say so.
    page = client.get(url, {"kind": "all", "version": "2"})
    html = page.content.decode()
    assert page.context["computation"].model_version == second
    assert {r.model_version_id for r in page.context["rows"]} == {second.pk}
    assert "Verdicts of version 2</strong>, not the production version" in html
    assert "version=2" in page.context["next_query"]
    assert '<option value="2" selected>' in html
    # A saved view keeps the version.
    client.post(
        reverse("review:save_view", args=[project.pk]),
        {"name": "new model", "query": "kind=all&version=2"},
    )
    assert SavedView.objects.get(name="new model").query == "kind=all&version=2"
    # The API: production's by default, another on request.
    api = APIClient()
    api.force_authenticate(users["reviewer"])
    base = f"/api/projects/{project.pk}/label-issues/"
    rows = {r["model_version"] for r in api.get(base, {"kind": "all"}).json()["results"]}
    assert rows == {1}
    body = api.get(base, {"kind": "all", "version": 2}).json()
    assert {r["model_version"] for r in body["results"]} == {2} and body["count"] == 398
    # A version that is not a number is refused with the reason; one without verdicts is said.
    bad = client.get(url, {"version": "two"})
    assert bad.status_code == 400 and "Version &#x27;two&#x27; is not a version number." in (
        bad.content.decode()
    )
    assert api.get(base, {"version": "two"}).status_code == 400
    missing = client.get(url, {"version": "9"})
    assert missing.context["computation"].model_version == first
    assert "Version 9 has no verdicts (versions with verdicts: 1, 2)." in missing.content.decode()


def test_production_without_verdicts_falls_back_to_the_newest_and_says_so(client, wdbc):
    from apps.modeling.services import model_version_deploy

    project, _, users, first = wdbc
    services.label_issues_find(version_id=first.pk)
    second = _train(project, seed=12)
    model_version_deploy(version=second, deployed_by=users["scientist"])
    client.force_login(users["reviewer"])
    page = client.get(reverse("review:board", args=[project.pk]))
    html = page.content.decode()
    assert page.context["computation"].model_version == first
    assert (
        "Version 2 is in production, but its verdicts are not found yet" in html
        and "showing version 1&#x27;s, the newest found." in html
    )
    assert (
        "Verdicts of version 1</strong>, not the production version (production runs version 2)"
        in html
    )
    # The mender asks for the production version's verdicts once due.
    from datetime import timedelta

    sent: list = []
    original = current_app.send_task
    current_app.send_task = lambda name, args: sent.append((name, args))
    try:
        services.label_issues_mend(now=timezone.now() + timedelta(minutes=20))
    finally:
        current_app.send_task = original
    assert ("review.find_label_issues", [second.pk]) in sent
    services.label_issues_find(version_id=second.pk)
    page = client.get(reverse("review:board", args=[project.pk]))
    assert page.context["computation"].model_version == second
    assert "Verdicts of version 2</strong>, in production since" in page.content.decode()


def test_old_versions_verdicts_are_removed_but_productions_kept(wdbc):
    project, _, _, first = wdbc
    services.label_issues_find(version_id=first.pk)
    versions = [first]
    for seed in (21, 22, 23):
        versions.append(_train(project, seed=seed))
        services.label_issues_find(version_id=versions[-1].pk)
    # Production (version 1) and the two newest keep their verdicts; version 2's are gone.
    kept = set(LabelIssueComputation.objects.values_list("model_version__number", flat=True))
    assert kept == {1, 3, 4}
    assert set(LabelIssue.objects.values_list("model_version__number", flat=True)) == {1, 3, 4}
    # An old version that is neither in production nor among the newest is not judged again.
    assert services.label_issues_find(version_id=versions[1].pk) is None


def test_the_board_reads_no_more_for_more_rows_or_more_versions(client, wdbc):
    project, _, users, first = wdbc
    services.label_issues_find(version_id=first.pk)
    client.force_login(users["reviewer"])
    url = reverse("review:board", args=[project.pk])

    def queries(**query) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url, query).status_code == 200
        return len(captured)

    few = queries(kind="issues", max_quality="0.05")
    many = queries(kind="all")
    shown = LabelIssue.objects.filter(is_label_issue=True, label_quality__lte=0.05).count()
    assert 0 < shown < 50
    second = _train(project, seed=31)
    services.label_issues_find(version_id=second.pk)
    other = queries(kind="all", version="2")
    assert few == many == other, (few, many, other)


def test_the_migration_credits_stored_imported_labels_to_their_file(wdbc):
    """Verdicts stored before: labels credited to the importer, and the older computations of
    a project (whose rows the newer one replaced) still listed."""
    import importlib

    from django.apps import apps

    project, _, users, first = wdbc
    services.label_issues_find(version_id=first.pk)
    second = _train(project, seed=41)
    services.label_issues_find(version_id=second.pk)
    # As stored before: version 1's rows gone, imported labels the scientist's.
    LabelIssue.objects.filter(model_version=first).delete()
    LabelIssue.objects.update(labeled_by=users["scientist"], import_batch=None)
    LabelIssueComputation.objects.filter(model_version=second).update(
        summary={"slices": [], "annotators": [[users["scientist"].pk, 398, 30]]}
    )
    migration = importlib.import_module(
        "apps.review.migrations.0004_board_versions_and_imported_labels"
    )
    migration.forward(apps, None)
    assert list(LabelIssueComputation.objects.values_list("model_version", flat=True)) == [
        second.pk
    ]
    assert not LabelIssue.objects.filter(labeled_by=users["scientist"]).exists()
    assert LabelIssue.objects.filter(import_batch__isnull=False).count() == 398
    computation = LabelIssueComputation.objects.get()
    assert "annotators" not in computation.summary
    rows = selectors.error_rates_by_annotator(project=project, computation=computation)
    assert [r["username"] for r in rows] == [IMPORTED]


def test_rolling_back_to_a_version_whose_verdicts_were_dropped_judges_it_again(
    wdbc, monkeypatch, django_capture_on_commit_callbacks
):
    """Only production's and the newest versions' verdicts are kept: a rollback to an older
    version asks for its verdicts again, so the board shows production's, not a stand-in."""
    project, _, users, first = wdbc
    versions = [first]
    for seed in (31, 32, 33):
        versions.append(_train(project, seed=seed))
    modeling_services.model_version_deploy(version=versions[3], deployed_by=users["scientist"])
    for version in versions:
        services.label_issues_find(version_id=version.pk)
    assert not LabelIssueComputation.objects.filter(model_version=versions[1]).exists()
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(task_queue, "task_send", lambda task, pk: sent.append((task, pk)))
    with django_capture_on_commit_callbacks(execute=True):
        modeling_services.model_version_rollback(
            project=project, deployed_by=users["scientist"], to_version=versions[1]
        )
    assert (modeling_services.LABEL_ISSUES_TASK, versions[1].pk) in sent
    services.label_issues_find(version_id=versions[1].pk)  # what the worker runs
    board = selectors.label_issue_board(project=project, number=None)
    assert board.computation.model_version == versions[1] and board.is_production
