"""The labeling queue: strategies, leases, overlap, tasks, agreement and label counts."""

from __future__ import annotations

from datetime import timedelta

import krippendorff
import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.utils import timezone
from sklearn.metrics import cohen_kappa_score

from apps.accounts.models import User
from apps.cases.models import Case
from apps.labeling import selectors, strategies
from apps.labeling.models import (
    LabelCount,
    LabelKind,
    LabelTask,
    Lease,
    LeaseState,
    TaskKind,
    TaskStatus,
)
from apps.labeling.services import (
    case_scores_replace,
    case_skip,
    label_record,
    label_undo_last,
    lease_release,
    queue_next,
    queue_refresh,
    queue_settings_change,
    task_claim,
    task_open,
)
from apps.projects.models import Role
from apps.projects.services import membership_set
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db

HF, NO = "heart_failure", "no_heart_failure"


def _next(project, user, role=Role.CLINICIAN):
    lease = queue_next(project=project, user=user, role=role)
    return lease.case if lease else None


def _member(project, username, role=Role.CLINICIAN) -> User:
    User.objects.create_user(username=username, password="x-long-password")
    membership_set(project=project, username=username, role=role)
    return User.objects.get(username=username)


@pytest.fixture
def cases(project, data_scientist, import_frame):
    import_frame(project, data_scientist, make_cases_frame(6, labeled=0.0))
    return list(Case.objects.filter(project=project).order_by("pk"))


def _scores(project, cases, p_heart_failure):
    """Give the cases model scores: P(heart_failure) per case, in `cases` order."""
    p = np.asarray(p_heart_failure, dtype=float)
    probabilities = np.column_stack([1 - p, p])  # the project's class order: no, yes
    case_scores_replace(
        project_id=project.pk,
        model_version_number=1,
        case_ids=np.array([c.pk for c in cases]),
        predicted_labels=[HF if x >= 0.5 else NO for x in p],
        confidences=probabilities.max(axis=1),
        probabilities=probabilities,
    )


# --- Strategies (pure) ---------------------------------------------------------------------


def test_uncertainty_measures_on_hand_checked_probabilities():
    p = np.array([[0.9, 0.1, 0.0], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(strategies.uncertainty(p, "least_confident"), [0.1, 0.6, 0.5])
    np.testing.assert_allclose(strategies.uncertainty(p, "margin"), [0.2, 0.95, 1.0])
    expected_entropy = [
        -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)),
        -(0.4 * np.log(0.4) + 0.35 * np.log(0.35) + 0.25 * np.log(0.25)),
        np.log(2),
    ]
    np.testing.assert_allclose(strategies.uncertainty(p, "entropy"), expected_entropy)


def test_order_by_score_puts_unscored_cases_last_and_breaks_ties_by_id():
    ids = np.array([10, 11, 12, 13])
    order = strategies.order_by_score(ids, np.array([0.2, np.nan, 0.9, 0.2]))
    assert ids[order].tolist() == [12, 10, 13, 11]


def test_random_order_depends_on_the_seed_and_is_stable_as_cases_arrive():
    ids = np.arange(1, 201)
    first = ids[strategies.order_random(ids, seed=1)]
    assert first.tolist() != sorted(first.tolist())
    assert first.tolist() == ids[strategies.order_random(ids, seed=1)].tolist()
    assert first.tolist() != ids[strategies.order_random(ids, seed=2)].tolist()
    more = np.arange(1, 301)
    grown = more[strategies.order_random(more, seed=1)]
    # The old cases keep their relative order when new ones are added.
    assert [x for x in grown.tolist() if x <= 200] == first.tolist()


def test_recent_first_puts_cases_without_a_date_last():
    ids = np.array([1, 2, 3])
    when = np.array(["2025-01-01", "NaT", "2025-06-01"], dtype="datetime64[us]")
    assert ids[strategies.order_recent_first(ids, when)].tolist() == [3, 1, 2]


def test_a_mix_draws_the_asked_share_from_each_order_and_is_reproducible():
    n = 10_000
    primary = np.arange(n)
    secondary = np.arange(n)[::-1]
    merged, from_secondary = strategies.mix_orders(primary, secondary, 0.2, seed=7)
    assert sorted(merged.tolist()) == list(range(n))  # every case exactly once
    assert 0.18 < from_secondary[:2000].mean() < 0.22
    again, _ = strategies.mix_orders(primary, secondary, 0.2, seed=7)
    assert merged.tolist() == again.tolist()
    # The places drawn from the primary order take its best cases, in its order.
    head = merged[:200][~from_secondary[:200]]
    assert head.tolist() == sorted(head.tolist())


