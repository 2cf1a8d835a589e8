"""Sequences that once left the queue wrong: a labeled case back in the queue, a person stuck
on a settled task, a blind label that was not blind, a dispute settled by a party to it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import User
from apps.cases.models import Case
from apps.labeling.models import LabelTask, Lease, LeaseState, TaskStatus
from apps.labeling.services import (
    case_skip,
    label_record,
    label_undo_last,
    lease_release,
    queue_next,
    queue_settings_change,
    task_claim,
    task_open,
)
from apps.projects.models import Role
from apps.projects.services import membership_set
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db
HF, NO = "heart_failure", "no_heart_failure"


def _member(project, username, role=Role.CLINICIAN) -> User:
    User.objects.create_user(username=username, password="x-long-password")
    membership_set(project=project, username=username, role=role)
    return User.objects.get(username=username)


def _one_case(project, data_scientist, import_frame, labeled=0.0, n=1):
    import_frame(project, data_scientist, make_cases_frame(n, labeled=labeled))
    return list(Case.objects.filter(project=project).order_by("pk"))


def _with_project(case, project):
    case.refresh_from_db()
    case.project = project
    return case


def test_a_late_label_then_a_release_leaves_the_case_labeled_and_closed(
    project, data_scientist, clinician, reviewer, import_frame
):
    (case,) = _one_case(project, data_scientist, import_frame)
    bob = _member(project, "bob")
    queue_next(project=project, user=clinician, role=Role.CLINICIAN)  # clara holds the case
    # Clara's lease runs out; Bob is handed the case.
    later = timezone.now() + timedelta(hours=1)
    assert queue_next(project=project, user=bob, role=Role.CLINICIAN, now=later).case_id == case.pk
    # Clara's label arrives late: stored (as the README promises).
    label_record(case=_with_project(case, project), value=HF, author=clinician)
    # Bob gives the case back without labeling.
    lease_release(project=project, user=bob)
    case.refresh_from_db()
    assert case.current_label == HF
    # The case is labeled once, as wanted, yet it is back in the queue:
    assert case.queue_open == 0, "a labeled single-label case is open again"


def test_undoing_a_correction_of_an_imported_label_keeps_the_case_closed(
    project, data_scientist, reviewer, clinician, import_frame
):
    (case,) = _one_case(project, data_scientist, import_frame, labeled=1.0)
    assert case.queue_open == 0
    imported_value = case.current_label
    other = NO if imported_value == HF else HF
    label_record(case=_with_project(case, project), value=other, author=reviewer)  # correction
    label_undo_last(project=project, author=reviewer)  # back to the imported label
    lease_release(project=project, user=reviewer)  # or expiry, skip, task claim
    case.refresh_from_db()
    assert case.current_label == imported_value
    assert case.queue_open == 0, "an imported-labeled case went back to the queue"


def test_undoing_a_correction_of_ones_own_label_keeps_the_first_label(
    project, data_scientist, clinician, import_frame
):
    (case,) = _one_case(project, data_scientist, import_frame)
    queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    label_record(case=_with_project(case, project), value=HF, author=clinician)
    label_record(case=_with_project(case, project), value=NO, author=clinician)  # own correction
    label_undo_last(project=project, author=clinician)  # back to HF, Clara's first label
    lease_release(project=project, user=clinician)
    case.refresh_from_db()
    assert case.current_label == HF
    # Clara's HF label stands, but the case is open again and Clara is offered her own case:
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert lease is None, f"clara is handed her own labeled case {lease.case_id} again"


def test_a_relabel_answer_on_an_unlabeled_case_closes_it(
    project, data_scientist, clinician, reviewer, import_frame
):
    (case,) = _one_case(project, data_scientist, import_frame)
    bob = _member(project, "bob")
    task_open(case=case, kind="relabel", created_by=reviewer)
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert lease.task_id is not None
    label_record(case=_with_project(case, project), value=HF, author=clinician)
    case.refresh_from_db()
    assert case.current_label == HF
    lease = queue_next(project=project, user=bob, role=Role.CLINICIAN)
    assert lease is None, "a single-label case that has its label is handed out again"


def test_a_reviewer_holding_a_cancelled_adjudication_is_freed(
    project, data_scientist, clinician, reviewer, import_frame
):
    queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.0, overlap_labels=2)
    (case,) = _one_case(project, data_scientist, import_frame)
    bob = _member(project, "bob")
    for user, value in ((clinician, HF), (bob, NO)):
        queue_next(project=project, user=user, role=Role.CLINICIAN)
        label_record(case=_with_project(case, project), value=value, author=user)
    task = LabelTask.objects.get(case=case, kind="adjudicate")
    lease = queue_next(project=project, user=reviewer, role=Role.REVIEWER)
    assert lease.task_id == task.pk
    label_undo_last(project=project, author=bob)  # the dispute is incomplete again
    assert LabelTask.objects.get(pk=task.pk).status == TaskStatus.CANCELLED
    assert Lease.objects.get(pk=lease.pk).state == LeaseState.RELEASED
    again = queue_next(project=project, user=reviewer, role=Role.REVIEWER)
    # Nothing to hand out: the cancelled task is no one's, and the case's one open slot is Bob's
    # again (an undo gives the case back to its author under a fresh lease).
    assert again is None
    assert not Lease.objects.filter(task=task, state=LeaseState.ACTIVE).exists()
    assert Lease.objects.filter(case=case, user=bob, state=LeaseState.ACTIVE).exists()


def test_a_task_claimed_over_an_expired_lease_is_held_once(
    project, data_scientist, clinician, reviewer, import_frame
):
    (case,) = _one_case(project, data_scientist, import_frame, labeled=1.0)
    bob = _member(project, "bob")
    task = task_open(case=case, kind="relabel", created_by=reviewer)
    first = task_claim(task=task, user=clinician, role=Role.CLINICIAN)
    Lease.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    second = task_claim(task=task, user=bob, role=Role.CLINICIAN)
    assert Lease.objects.get(pk=first.pk).state == LeaseState.EXPIRED
    assert list(Lease.objects.filter(task=task, state=LeaseState.ACTIVE)) == [second]
    # Clara's late answer (her form names the task) still counts; Bob is then freed, not stuck
    # on a done task.
    label_record(case=_with_project(case, project), value=HF, author=clinician, task=task)
    assert Lease.objects.get(pk=second.pk).state == LeaseState.RELEASED
    assert queue_next(project=project, user=bob, role=Role.CLINICIAN) is None


def test_an_overlap_case_takes_no_more_labels_than_wanted(
    project, data_scientist, clinician, reviewer, import_frame
):
    queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.0, overlap_labels=2)
    (case,) = _one_case(project, data_scientist, import_frame)
    bob, carl, dora = (_member(project, n) for n in ("bob", "carl", "dora"))
    queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    queue_next(project=project, user=bob, role=Role.CLINICIAN)
    label_record(case=_with_project(case, project), value=HF, author=carl)  # outside the queue
    lease_release(project=project, user=clinician)
    label_record(case=_with_project(case, project), value=HF, author=bob)
    # Wanted 2: Carl and Bob labeled it; yet Dora is handed it for a third label.
    assert queue_next(project=project, user=dora, role=Role.CLINICIAN) is None


def test_skip_of_a_held_task_case(project, data_scientist, clinician, reviewer, import_frame):
    (case,) = _one_case(project, data_scientist, import_frame, labeled=1.0)
    task = task_open(case=case, kind="relabel", created_by=reviewer)
    queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    case_skip(case=case, user=clinician)
    case.refresh_from_db()
    assert case.queue_open == 0
    assert LabelTask.objects.get(pk=task.pk).status == TaskStatus.OPEN


def test_a_blind_overlap_label_stays_blind_in_the_api_and_the_case_page(
    client, project, data_scientist, clinician, reviewer, import_frame
):
    from django.urls import reverse
    from rest_framework.test import APIClient

    queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.0, overlap_labels=2)
    (case,) = _one_case(project, data_scientist, import_frame)
    bob = _member(project, "bob")
    queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    label_record(case=_with_project(case, project), value=HF, author=clinician)
    api = APIClient()
    api.force_authenticate(bob)
    body = api.get(f"/api/projects/{project.pk}/queue/next").json()
    assert body["id"] == case.pk
    leaks = []
    if body.get("current_label") == HF:
        leaks.append("queue/next current_label")
    history = api.get(f"/api/cases/{case.pk}/labels").json()
    if any(row.get("value") == HF for row in history):
        leaks.append("GET cases/{id}/labels")
    # A second case so that Bob's held lease is not on this one when he opens ?case=.
    client.force_login(bob)
    lease_release(project=project, user=bob)
    page = client.get(reverse("labeling:label", args=[project.pk]) + f"?case={case.pk}")
    if "clara" in page.content.decode():
        leaks.append("?case= page shows clara's label")
    # Bob then labels blind... but he has already seen it.
    assert not leaks, leaks


def test_answering_a_relabel_task_on_ones_own_case_counts_it_once(
    project, data_scientist, clinician, reviewer, import_frame
):
    from apps.labeling import selectors

    (case,) = _one_case(project, data_scientist, import_frame)
    queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    label_record(case=_with_project(case, project), value=HF, author=clinician)
    task_open(case=case, kind="relabel", created_by=reviewer, assignee=clinician)
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert lease.task_id
    label_record(case=_with_project(case, project), value=NO, author=clinician)
    progress = selectors.label_progress(project=project, user=clinician)
    assert progress.labeled_by_user == 1, f"one case counted {progress.labeled_by_user} times"


def test_a_reviewer_cannot_settle_a_dispute_they_are_part_of(
    client, project, data_scientist, clinician, reviewer, import_frame
):
    from django.urls import reverse

    queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.0, overlap_labels=2)
    (case,) = _one_case(project, data_scientist, import_frame)
    for user, role, value in ((clinician, Role.CLINICIAN, HF), (reviewer, Role.REVIEWER, NO)):
        queue_next(project=project, user=user, role=role)
        label_record(case=_with_project(case, project), value=value, author=user)
    task = LabelTask.objects.get(case=case, kind="adjudicate")
    assert queue_next(project=project, user=reviewer, role=Role.REVIEWER) is None  # not offered
    client.force_login(reviewer)
    client.get(reverse("labeling:label", args=[project.pk]) + f"?task={task.pk}")
    client.post(
        reverse("labeling:submit", args=[project.pk, case.pk]), {"value": NO, "task_id": task.pk}
    )
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN, "the reviewer settled a dispute they were part of"
