"""Random sequences of queue operations by several people, checking after every step that
the queue's kept state matches what its history says.

Checked: each case's open slots (wanted − given − held), the current label against the newest
label row, the label counters against a recount, and that no lease is held on a settled task
or a task held twice. QUEUE_SEEDS and QUEUE_STEPS widen the search when hunting a bug.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.utils import timezone

from apps.accounts.models import User
from apps.cases.models import Case
from apps.labeling import selectors
from apps.labeling.models import (
    Label,
    LabelCount,
    LabelKind,
    LabelTask,
    Lease,
    LeaseState,
    TaskStatus,
)
from apps.labeling.services import (
    case_skip,
    label_record,
    label_undo_last,
    lease_release,
    leases_expire,
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

STEPS = int(os.environ.get("QUEUE_STEPS", "60"))
SEEDS = range(int(os.environ.get("QUEUE_SEEDS", "8")))


def _member(project, username, role):
    User.objects.create_user(username=username, password="x-long-password")
    membership_set(project=project, username=username, role=role)
    return User.objects.get(username=username)


def check(project) -> list[str]:
    problems = []
    imported = set(
        Label.objects.filter(project=project, kind=LabelKind.IMPORTED).values_list(
            "case_id", flat=True
        )
    )
    for case in Case.objects.filter(project=project):
        leases = Lease.objects.filter(case=case)
        # Independent labels: a task's answer is not one.
        given = (
            leases.filter(state=LeaseState.LABELED, task__isnull=True)
            .values("user")
            .distinct()
            .count()
        )
        active = leases.filter(state=LeaseState.ACTIVE, task__isnull=True).count()
        given_now = given if case.queue_wanted > 1 else int(bool(case.current_label))
        expected = max(0, case.queue_wanted - given_now - active)
        if case.queue_open != expected:
            problems.append(
                f"case {case.pk} ({case.external_id}): queue_open={case.queue_open} expected "
                f"{expected} (wanted={case.queue_wanted} given={given} active={active} "
                f"imported={case.pk in imported})"
            )
        newest = Label.objects.filter(case=case).order_by("-id").first()
        if (newest.value if newest else "") != case.current_label:
            problems.append(f"case {case.pk}: current_label drift")
    kept = {
        v: n
        for v, n in LabelCount.objects.filter(project=project).values_list("value", "cases")
        if n
    }
    recount = dict(
        Case.objects.filter(project=project)
        .values_list("current_label")
        .annotate(n=Count("id"))
        .values_list("current_label", "n")
    )
    if kept != recount:
        problems.append(f"counts {kept} != {recount}")
    # A held lease on a task that is no longer open leaves its holder stuck on it.
    for lease in Lease.objects.filter(project=project, state=LeaseState.ACTIVE, task__isnull=False):
        if lease.task.status != TaskStatus.OPEN:
            problems.append(
                f"lease {lease.pk} of user {lease.user_id} active on {lease.task.status} task"
            )
    dup = (
        Lease.objects.filter(project=project, state=LeaseState.ACTIVE, task__isnull=False)
        .values("task")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    if dup:
        problems.append(f"task held twice {list(dup)}")
    return problems


def run_sequence(project, reviewer, users, import_frame, data_scientist, seed):
    rng = random.Random(seed)
    classes = list(project.classes)
    log = []
    cases = list(Case.objects.filter(project=project))
    roles = {u.pk: (Role.REVIEWER if u == reviewer else Role.CLINICIAN) for u in users}
    imported_batches = [0]
    for step in range(STEPS):
        user = rng.choice(users)
        role = roles[user.pk]
        op = rng.choice(
            [
                "next",
                "next",
                "label_held",
                "label_held",
                "label_any",
                "skip",
                "release",
                "undo",
                "expire",
                "age",
                "task_open",
                "task_claim",
                "refresh",
                "import",
            ]
        )
        detail = ""
        try:
            if op == "next":
                lease = queue_next(project=project, user=user, role=role)
                detail = f"-> case {lease.case_id} task {lease.task_id}" if lease else "-> None"
            elif op == "label_held":
                lease = selectors.lease_active_for(project=project, user=user)
                if lease is None:
                    continue
                case = Case.objects.get(pk=lease.case_id)
                case.project = project
                value = rng.choice(classes)
                label_record(case=case, value=value, author=user)
                detail = f"case {case.pk} = {value}"
            elif op == "label_any":
                case = rng.choice(cases)
                case.refresh_from_db()
                case.project = project
                value = rng.choice(classes)
                label_record(case=case, value=value, author=user)
                detail = f"case {case.pk} = {value}"
            elif op == "skip":
                lease = selectors.lease_active_for(project=project, user=user)
                case = (
                    Case.objects.get(pk=lease.case_id)
                    if lease and rng.random() < 0.7
                    else rng.choice(cases)
                )
                case_skip(case=case, user=user)
                detail = f"case {case.pk}"
            elif op == "release":
                lease = lease_release(project=project, user=user)
                detail = f"lease {lease.pk if lease else None}"
            elif op == "undo":
                undo = label_undo_last(project=project, author=user)
                detail = f"case {undo.case_id} back to {undo.value!r}"
            elif op == "expire":
                n = leases_expire(project_id=project.pk, now=timezone.now() + timedelta(days=1))
                detail = f"{n} expired"
            elif op == "age":
                # The user's lease runs out, but nobody has asked the queue yet.
                n = Lease.objects.filter(
                    project=project, user=user, state=LeaseState.ACTIVE
                ).update(expires_at=timezone.now() - timedelta(minutes=1))
                detail = f"{n} aged"
            elif op == "task_open":
                case = rng.choice(cases)
                assignee = rng.choice([None, None, rng.choice(users)])
                task = task_open(case=case, kind="relabel", created_by=reviewer, assignee=assignee)
                detail = f"task {task.pk} case {case.pk} for {assignee.pk if assignee else None}"
            elif op == "task_claim":
                tasks = list(LabelTask.objects.filter(project=project, status=TaskStatus.OPEN))
                if not tasks:
                    continue
                task = rng.choice(tasks)
                lease = task_claim(task=task, user=user, role=role)
                detail = f"task {task.pk} -> lease {lease.pk}"
            elif op == "refresh":
                queue_refresh(project_id=project.pk)
            elif op == "import":
                if imported_batches[0] >= 2:
                    continue
                imported_batches[0] += 1
                frame = make_cases_frame(3, seed=seed * 10 + step, labeled=0.5)
                frame["external_id"] = [f"s{seed}-{step}-{i}" for i in range(3)]
                import_frame(project, data_scientist, frame)
                cases = list(Case.objects.filter(project=project))
        except ValidationError as error:
            detail = f"refused: {error.messages[0][:60]}"
        log.append(f"{step}: user {user.pk} {op} {detail}")
        problems = check(project)
        if problems:
            return log, problems
    return log, []


@pytest.mark.parametrize("seed", list(SEEDS))
def test_random_sequences_keep_the_queue_consistent(
    project, reviewer, data_scientist, import_frame, seed
):
    queue_settings_change(
        project=project, changed_by=reviewer, overlap_share=0.5, overlap_labels=2, seed=seed
    )
    frame = make_cases_frame(6, seed=seed, labeled=0.3)
    import_frame(project, data_scientist, frame)
    users = [
        _member(project, "c1", Role.CLINICIAN),
        _member(project, "c2", Role.CLINICIAN),
        _member(project, "c3", Role.CLINICIAN),
        reviewer,
    ]
    log, problems = run_sequence(project, reviewer, users, import_frame, data_scientist, seed)
    assert not problems, "\n".join([*log[-25:], "PROBLEMS:", *problems])