def test_overlap_choice_takes_about_the_share_asked_and_depends_only_on_the_id():
    ids = [f"case-{i}" for i in range(20_000)]
    chosen = strategies.in_overlap(ids, 0.1, seed=3)
    assert 0.09 < chosen.mean() < 0.11
    assert strategies.in_overlap(ids[:100], 0.1, seed=3).tolist() == chosen[:100].tolist()
    assert not strategies.in_overlap(ids, 0.0, seed=3).any()


# --- Leases ---------------------------------------------------------------------------------


def test_next_hands_out_a_case_under_a_lease_and_a_reload_returns_it(project, cases, clinician):
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert lease.case == cases[0] and lease.state == LeaseState.ACTIVE
    assert lease.expires_at > timezone.now() + timedelta(minutes=14)
    again = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert again.pk == lease.pk
    cases[0].refresh_from_db()
    assert cases[0].queue_open == 0


def test_two_clinicians_get_different_cases(project, cases, clinician, reviewer):
    assert _next(project, clinician) == cases[0]
    assert _next(project, reviewer, Role.REVIEWER) == cases[1]


def test_an_expired_lease_returns_the_case_to_the_queue(project, cases, clinician, reviewer):
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _next(project, reviewer, Role.REVIEWER) == cases[0]
    lease.refresh_from_db()
    assert lease.state == LeaseState.EXPIRED
    # Labeling after the lease expired is still recorded: nothing entered is lost.
    label = label_record(case=cases[0], value=HF, author=clinician, seen_label_id=0)
    assert label.value == HF


def test_skip_returns_the_case_to_others_but_not_to_the_one_who_skipped(
    project, cases, clinician, reviewer
):
    assert _next(project, clinician) == cases[0]
    case_skip(case=cases[0], user=clinician)
    assert _next(project, clinician) == cases[1]
    assert _next(project, reviewer, Role.REVIEWER) == cases[0]
    assert Lease.objects.get(case=cases[0], user=clinician).state == LeaseState.SKIPPED


def test_release_gives_the_case_back(project, cases, clinician, reviewer):
    assert _next(project, clinician) == cases[0]
    released = lease_release(project=project, user=clinician)
    assert released.state == LeaseState.RELEASED
    assert _next(project, reviewer, Role.REVIEWER) == cases[0]
    assert lease_release(project=project, user=clinician) is None


def test_a_labeled_case_is_not_handed_out_again(project, cases, clinician, reviewer):
    assert _next(project, clinician) == cases[0]
    label_record(case=cases[0], value=HF, author=clinician, seen_label_id=0)
    assert _next(project, clinician) == cases[1]
    assert _next(project, reviewer, Role.REVIEWER) == cases[2]


def test_a_label_given_outside_the_queue_fills_the_cases_slot(project, cases, clinician):
    label_record(case=cases[0], value=HF, author=clinician)  # e.g. through the API
    cases[0].refresh_from_db()
    assert cases[0].queue_open == 0
    assert _next(project, clinician) == cases[1]


def test_undo_gives_the_case_back_to_its_labeler_and_frees_the_one_they_held(
    project, cases, clinician, reviewer
):
    assert _next(project, clinician) == cases[0]
    label_record(case=cases[0], value=HF, author=clinician, seen_label_id=0)
    assert _next(project, clinician) == cases[1]
    label_undo_last(project=project, author=clinician)
    held = selectors.lease_active_for(project=project, user=clinician)
    assert held.case_id == cases[0].pk
    # Undo appended a row; it deleted nothing.
    assert [k for k in cases[0].labels.values_list("kind", flat=True)] == [
        LabelKind.LABELED,
        LabelKind.UNDONE,
    ]
    assert _next(project, reviewer, Role.REVIEWER) == cases[1]


def test_the_lease_length_is_the_projects(project, cases, clinician, reviewer):
    queue_settings_change(project=project, changed_by=reviewer, lease_minutes=3)
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert timedelta(minutes=2) < lease.expires_at - timezone.now() <= timedelta(minutes=3)


# --- Strategies through the queue -----------------------------------------------------------


