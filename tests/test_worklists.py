"""Worklists: made from the production model, reranked and judged by reviewers (saved,
resumed, side by side), measured against the model, and fed back as labels of a derived
project."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from scipy.stats import kendalltau
from sklearn.metrics import ndcg_score

from apps.cases.models import Case
from apps.labeling.models import Label
from apps.modeling import services as modeling_services
from apps.modeling.models import Deployment, RunStatus, RunTrigger
from apps.worklists import metrics, selectors, services
from apps.worklists.models import CaseJudgment, Judgment, WorklistSource
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored_project(project, data_scientist, import_frame, settings, tmp_path):
    """300 cases, 80% labeled, version 1 trained and deployed (scores applied)."""
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    import_frame(project, data_scientist, make_cases_frame(300, labeled=0.8, seed=5))
    project.refresh_from_db()
    _train(project)
    return project


def _train(project):
    run, _ = modeling_services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
    run = modeling_services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    for deployment in Deployment.objects.filter(project=project, scores_applied_at__isnull=True):
        modeling_services.deployment_apply(deployment_id=deployment.pk)
    return run.model_version


def _worklist(project, user, size=10, **kwargs):
    arguments = {
        "name": "Heart failure risk",
        "risk_class": "heart_failure",
        "source": WorklistSource.UNLABELED,
        **kwargs,
    }
    return services.worklist_create(project=project, size=size, created_by=user, **arguments)


# --- metrics, checked by hand and against scikit-learn and SciPy -------------------------


def test_ndcg_matches_hand_computation_and_scikit_learn():
    order = [10, 20, 30]  # the reviewer's: relevance 3, 2, 1
    scores = {10: 0.2, 20: 0.9, 30: 0.5}  # the model's order: 20, 30, 10
    # DCG = 2/log2(2) + 1/log2(3) + 3/log2(4); ideal = 3 + 2/log2(3) + 1/2.
    dcg = 2 + 1 / np.log2(3) + 3 / 2
    ideal = 3 + 2 / np.log2(3) + 1 / 2
    assert metrics.ndcg_at_k(order, scores, k=3) == pytest.approx(dcg / ideal)
    assert metrics.ndcg_at_k(order, scores, k=3) == pytest.approx(
        ndcg_score([[3, 2, 1]], [[0.2, 0.9, 0.5]], k=3)
    )
    assert metrics.ndcg_at_k(order, {10: 3, 20: 2, 30: 1}, k=2) == pytest.approx(1.0)
    assert metrics.ndcg_at_k([10], {10: 1.0}, k=5) is None


def test_kendall_tau_matches_hand_computation_and_scipy():
    order = [1, 2, 3, 4]
    same = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.1}
    reversed_ = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    one_swap = {1: 0.8, 2: 0.9, 3: 0.7, 4: 0.1}  # 5 concordant, 1 discordant of 6 pairs
    assert metrics.kendall_tau_scores(order, same) == pytest.approx(1.0)
    assert metrics.kendall_tau_scores(order, reversed_) == pytest.approx(-1.0)
    assert metrics.kendall_tau_scores(order, one_swap) == pytest.approx((5 - 1) / 6)
    assert metrics.kendall_tau_orders([1, 2, 3, 4], [2, 1, 3, 4]) == pytest.approx(
        kendalltau([0, 1, 2, 3], [1, 0, 2, 3]).statistic
    )


def test_precision_at_k_counts_actionable_among_the_models_top_k():
    scores = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.6}
    judged = {1: True, 2: False, 3: True, 4: True}
    assert metrics.precision_at_k(scores, judged, k=2) == (0.5, 2)
    assert metrics.precision_at_k(scores, judged, k=10) == (0.75, 4)
    assert metrics.precision_at_k(scores, {}, k=3) == (None, 0)


# --- making, reranking, judging ----------------------------------------------------------


def test_a_worklist_holds_the_production_models_top_cases_in_its_order(scored_project, reviewer):
    worklist = _worklist(scored_project, reviewer, size=12)
    items = list(worklist.items.order_by("model_rank"))
    assert [i.model_rank for i in items] == list(range(1, 13))
    risks = [i.risk for i in items]
    assert risks == sorted(risks, reverse=True)
    # They are the 12 highest risks of all unlabeled cases, by the stored predictions.
    version = worklist.model_version
    case_ids, proba = modeling_services.version_predictions_load(version)
    unlabeled = set(
        Case.objects.filter(project=scored_project, current_label="").values_list("id", flat=True)
    )
    column = list(scored_project.classes).index("heart_failure")
    expected = sorted(
        (c for c in case_ids.tolist() if c in unlabeled),
        key=lambda c: (-proba[case_ids.tolist().index(c), column], c),
    )[:12]
    assert [i.case_id for i in items] == expected


def test_worklist_refuses_bad_input_naming_the_problem(scored_project, reviewer):
    with pytest.raises(ValidationError, match="Unknown class 'flu'"):
        _worklist(scored_project, reviewer, risk_class="flu")
    with pytest.raises(ValidationError, match="5 to 200 cases; 1000 asked"):
        _worklist(scored_project, reviewer, size=1000)
    with pytest.raises(ValidationError, match="number of recent months"):
        _worklist(scored_project, reviewer, source=WorklistSource.RECENT_UNLABELED, months=None)


def test_no_worklist_without_a_production_model(project, reviewer):
    with pytest.raises(ValidationError, match="No model is in production"):
        _worklist(project, reviewer)


def test_a_session_is_saved_as_it_goes_and_resumed(scored_project, reviewer):
    worklist = _worklist(scored_project, reviewer, size=6)
    session = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    model_order = list(session.order)
    assert model_order == [i.case_id for i in worklist.items.order_by("model_rank")]
    services.rerank_move(session=session, case_id=model_order[4], to_position=1, revision=0)
    resumed = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    assert resumed.pk == session.pk
    assert resumed.order == [model_order[4], *model_order[:4], model_order[5]]
    assert resumed.revision == 1 and resumed.moves == 1
    rows = selectors.worklist_rows(session=resumed)
    assert [r.case_id for r in rows] == resumed.order
    assert rows[0].model_rank == 5 and rows[0].position == 1


def test_a_stale_or_incomplete_order_is_refused_and_the_saved_one_kept(scored_project, reviewer):
    worklist = _worklist(scored_project, reviewer, size=5)
    session = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    order = list(session.order)
    services.rerank_order_save(session=session, order=order[::-1], revision=0)
    with pytest.raises(services.StaleOrder, match="another window"):
        services.rerank_order_save(session=session, order=order, revision=0)
    with pytest.raises(ValidationError, match="missing"):
        services.rerank_order_save(session=session, order=order[:4], revision=1)
    with pytest.raises(ValidationError, match="appears twice"):
        services.rerank_order_save(session=session, order=[*order[:4], order[0]], revision=1)
    session.refresh_from_db()
    assert session.order == order[::-1] and session.revision == 1


def test_reviewers_rerank_the_same_worklist_independently(scored_project, reviewer, data_scientist):
    worklist = _worklist(scored_project, reviewer, size=5)
    mine = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    theirs = services.rerank_session_start(worklist=worklist, reviewer=data_scientist)
    order = list(mine.order)
    services.rerank_order_save(session=mine, order=order[::-1], revision=0)
    services.rerank_move(session=theirs, case_id=order[1], to_position=1, revision=0)
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.order == order[::-1]
    assert theirs.order == [order[1], order[0], *order[2:]]
    pairs = selectors.agreement(project=scored_project, k=5).between_reviewers
    assert len(pairs) == 1
    assert pairs[0]["tau"] == pytest.approx(
        kendalltau(range(5), [theirs.order.index(c) for c in mine.order]).statistic
    )


def test_judgments_keep_their_history_and_the_newest_is_in_force(scored_project, reviewer):
    worklist = _worklist(scored_project, reviewer, size=5)
    session = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    case_id = session.order[0]
    services.judgment_record(session=session, case_id=case_id, value=Judgment.ACTIONABLE)
    services.judgment_record(session=session, case_id=case_id, value=Judgment.ACTIONABLE)
    services.judgment_record(
        session=session, case_id=case_id, value=Judgment.NEEDS_INFORMATION, reason="no echo yet"
    )
    history = list(CaseJudgment.objects.filter(session=session).values_list("value", "reason"))
    assert history == [("actionable", ""), ("needs_information", "no echo yet")]
    current = selectors.judgments_current(session=session)
    assert current[case_id].value == Judgment.NEEDS_INFORMATION
    with pytest.raises(ValidationError, match="Unknown judgment 'maybe'"):
        services.judgment_record(session=session, case_id=case_id, value="maybe")
    other = Case.objects.exclude(pk__in=session.order).first()
    with pytest.raises(ValidationError, match="not on this worklist"):
        services.judgment_record(session=session, case_id=other.pk, value=Judgment.ACTIONABLE)


def test_agreement_per_version_scores_every_version_on_the_reviewers_orders(
    scored_project, reviewer, data_scientist
):
    worklist = _worklist(scored_project, reviewer, size=8)
    session = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    model_order = list(session.order)
    reversed_order = model_order[::-1]
    services.rerank_order_save(session=session, order=reversed_order, revision=0)
    for case_id in model_order[:3]:
        services.judgment_record(session=session, case_id=case_id, value=Judgment.NOT_ACTIONABLE)
    for case_id in model_order[3:]:
        services.judgment_record(session=session, case_id=case_id, value=Judgment.ACTIONABLE)
    _train(scored_project)  # version 2: scored on the same list from its own predictions

    figures = selectors.agreement(project=scored_project, k=3)
    assert [v.number for v in figures.by_version] == [1, 2]
    v1 = figures.by_version[0]
    risk = {i.case_id: i.risk for i in worklist.items.all()}
    assert v1.tau == pytest.approx(-1.0)  # the reviewer reversed version 1's order exactly
    assert v1.ndcg == pytest.approx(
        ndcg_score([list(range(8, 0, -1))], [[risk[c] for c in reversed_order]], k=3)
    )
    assert v1.precision == pytest.approx(0.0)  # version 1's top 3 were all judged not actionable
    assert v1.created_worklists == 1 and figures.by_version[1].created_worklists == 0
    assert figures.by_version[1].tau is not None
    assert figures.by_session[0].judged == 8 and figures.by_session[0].actionable == 5


def test_preference_pairs_follow_each_reviewers_order(scored_project, reviewer):
    worklist = _worklist(scored_project, reviewer, size=5)
    session = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    order = list(session.order)
    services.rerank_move(session=session, case_id=order[2], to_position=1, revision=0)
    session.refresh_from_db()
    pairs = list(selectors.preference_pairs(project=scored_project))
    assert len(pairs) == 10  # 5 cases: 5 * 4 / 2
    assert all(
        session.order.index(p["preferred_case_id"]) < session.order.index(p["other_case_id"])
        for p in pairs
    )
    text = "".join(selectors.preference_pairs_csv(project=scored_project))
    assert text.splitlines()[0].startswith("worklist_id,model_version,risk_class,reviewer")
    assert len(text.splitlines()) == 11


def test_judgments_become_labels_of_a_derived_project_and_keep_arriving(
    scored_project, reviewer, data_scientist
):
    worklist = _worklist(scored_project, reviewer, size=5)
    session = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    first, second, third = session.order[:3]
    services.judgment_record(
        session=session, case_id=first, value=Judgment.ACTIONABLE, reason="rising BNP"
    )
    services.judgment_record(session=session, case_id=second, value=Judgment.NEEDS_INFORMATION)
    with pytest.raises(ValidationError, match="judge some cases first"):
        services.derived_project_create(
            source=_empty_project(data_scientist), created_by=data_scientist
        )

    derived = services.derived_project_create(source=scored_project, created_by=data_scientist)
    assert derived.classes == ["actionable", "not_actionable"]
    assert derived.derived_from == scored_project
    assert Case.objects.filter(project=derived).count() == 300
    external = dict(
        Case.objects.filter(pk__in=[first, second, third]).values_list("id", "external_id")
    )
    label = Label.objects.get(project=derived)
    assert label.case.external_id == external[first] and label.value == "actionable"
    assert label.author == reviewer and "rising BNP" in label.note
    # A judgment made later arrives as a label too; changing one appends to the history.
    services.judgment_record(session=session, case_id=third, value=Judgment.NOT_ACTIONABLE)
    services.judgment_record(session=session, case_id=first, value=Judgment.NOT_ACTIONABLE)
    history = list(
        Label.objects.filter(project=derived)
        .order_by("id")
        .values_list("case__external_id", "value")
    )
    assert history == [
        (external[first], "actionable"),
        (external[third], "not_actionable"),
        (external[first], "not_actionable"),
    ]
    copied = Case.objects.get(project=derived, external_id=external[first])
    assert copied.current_label == "not_actionable"
    with pytest.raises(ValidationError, match="already has a project"):
        services.derived_project_create(source=scored_project, created_by=data_scientist)


def _empty_project(user):
    from apps.projects.services import project_create

    return project_create(name="Empty", classes=["a", "b"], created_by=user)


# --- the API ---------------------------------------------------------------------------


def test_the_api_drives_a_worklist_from_making_to_a_derived_project(
    scored_project, reviewer, data_scientist, clinician, outsider
):
    from rest_framework.test import APIClient

    api = APIClient()
    base = f"/api/projects/{scored_project.pk}/worklists/"
    api.force_authenticate(clinician)
    assert api.get(base).status_code == 403  # reranking is a reviewer's work
    api.force_authenticate(outsider)
    assert api.get(base).status_code == 404

    api.force_authenticate(reviewer)
    bad = api.post(base, {"name": "x", "risk_class": "flu", "size": 10}, format="json")
    assert bad.status_code == 400 and "Unknown class 'flu'" in bad.json()["detail"]
    made = api.post(
        base,
        {"name": "Top risk", "risk_class": "heart_failure", "size": 6, "source": "unlabeled"},
        format="json",
    )
    assert made.status_code == 201, made.content
    worklist = made.json()
    assert [i["model_rank"] for i in worklist["items"]] == [1, 2, 3, 4, 5, 6]
    url = f"{base}{worklist['id']}/"
    session = api.get(url + "session").json()
    assert session["order"] == [i["case_id"] for i in worklist["items"]]
    assert session["revision"] == 0
    order = session["order"][::-1]
    saved = api.put(url + "session", {"order": order, "revision": 0}, format="json")
    assert saved.status_code == 200 and saved.json()["revision"] == 1
    stale = api.put(url + "session", {"order": session["order"], "revision": 0}, format="json")
    assert stale.status_code == 409 and "another window" in stale.json()["detail"]
    assert api.get(url + "session").json()["order"] == order
    judged = api.post(
        url + "judgments",
        {"case_id": order[0], "value": "actionable", "reason": "EF falling"},
        format="json",
    )
    assert judged.status_code == 201
    assert api.get(url + "session").json()["judgments"][0]["reason"] == "EF falling"
    figures = api.get(f"{base}agreement?k=3").json()
    assert figures["by_version"][0]["tau"] == pytest.approx(-1.0)
    assert figures["by_session"][0]["reviewer"] == reviewer.username
    assert api.get(f"{base}pairs").status_code == 403  # exports are a data scientist's

    api.force_authenticate(data_scientist)
    pairs = api.get(f"{base}pairs")
    assert pairs.status_code == 200
    assert len(b"".join(pairs.streaming_content).decode().splitlines()) == 1 + 15
    derived = api.post(
        f"/api/projects/{scored_project.pk}/derived-projects", {"target": "actionable"}
    )
    assert derived.status_code == 201, derived.content
    assert derived.json()["classes"] == ["actionable", "not_actionable"]


def test_the_api_lists_cases_filtered_and_paged_and_exports_labels(
    scored_project, reviewer, data_scientist
):
    from rest_framework.test import APIClient

    from apps.audit.models import AuditEvent

    api = APIClient()
    api.force_authenticate(reviewer)
    base = f"/api/projects/{scored_project.pk}/cases/"
    first = api.get(base, {"limit": 10}).json()
    assert first["count"] == 300 and len(first["results"]) == 10
    assert set(first["results"][0]["features"]) == {"age", "creatinine", "nt_pro_bnp"}
    second = api.get(base, {"limit": 10, "offset": 10}).json()
    ids = [c["id"] for c in first["results"] + second["results"]]
    assert ids == sorted(ids) and len(set(ids)) == 20
    unlabeled = api.get(base, {"labeled": "false", "limit": 500}).json()
    assert (
        unlabeled["count"] == Case.objects.filter(project=scored_project, current_label="").count()
    )
    assert all(c["current_label"] == "" for c in unlabeled["results"])
    failing = api.get(base, {"label": "heart_failure", "limit": 500}).json()
    assert failing["count"] > 0 and {c["current_label"] for c in failing["results"]} == {
        "heart_failure"
    }
    bad = api.get(base, {"occurred_from": "last tuesday"})
    assert bad.status_code == 400 and "occurred_from" in bad.json()["errors"]
    assert api.get(f"/api/projects/{scored_project.pk}/export").status_code == 403
    api.force_authenticate(data_scientist)
    export = api.get(f"/api/projects/{scored_project.pk}/export", {"what": "history"})
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    assert export.content.decode().splitlines()[0].startswith("label_id,external_id")
    assert AuditEvent.objects.filter(action="export", actor=data_scientist).count() == 1
    wrong = api.get(f"/api/projects/{scored_project.pk}/export", {"what": "everything"})
    assert wrong.status_code == 400 and "'labels' or 'history'" in wrong.json()["detail"]


def test_each_reviewer_counts_their_own_judgments_and_pairs_are_formula_safe(
    scored_project, reviewer, data_scientist
):
    worklist = _worklist(scored_project, reviewer, size=5)
    mine = services.rerank_session_start(worklist=worklist, reviewer=reviewer)
    theirs = services.rerank_session_start(worklist=worklist, reviewer=data_scientist)
    services.judgment_record(session=mine, case_id=mine.order[0], value=Judgment.ACTIONABLE)
    services.judgment_record(session=mine, case_id=mine.order[1], value=Judgment.NOT_ACTIONABLE)
    services.judgment_record(session=theirs, case_id=mine.order[0], value=Judgment.ACTIONABLE)
    rows = {a.session.pk: a for a in selectors.agreement(project=scored_project).by_session}
    assert (rows[mine.pk].judged, rows[mine.pk].actionable) == (2, 1)
    assert (rows[theirs.pk].judged, rows[theirs.pk].actionable) == (1, 1)
    Case.objects.filter(pk=mine.order[0]).update(external_id="=HYPERLINK(1)")
    text = "".join(selectors.preference_pairs_csv(project=scored_project))
    assert "'=HYPERLINK(1)" in text and ",=HYPERLINK" not in text
