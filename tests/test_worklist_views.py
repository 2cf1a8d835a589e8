"""Worklist pages: the list and a new worklist, reranking and judging through htmx posts, the
agreement page, the preferences download and a project started from the judgments."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.modeling import services as modeling_services
from apps.modeling.models import Deployment, RunStatus, RunTrigger
from apps.projects.models import Project
from apps.worklists import services
from apps.worklists.models import CaseJudgment, Judgment, RerankSession, Worklist, WorklistSource
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def scored_project(project, data_scientist, import_frame, settings, tmp_path):
    """300 cases, 80% labeled, version 1 trained and deployed (scores applied)."""
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    import_frame(project, data_scientist, make_cases_frame(300, labeled=0.8, seed=5))
    project.refresh_from_db()
    run, _ = modeling_services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
    run = modeling_services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    for deployment in Deployment.objects.filter(project=project, scores_applied_at__isnull=True):
        modeling_services.deployment_apply(deployment_id=deployment.pk)
    return project


@pytest.fixture
def worklist(scored_project, data_scientist) -> Worklist:
    return services.worklist_create(
        project=scored_project,
        name="Rising BNP",
        risk_class="heart_failure",
        size=8,
        source=WorklistSource.UNLABELED,
        created_by=data_scientist,
    )


def _urls(worklist: Worklist) -> dict[str, str]:
    p, w = worklist.project_id, worklist.pk
    return {
        "list": reverse("worklists:list", args=[p]),
        "rerank": reverse("worklists:rerank", args=[p, w]),
        "agreement": reverse("worklists:agreement", args=[p]),
        "order": reverse("worklists:order", args=[p, w]),
        "judge": reverse("worklists:judge", args=[p, w]),
        "done": reverse("worklists:done", args=[p, w]),
        "pairs": reverse("worklists:pairs", args=[p]),
        "derive": reverse("worklists:derive", args=[p]),
    }


def _session(worklist: Worklist, user) -> RerankSession:
    return RerankSession.objects.get(worklist=worklist, reviewer=user)


# --- access ------------------------------------------------------------------------------


def test_pages_render_for_a_reviewer(client, worklist, reviewer):
    client.force_login(reviewer)
    urls = _urls(worklist)
    page = client.get(urls["list"])
    assert page.status_code == 200
    assert "Rising BNP" in page.text and "v1" in page.text
    assert "Make the worklist" in page.text
    page = client.get(urls["rerank"])
    assert page.status_code == 200
    assert page.text.count('class="wl-row"') == 8
    assert 'id="order-revision" value="0"' in page.text
    assert "Sortable-1.15.7.min.js" in page.text
    assert client.get(urls["agreement"]).status_code == 200
    project_page = client.get(reverse("workbench:project", args=[worklist.project_id]))
    assert urls["list"] in project_page.text


def test_a_clinician_is_refused_every_worklist_page(client, worklist, clinician):
    client.force_login(clinician)
    urls = _urls(worklist)
    for name in ("list", "rerank", "agreement", "pairs"):
        assert client.get(urls[name]).status_code == 403, name
    for name in ("order", "judge", "done", "derive"):
        assert client.post(urls[name], {}).status_code == 403, name
    assert not RerankSession.objects.filter(reviewer=clinician).exists()
    project_page = client.get(reverse("workbench:project", args=[worklist.project_id]))
    assert urls["list"] not in project_page.text


def test_a_member_of_another_project_gets_404_and_no_names(client, worklist, outsider):
    client.force_login(outsider)
    urls = _urls(worklist)
    for name in ("list", "rerank", "agreement", "pairs"):
        response = client.get(urls[name])
        assert response.status_code == 404, name
        assert "Rising BNP" not in response.text and "Heart failure" not in response.text
    for name in ("order", "judge", "done", "derive"):
        assert client.post(urls[name], {"order": "1", "revision": "0"}).status_code == 404
    # A worklist id of another project is not found through this project either.
    other = Project.objects.get(name="Someone else's project")
    assert client.get(reverse("worklists:rerank", args=[other.pk, worklist.pk])).status_code == 404


def test_the_data_scientist_parts_need_that_role(client, worklist, reviewer):
    client.force_login(reviewer)
    urls = _urls(worklist)
    page = client.get(urls["agreement"])
    assert urls["pairs"] not in page.text and urls["derive"] not in page.text
    assert client.get(urls["pairs"]).status_code == 403
    assert client.post(urls["derive"]).status_code == 403


# --- making a worklist -------------------------------------------------------------------


def test_a_worklist_is_made_through_the_form(client, scored_project, reviewer):
    client.force_login(reviewer)
    url = reverse("worklists:list", args=[scored_project.pk])
    form = client.get(url).text
    # The positive (last) class is chosen by default, and 25 cases.
    assert '<option value="heart_failure" selected>' in form
    assert 'name="size" value="25"' in form
    response = client.post(
        url,
        {
            "name": "Recent ones",
            "risk_class": "heart_failure",
            "size": "12",
            "source": WorklistSource.RECENT_UNLABELED,
            "months": "3",
        },
    )
    worklist = Worklist.objects.get(project=scored_project)
    assert response.status_code == 302
    rerank_url = reverse("worklists:rerank", args=[scored_project.pk, worklist.pk])
    assert response["Location"] == rerank_url
    assert (worklist.name, worklist.size, worklist.months) == ("Recent ones", 12, 3)
    assert worklist.created_by == reviewer
    listed = client.get(url).text
    assert "Recent ones" in listed and "Unlabeled, last 3 months" in listed


def test_bad_input_is_shown_next_to_its_field_and_the_values_kept(client, scored_project, reviewer):
    client.force_login(reviewer)
    url = reverse("worklists:list", args=[scored_project.pk])
    response = client.post(
        url,
        {
            "name": "Too big",
            "risk_class": "heart_failure",
            "size": "1000",
            "source": WorklistSource.RECENT_UNLABELED,
            "months": "",
        },
    )
    assert response.status_code == 400
    text = response.text
    assert "The worklist was not made" in text
    assert "5 to 200 cases; 1000 asked" in text
    assert "Give the number of recent months, 1 to 120." in text
    assert 'value="Too big"' in text and 'value="1000"' in text
    assert not Worklist.objects.exists()


def test_without_a_production_model_the_page_says_so_instead_of_the_form(client, project, reviewer):
    client.force_login(reviewer)
    url = reverse("worklists:list", args=[project.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "No model is in production in this project yet" in page.text
    assert "Make the worklist" not in page.text
    response = client.post(
        url,
        {"name": "x", "risk_class": "heart_failure", "size": "10", "source": "unlabeled"},
    )
    assert response.status_code == 400
    assert "No model is in production in this project yet" in response.text
    assert not Worklist.objects.exists()


# --- reranking ---------------------------------------------------------------------------


def test_a_move_saves_the_whole_order_at_once(client, worklist, reviewer):
    client.force_login(reviewer)
    urls = _urls(worklist)
    client.get(urls["rerank"])
    order = list(_session(worklist, reviewer).order)
    moved = [order[5], *order[:5], *order[6:]]
    response = client.post(
        urls["order"], {"order": ",".join(map(str, moved)), "revision": "0"}, **HTMX
    )
    assert response.status_code == 200
    assert "Saved" in response.text
    assert 'id="order-revision" value="1" hx-swap-oob="true"' in response.text
    session = _session(worklist, reviewer)
    assert session.order == moved and session.revision == 1 and session.moves == 1
    # One case moved by position works as well, and the page shows the order it saved.
    response = client.post(
        urls["order"], {"case_id": order[7], "to_position": "1", "revision": "1"}, **HTMX
    )
    assert response.status_code == 200
    session = _session(worklist, reviewer)
    assert session.order == [order[7], *moved[:7]] and session.revision == 2
    page = client.get(urls["rerank"]).text
    assert page.index(f'data-case-id="{order[7]}"') < page.index(f'data-case-id="{order[5]}"')
    assert "▲7" in page  # the model's eighth case, now first


def test_a_stale_revision_is_refused_clearly_and_the_saved_order_kept(client, worklist, reviewer):
    client.force_login(reviewer)
    urls = _urls(worklist)
    client.get(urls["rerank"])
    order = list(_session(worklist, reviewer).order)
    saved = order[::-1]
    client.post(urls["order"], {"order": ",".join(map(str, saved)), "revision": "0"}, **HTMX)
    # Another window, still on revision 0, moves a case.
    response = client.post(
        urls["order"], {"order": ",".join(map(str, order[1:] + order[:1])), "revision": "0"}, **HTMX
    )
    assert response.status_code == 409
    assert response["HX-Retarget"] == "#rerank-board"
    assert "reordered in another window" in response.text
    assert 'id="order-revision" value="1"' in response.text
    # The list sent back is the saved order.
    rows = [response.text.index(f'data-case-id="{c}"') for c in saved]
    assert rows == sorted(rows)
    session = _session(worklist, reviewer)
    assert session.order == saved and session.revision == 1
    # An order that is not the worklist's cases is refused with the reason, nothing saved.
    response = client.post(urls["order"], {"order": "1,2,3", "revision": "1"}, **HTMX)
    assert response.status_code == 400 and "Not saved" in response.text
    assert _session(worklist, reviewer).order == saved


def test_a_judgment_post_appends_and_keeps_the_history(client, worklist, reviewer):
    client.force_login(reviewer)
    urls = _urls(worklist)
    client.get(urls["rerank"])
    case_id = _session(worklist, reviewer).order[0]
    response = client.post(
        urls["judge"], {"case_id": case_id, "value": Judgment.ACTIONABLE, "reason": ""}, **HTMX
    )
    assert response.status_code == 200
    assert 'data-value="actionable" aria-pressed="true"' in response.text
    assert "<strong>1</strong> of 8 judged" in response.text
    # A reason typed afterwards is saved with the judgment in force.
    response = client.post(
        urls["judge"],
        {"case_id": case_id, "current": Judgment.ACTIONABLE, "reason": "BNP doubled"},
        **HTMX,
    )
    assert response.status_code == 200
    client.post(urls["judge"], {"case_id": case_id, "value": Judgment.NEEDS_INFORMATION}, **HTMX)
    history = list(
        CaseJudgment.objects.filter(case_id=case_id).order_by("id").values_list("value", "reason")
    )
    assert history == [
        ("actionable", ""),
        ("actionable", "BNP doubled"),
        ("needs_information", ""),
    ]
    # A reason for a case not judged yet waits for its judgment: nothing to save, no swap.
    other = _session(worklist, reviewer).order[1]
    response = client.post(urls["judge"], {"case_id": other, "reason": "later"}, **HTMX)
    assert response.status_code == 204
    response = client.post(urls["judge"], {"case_id": other, "value": "maybe"}, **HTMX)
    assert response.status_code == 400 and "Unknown judgment" in response.text
    assert CaseJudgment.objects.count() == 3
    page = client.get(urls["rerank"]).text
    assert 'data-value="needs_information" aria-pressed="true"' in page


def test_a_rows_features_load_when_it_is_opened(client, worklist, reviewer, outsider):
    from apps.cases.models import Case

    case_id = worklist.items.first().case_id
    url = reverse("worklists:case_features", args=[worklist.project_id, worklist.pk, case_id])
    client.force_login(reviewer)
    response = client.get(url, **HTMX)
    assert response.status_code == 200
    assert "nt_pro_bnp" in response.text and "pg/mL" in response.text
    # The page itself carries only the few features shown on each row.
    page = client.get(reverse("worklists:rerank", args=[worklist.project_id, worklist.pk])).text
    assert page.count("<dt") == 0
    other = Case.objects.exclude(pk__in=worklist.items.values("case_id")).first()
    other_url = reverse(
        "worklists:case_features", args=[worklist.project_id, worklist.pk, other.pk]
    )
    assert client.get(other_url).status_code == 404
    client.force_login(outsider)
    assert client.get(url).status_code == 404


def test_done_marks_the_session_finished(client, worklist, reviewer):
    client.force_login(reviewer)
    urls = _urls(worklist)
    client.get(urls["rerank"])
    response = client.post(urls["done"])
    assert response.status_code == 302 and response["Location"] == urls["list"]
    assert _session(worklist, reviewer).finished_at is not None
    listed = client.get(urls["list"]).text
    assert "is marked done" in listed and '1 <span class="muted small">· 1 done' in listed


def test_the_rerank_page_reads_a_fixed_number_of_queries(
    client, scored_project, reviewer, data_scientist
):
    client.force_login(reviewer)
    counts = []
    for size in (5, 40):
        worklist = services.worklist_create(
            project=scored_project,
            name=f"{size} cases",
            risk_class="heart_failure",
            size=size,
            source=WorklistSource.ALL,
            created_by=data_scientist,
        )
        url = reverse("worklists:rerank", args=[scored_project.pk, worklist.pk])
        client.get(url)
        session = _session(worklist, reviewer)
        for case_id in session.order[:3]:
            services.judgment_record(session=session, case_id=case_id, value=Judgment.ACTIONABLE)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


# --- agreement, preferences, a derived project -------------------------------------------


def test_agreement_shows_versions_sessions_and_pairs_of_reviewers(
    client, worklist, reviewer, data_scientist
):
    order = None
    for user in (reviewer, data_scientist):
        session = services.rerank_session_start(worklist=worklist, reviewer=user)
        order = list(session.order)
        services.rerank_move(session=session, case_id=order[-1], to_position=1, revision=0)
        services.judgment_record(session=session, case_id=order[0], value=Judgment.ACTIONABLE)
    client.force_login(reviewer)
    page = client.get(reverse("worklists:agreement", args=[worklist.project_id]), {"k": "5"})
    assert page.status_code == 200
    text = page.text
    assert "NDCG@5" in text and "<svg" in text
    assert 'id="by-version"' in text and 'id="by-session"' in text and 'id="between"' in text
    assert "rafael · dana" in text
    assert "1.00" in text  # two identical orders: tau 1 between the reviewers
    # An unknown k falls back to 10.
    assert "NDCG@10" in client.get(page.request["PATH_INFO"], {"k": "abc"}).text


def test_preference_pairs_download_as_csv(client, worklist, reviewer, data_scientist):
    session = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    services.rerank_move(session=session, case_id=session.order[3], to_position=1, revision=0)
    client.force_login(data_scientist)
    response = client.get(reverse("worklists:pairs", args=[worklist.project_id]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("worklist_id,model_version,risk_class,reviewer")
    assert len(lines) == 1 + 8 * 7 // 2
    assert lines[1].split(",")[3] == "rafael"


def test_a_data_scientist_starts_a_project_from_the_judgments(
    client, worklist, reviewer, data_scientist
):
    client.force_login(data_scientist)
    url = reverse("worklists:derive", args=[worklist.project_id])
    response = client.post(url, {"name": ""}, follow=True)
    assert "No project was started" in response.text
    assert "judge some cases first" in response.text
    session = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    services.judgment_record(session=session, case_id=session.order[0], value=Judgment.ACTIONABLE)
    response = client.post(url, {"name": "Who needs action"})
    derived = Project.objects.get(derived_from_id=worklist.project_id)
    assert derived.name == "Who needs action"
    assert response.status_code == 302
    assert response["Location"] == reverse("workbench:project", args=[derived.pk])
    page = client.get(response["Location"]).text
    assert "Who needs action" in page and "started" in page
    agreement = client.get(reverse("worklists:agreement", args=[worklist.project_id])).text
    assert reverse("workbench:project", args=[derived.pk]) in agreement