def test_uncertainty_hands_out_the_cases_the_model_is_least_sure_of(
    project, cases, clinician, reviewer
):
    _scores(project, cases, [0.99, 0.55, 0.02, 0.48, 0.8, 0.3])
    queue_settings_change(
        project=project, changed_by=reviewer, strategy="uncertainty", uncertainty_measure="margin"
    )
    build = queue_refresh(project_id=project.pk)
    assert build.strategy_used == "uncertainty" and build.cases_ranked == 6
    assert build.model_version_number == 1
    order = [r.case for r in selectors.queue_preview(project=project)]
    assert order == [cases[3], cases[1], cases[5], cases[4], cases[2], cases[0]]
    assert _next(project, clinician) == cases[3]
    preview = selectors.queue_preview(project=project, limit=1)
    assert preview[0].case == cases[1]
    assert preview[0].score == pytest.approx(1 - abs(0.55 - 0.45))


def test_minority_targeting_hands_out_the_likely_rare_cases_first(
    project, cases, clinician, reviewer
):
    _scores(project, cases, [0.2, 0.9, 0.1, 0.6, 0.05, 0.7])
    queue_settings_change(
        project=project, changed_by=reviewer, strategy="minority", target_class=HF
    )
    queue_refresh(project_id=project.pk)
    order = [r.case for r in selectors.queue_preview(project=project)]
    assert order == [cases[1], cases[5], cases[3], cases[0], cases[2], cases[4]]


def test_model_strategies_fall_back_to_import_order_until_a_model_scores_cases(
    project, cases, reviewer
):
    queue_settings_change(project=project, changed_by=reviewer, strategy="uncertainty")
    build = queue_refresh(project_id=project.pk)
    assert build.strategy_used == "import_order"
    assert "No model scores yet" in build.note
    assert [r.case for r in selectors.queue_preview(project=project)] == cases


def test_recent_first_and_random_reorder_the_queue(project, cases, reviewer):
    queue_settings_change(project=project, changed_by=reviewer, strategy="recent_first")
    queue_refresh(project_id=project.pk)
    assert [r.case for r in selectors.queue_preview(project=project)] == cases[::-1]
    queue_settings_change(project=project, changed_by=reviewer, strategy="random", seed=5)
    queue_refresh(project_id=project.pk)
    ids = np.array([c.pk for c in cases])
    expected = ids[strategies.order_random(ids, 5)].tolist()
    assert [r.case.pk for r in selectors.queue_preview(project=project)] == expected


def test_new_imports_join_the_queue_after_the_ranked_cases(
    project, cases, reviewer, data_scientist, import_frame
):
    queue_settings_change(project=project, changed_by=reviewer, strategy="recent_first")
    queue_refresh(project_id=project.pk)
    frame = make_cases_frame(2, labeled=0.0, start="2030-01-01")
    frame["external_id"] = ["new-1", "new-2"]
    import_frame(project, data_scientist, frame)
    order = [r.case.external_id for r in selectors.queue_preview(project=project)]
    assert order[-2:] == ["new-1", "new-2"]
    queue_refresh(project_id=project.pk)  # what the worker does after the import
    order = [r.case.external_id for r in selectors.queue_preview(project=project)]
    assert order[:2] == ["new-2", "new-1"]


def test_queue_settings_are_versioned_and_checked(project, reviewer):
    with pytest.raises(ValidationError) as error:
        queue_settings_change(project=project, changed_by=reviewer, strategy="minority")
    assert "target_class" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.5)
    assert "overlap_share" in error.value.message_dict
    first = queue_settings_change(project=project, changed_by=reviewer, strategy="random")
    second = queue_settings_change(
        project=project, changed_by=reviewer, seed=9, note="reshuffle for the new batch"
    )
    assert second.strategy == "random" and second.seed == 9
    assert list(selectors.queue_settings_history(project=project)) == [second, first]
    assert selectors.queue_settings_current(project_id=project.pk) == second


# --- Overlap, agreement and adjudication ----------------------------------------------------


@pytest.fixture
def overlap_project(project, data_scientist, reviewer, import_frame):
    """Every case wants two independent labels."""
    queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.0, overlap_labels=2)
    import_frame(project, data_scientist, make_cases_frame(4, labeled=0.0))
    return project


