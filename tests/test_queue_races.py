"""Forced interleavings on PostgreSQL: two requests at the same moment, with a pause patched
into the first to hold its locks while the second runs. Each test once failed with a 500, a
deadlock, a double hand-out or a drifted count. Skipped on SQLite, whose write transactions
are serial."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from apps.accounts.models import User
from apps.cases.models import Case
from apps.labeling import selectors, services
from apps.labeling.models import Label, Lease, LeaseState
from apps.labeling.services import (
    case_skip,
    label_record,
    leases_expire,
    queue_next,
    queue_settings_change,
    task_open,
)
from apps.projects.models import Role
from apps.projects.services import membership_set
from tests.conftest import make_cases_frame

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]
HF = "heart_failure"


def _member(project, username, role=Role.CLINICIAN) -> User:
    User.objects.create_user(username=username, password="x-long-password")
    membership_set(project=project, username=username, role=role)
    return User.objects.get(username=username)


def _run(*targets):
    errors: list[BaseException] = []
    results = [None] * len(targets)

    def wrap(i, fn):
        try:
            results[i] = fn()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
        time.sleep(0.3)
    for t in threads:
        t.join(30)
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    connections.close_all()
    # A thread still running has neither answered nor failed: the race is undecided, not won.
    assert not hung, f"threads {hung} did not finish within 30 s"
    return results, errors


def test_the_same_user_asking_twice_at_once_gets_one_lease(
    project, data_scientist, clinician, import_frame, monkeypatch
):
    import_frame(project, data_scientist, make_cases_frame(4, labeled=0.0))
    real = selectors.queue_candidate

    def slow(**kwargs):
        found = real(**kwargs)
        time.sleep(0.6)  # between the "do I hold one?" read and the insert
        return found

    monkeypatch.setattr(selectors, "queue_candidate", slow)
    ask = lambda: queue_next(project=project, user=clinician, role=Role.CLINICIAN)  # noqa: E731
    results, errors = _run(ask, ask)
    assert not errors, [type(e).__name__ + ": " + str(e)[:120] for e in errors]
    assert results[0].pk == results[1].pk
    assert Lease.objects.filter(user=clinician, state=LeaseState.ACTIVE).count() == 1


def test_a_pool_task_is_handed_to_one_person_at_a_time(
    project, data_scientist, clinician, reviewer, import_frame, monkeypatch
):
    import_frame(project, data_scientist, make_cases_frame(4, labeled=1.0))
    bob = _member(project, "bob")
    case = Case.objects.filter(project=project).first()
    task = task_open(case=case, kind="relabel", created_by=reviewer)
    real = selectors.task_next_for

    def slow(**kwargs):
        found = real(**kwargs)
        time.sleep(0.6)
        return found

    monkeypatch.setattr(selectors, "task_next_for", slow)
    results, errors = _run(
        lambda: queue_next(project=project, user=clinician, role=Role.CLINICIAN),
        lambda: queue_next(project=project, user=bob, role=Role.CLINICIAN),
    )
    assert not errors, errors
    holders = list(
        Lease.objects.filter(task=task, state=LeaseState.ACTIVE).values_list("user_id", flat=True)
    )
    assert len(holders) == 1, f"task {task.pk} held by {len(holders)} people"
    # The one who got it was handed the task; the other, with every case labeled, nothing.
    given = [lease for lease in results if lease is not None]
    assert [lease.task_id for lease in given] == [task.pk], results
    assert given[0].user_id == holders[0]


def test_a_skip_racing_the_expiry_opens_the_slot_once(
    project, data_scientist, clinician, import_frame, monkeypatch
):
    import_frame(project, data_scientist, make_cases_frame(1, labeled=0.0))
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    case = Case.objects.get(pk=lease.case_id)
    real = services._close_lease_row

    def slow(lease_id, state, now):
        time.sleep(0.8)  # one of the two is closing the lease
        return real(lease_id, state, now)

    monkeypatch.setattr(services, "_close_lease_row", slow)
    later = timezone.now() + timedelta(hours=1)
    _, errors = _run(
        lambda: case_skip(case=case, user=clinician),
        lambda: leases_expire(project_id=project.pk, now=later),
    )
    assert not errors, errors
    case.refresh_from_db()
    assert case.queue_open == 1, f"queue_open={case.queue_open} for a case that wants 1 label"


def test_a_late_label_and_a_next_case_do_not_deadlock(
    project, data_scientist, clinician, reviewer, import_frame, monkeypatch
):
    queue_settings_change(project=project, changed_by=reviewer, overlap_share=1.0, overlap_labels=2)
    import_frame(project, data_scientist, make_cases_frame(1, labeled=0.0))
    bob = _member(project, "bob")
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    case = Case.objects.get(pk=lease.case_id)
    case.project = project
    # Clara's lease has just run out; she presses a key at that moment.
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    real = services._count_move

    def slow(*args, **kwargs):
        time.sleep(1.0)  # label_record holds the case row; Bob asks for a case meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "_count_move", slow)
    _results, errors = _run(
        lambda: label_record(case=case, value=HF, author=clinician),
        lambda: queue_next(project=project, user=bob, role=Role.CLINICIAN),
    )
    assert not errors, [type(e).__name__ + ": " + str(e)[:200] for e in errors]


def _rerank_while_bob_asks(project, reviewer, bob, strategy, monkeypatch) -> None:
    """Bob asks for a case while the worker re-ranks; his request holds the case of an expired
    lease locked (a pause patched in after the expiry) while the re-rank runs."""
    from apps.labeling.services import queue_refresh

    queue_settings_change(project=project, changed_by=reviewer, strategy=strategy, seed=3)
    real = services.leases_expire

    def slow(**kwargs):
        n = real(**kwargs)
        time.sleep(1.0)
        return n

    monkeypatch.setattr(services, "leases_expire", slow)
    _results, errors = _run(
        lambda: queue_next(project=project, user=bob, role=Role.CLINICIAN),
        lambda: queue_refresh(project_id=project.pk),
    )
    assert not errors, [type(e).__name__ + ": " + str(e)[:200] for e in errors]


@pytest.mark.parametrize("strategy", ["import_order", "random", "recent_first"])
def test_a_rerank_and_a_next_case_do_not_deadlock(
    project, data_scientist, clinician, reviewer, import_frame, monkeypatch, strategy
):
    import_frame(project, data_scientist, make_cases_frame(2, labeled=0.0))
    x, _y = Case.objects.filter(project=project).order_by("pk")
    x.project = project
    bob = _member(project, "bob")
    case_skip(case=x, user=bob)  # Bob will not be offered X
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert lease.case_id == x.pk
    queue_next(project=project, user=_member(project, "carl"), role=Role.CLINICIAN)  # holds Y
    from apps.labeling.services import lease_release

    lease_release(project=project, user=User.objects.get(username="carl"))
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _rerank_while_bob_asks(project, reviewer, bob, strategy, monkeypatch)


@pytest.mark.parametrize("strategy", ["import_order", "random", "recent_first"])
def test_a_rerank_and_a_next_case_holding_an_expired_case_do_not_deadlock(
    project, data_scientist, clinician, reviewer, import_frame, monkeypatch, strategy
):
    import_frame(project, data_scientist, make_cases_frame(2, labeled=0.0))
    a, b = Case.objects.filter(project=project).order_by("pk")
    a.project = project
    b.project = project
    bob = _member(project, "bob")
    case_skip(case=a, user=clinician)
    lease = queue_next(project=project, user=clinician, role=Role.CLINICIAN)
    assert lease.case_id == b.pk
    case_skip(case=b, user=bob)  # Bob will not be offered B
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _rerank_while_bob_asks(project, reviewer, bob, strategy, monkeypatch)


def test_two_reviewers_adjudicating_one_case_at_once_one_wins_the_other_is_told(
    project, data_scientist, clinician, reviewer, import_frame, monkeypatch
):
    import_frame(project, data_scientist, make_cases_frame(2, labeled=1.0))
    second = _member(project, "sam", Role.REVIEWER)
    case = Case.objects.filter(project=project).first()
    task = task_open(case=case, kind="adjudicate", created_by=data_scientist)
    real = services._sql

    def slow(sql, params=None):
        rows = real(sql, params)
        if "FOR UPDATE OF c" in sql:
            time.sleep(0.6)  # holding the case while the other reviewer arrives
        return rows

    monkeypatch.setattr(services, "_sql", slow)
    case.refresh_from_db()
    _results, errors = _run(
        lambda: label_record(case=case, value="heart_failure", author=reviewer, task=task),
        lambda: label_record(case=case, value="no_heart_failure", author=second, task=task),
    )
    assert len(errors) == 1, errors
    message = str(errors[0])
    assert "already done" in message and "heart_failure" in message and "rafael" in message
    task.refresh_from_db()
    case.refresh_from_db()
    assert task.status == "done" and task.closed_by == reviewer
    assert case.current_label == "heart_failure"
    assert Label.objects.filter(case=case, kind="adjudicated").count() == 1
