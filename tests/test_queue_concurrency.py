"""Many clinicians asking for cases at the same moment, on the real database of the run
(SQLite in the first pass of the test command, PostgreSQL in the second)."""

from __future__ import annotations

import random
import threading
from collections import defaultdict

import pytest
from django.db import connection, connections
from django.db.models import Count

from apps.accounts.models import User
from apps.cases.models import Case
from apps.labeling.models import Label, LabelCount, LabelKind, Lease, LeaseState
from apps.labeling.services import label_record, queue_next, queue_settings_change
from apps.projects.models import Role
from apps.projects.services import membership_set
from tests.conftest import make_cases_frame

WORKERS = 20
CALLS = 100


@pytest.mark.django_db(transaction=True)
def test_twenty_clinicians_labeling_at_once_never_share_a_case_beyond_the_overlap(
    project, data_scientist, import_frame
):
    # 10% of cases want three independent labels; the rest one.
    queue_settings_change(
        project=project, changed_by=data_scientist, overlap_share=0.1, overlap_labels=3
    )
    import_frame(project, data_scientist, make_cases_frame(WORKERS * CALLS + 500, labeled=0.0))
    clinicians = []
    for i in range(WORKERS):
        User.objects.create_user(username=f"clin{i:02d}", password="x-long-password")
        membership_set(project=project, username=f"clin{i:02d}", role=Role.CLINICIAN)
        clinicians.append(User.objects.get(username=f"clin{i:02d}"))
    handed: list[tuple[int, int, int]] = []  # (user, case, lease)
    failures: list[BaseException] = []
    start = threading.Barrier(WORKERS)
    lock = threading.Lock()

    def clinician_at_work(user: User, seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(CALLS):
                lease = queue_next(project=project, user=user, role=Role.CLINICIAN)
                assert lease is not None, "the queue ran dry"
                with lock:
                    handed.append((user.pk, lease.case_id, lease.pk))
                lease.case.project = project
                # seen_label_id=0: had the queue handed a single-label case to two people,
                # the second label would be refused as stale and fail the test.
                label_record(
                    case=lease.case, value=rng.choice(project.classes), author=user, seen_label_id=0
                )
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=clinician_at_work, args=(user, i))
        for i, user in enumerate(clinicians)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connections.close_all()
    assert not failures, failures[:3]
    assert len(handed) == WORKERS * CALLS

    # No case went to the same clinician twice, nor to more clinicians than it wanted.
    wanted = dict(Case.objects.filter(project=project).values_list("pk", "queue_wanted"))
    holders: dict[int, list[int]] = defaultdict(list)
    for user_id, case_id, _ in handed:
        holders[case_id].append(user_id)
    for case_id, users in holders.items():
        assert len(users) == len(set(users)), f"case {case_id} went to someone twice"
        assert len(users) <= wanted[case_id], f"case {case_id} went to {len(users)} clinicians"
    assert any(len(users) == 3 for users in holders.values()), "no overlap case was shared"

    # Every label sent is stored once, and every lease is accounted for.
    labels = Label.objects.filter(project=project, kind__in=[LabelKind.LABELED])
    assert labels.count() == WORKERS * CALLS
    assert len({lease for *_, lease in handed}) == WORKERS * CALLS
    states = dict(
        Lease.objects.filter(project=project).values_list("state").annotate(n=Count("id"))
    )
    assert states == {LeaseState.LABELED: WORKERS * CALLS}

    # The open slots and the label counts kept along the way match a recount.
    labeled_by = dict(
        Lease.objects.filter(project=project, state=LeaseState.LABELED)
        .values_list("case_id")
        .annotate(n=Count("id"))
    )
    for case_id, wanted_labels, open_slots in Case.objects.filter(project=project).values_list(
        "pk", "queue_wanted", "queue_open"
    ):
        assert open_slots == max(wanted_labels - labeled_by.get(case_id, 0), 0)
    kept = {
        value: n
        for value, n in LabelCount.objects.filter(project=project).values_list("value", "cases")
        if n
    }
    recount = dict(
        Case.objects.filter(project=project)
        .values_list("current_label")
        .annotate(n=Count("id"))
        .values_list("current_label", "n")
    )
    assert kept == recount