def test_overlap_hands_a_case_to_as_many_clinicians_as_asked(overlap_project, clinician):
    project = overlap_project
    cases = list(Case.objects.filter(project=project).order_by("pk"))
    assert {c.queue_wanted for c in cases} == {2}
    ben = _member(project, "ben")
    cat = _member(project, "cat")
    assert _next(project, clinician) == cases[0]
    assert _next(project, ben) == cases[0]
    assert _next(project, cat) == cases[1]  # the first case has its two clinicians


def test_overlap_labels_are_independent_and_a_disagreement_goes_to_adjudication(
    overlap_project, clinician, reviewer
):
    project = overlap_project
    case = Case.objects.filter(project=project).order_by("pk").first()
    ben = _member(project, "ben")
    assert _next(project, clinician) == case
    assert _next(project, ben) == case
    label_record(case=case, value=HF, author=clinician, seen_label_id=0)
    # Ben's screen was shown before Clara labeled: an independent opinion, not a stale form.
    second = label_record(case=case, value=NO, author=ben, seen_label_id=0)
    assert second.kind == LabelKind.LABELED
    # Neither is offered the case again.
    assert _next(project, clinician) != case
    task = LabelTask.objects.get(case=case)
    assert (task.kind, task.status) == (TaskKind.ADJUDICATE, TaskStatus.OPEN)
    assert selectors.case_opinions(case_id=case.pk) == {"clara": HF, "ben": NO}
    # The reviewer's queue starts with the adjudication, before new cases.
    lease = queue_next(project=project, user=reviewer, role=Role.REVIEWER)
    assert lease.task == task and lease.case == case
    decision = label_record(case=case, value=HF, author=reviewer)
    assert decision.kind == LabelKind.ADJUDICATED
    task.refresh_from_db()
    case.refresh_from_db()
    assert (task.status, task.label, case.current_label) == (TaskStatus.DONE, decision, HF)


def test_agreeing_overlap_labels_open_no_adjudication(overlap_project, clinician):
    project = overlap_project
    case = Case.objects.filter(project=project).order_by("pk").first()
    ben = _member(project, "ben")
    label_record(case=case, value=HF, author=clinician)
    label_record(case=case, value=HF, author=ben)
    assert not LabelTask.objects.filter(case=case).exists()


def test_a_clinician_gets_no_adjudication_queue_and_a_reviewer_not_their_own_case(
    overlap_project, clinician, reviewer
):
    project = overlap_project
    case = Case.objects.filter(project=project).order_by("pk").first()
    label_record(case=case, value=HF, author=reviewer)
    label_record(case=case, value=NO, author=clinician)
    assert LabelTask.objects.filter(case=case, status=TaskStatus.OPEN).count() == 1
    ben = _member(project, "ben")
    assert _next(project, ben).pk != case.pk
    lease = queue_next(project=project, user=reviewer, role=Role.REVIEWER)
    assert lease.task is None  # Rafael gave one of the two opinions
    other_reviewer = _member(project, "rita", Role.REVIEWER)
    assert queue_next(project=project, user=other_reviewer, role=Role.REVIEWER).task is not None


def test_agreement_figures_match_scikit_learn_and_krippendorff(project, data_scientist):
    queue_settings_change(
        project=project, changed_by=data_scientist, overlap_share=1.0, overlap_labels=3
    )
    frame = make_cases_frame(6, labeled=0.0)
    from apps.labeling.services import cases_import

    path = _write(frame)
    cases_import(project=project, path=path, filename="c.csv", imported_by=data_scientist)
    cases = list(Case.objects.filter(project=project).order_by("pk"))
    a, b, c = (_member(project, n) for n in ("ann", "bob", "cyd"))
    given = {
        a: [HF, HF, NO, NO, HF, NO],
        b: [HF, NO, NO, NO, HF, HF],
        c: [HF, HF, NO, HF, None, NO],
    }
    for user, values in given.items():
        for case, value in zip(cases, values, strict=True):
            if value:
                label_record(case=case, value=value, author=user)
    agreement = selectors.label_agreement(project=project)
    assert agreement.cases == 6 and agreement.raters == ["ann", "bob", "cyd"]
    pair = next(p for p in agreement.pairs if (p.first, p.second) == ("ann", "bob"))
    assert pair.cases == 6
    assert pair.kappa == pytest.approx(cohen_kappa_score(given[a], given[b]))
    # Hand-checked: they agree on 4 of 6; each says HF half the time, so chance is 0.5.
    assert pair.kappa == pytest.approx((4 / 6 - 0.5) / 0.5)
    codes = {HF: 1, NO: 0, None: np.nan}
    data = [[codes[v] for v in given[u]] for u in (a, b, c)]
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert agreement.alpha == pytest.approx(expected)
    assert agreement.disputed == 3  # cases 2, 4 and 6 have two different labels
    # Complete overlap cases that disagree are listed for adjudication.
    listed = selectors.disagreements(project=project)
    assert {d.task.case_id for d in listed} == {cases[1].pk, cases[3].pk, cases[5].pk}


def _write(frame):
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    path = folder / "cases.csv"
    frame.to_csv(path, index=False)
    return path


# --- Relabel tasks --------------------------------------------------------------------------


def test_an_assigned_relabel_task_comes_before_new_cases(project, cases, clinician, reviewer):
    first = label_record(case=cases[4], value=NO, author=reviewer)
    task = task_open(
        case=cases[4],
        kind=TaskKind.RELABEL,
        created_by=reviewer,
        reason="NT-proBNP 4,000 pg/mL: check again",
        assignee=clinician,
    )
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert (lease.task, lease.case) == (task, cases[4])
    label = label_record(case=cases[4], value=HF, author=clinician, seen_label_id=first.pk)
    assert label.kind == LabelKind.RELABELED
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE and task.closed_by == clinician
    assert _next(project, clinician) == cases[0]


def test_a_pool_task_goes_to_one_person_at_a_time(project, cases, clinician, reviewer):
    task = task_open(case=cases[2], kind=TaskKind.RELABEL, created_by=reviewer)
    ben = _member(project, "ben")
    assert queue_next(project=project, user=clinician, role=Role.CLINICIAN).task == task
    assert queue_next(project=project, user=ben, role=Role.CLINICIAN).task is None
    with pytest.raises(ValidationError, match="clara is working on this task"):
        task_claim(task=task, user=ben, role=Role.CLINICIAN)


def test_a_skipped_task_is_not_offered_again_to_the_same_person(
    project, cases, clinician, reviewer
):
    task = task_open(case=cases[2], kind=TaskKind.RELABEL, created_by=reviewer)
    assert queue_next(project=project, user=clinician, role=Role.CLINICIAN).task == task
    case_skip(case=cases[2], user=clinician)
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert lease.task is None and lease.case == cases[0]
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN


def test_a_task_for_a_non_member_is_refused(project, cases, reviewer, outsider):
    with pytest.raises(ValidationError, match="not a member"):
        task_open(case=cases[0], kind=TaskKind.RELABEL, created_by=reviewer, assignee=outsider)


def test_a_done_task_cannot_be_answered_twice(project, cases, clinician, reviewer):
    task = task_open(case=cases[1], kind=TaskKind.RELABEL, created_by=reviewer)
    label_record(case=cases[1], value=HF, author=clinician, task=task)
    with pytest.raises(ValidationError, match="already done"):
        label_record(case=cases[1], value=NO, author=reviewer, task=task)


# --- Counts ---------------------------------------------------------------------------------


def test_label_counts_follow_every_label_undo_and_import(
    project, cases, clinician, reviewer, data_scientist, import_frame
):
    label_record(case=cases[0], value=HF, author=clinician)
    label_record(case=cases[1], value=NO, author=clinician)
    label_record(case=cases[0], value=NO, author=reviewer)
    label_record(case=cases[2], value=HF, author=clinician)
    label_undo_last(project=project, author=clinician)
    frame = make_cases_frame(5, seed=4, labeled=0.6)
    frame["external_id"] = [f"more-{i}" for i in range(5)]
    import_frame(project, data_scientist, frame)
    kept = dict(LabelCount.objects.filter(project=project).values_list("value", "cases"))
    actual = dict(
        Case.objects.filter(project=project)
        .values_list("current_label")
        .annotate(n=Count("id"))
        .values_list("current_label", "n")
    )
    assert {k: v for k, v in kept.items() if v} == actual
    progress = selectors.label_progress(project=project, user=clinician)
    assert progress.total_cases == 11
    assert progress.labeled_by_user == 2  # cases 0 and 1; her label of case 2 was undone
    per_person = {c.username: c.cases for c in selectors.label_counts_by_clinician(project=project)}
    assert per_person == {"clara": 2, "rafael": 1}
