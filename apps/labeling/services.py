"""Writes to the label history: the only code that appends labels or moves a current label."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_insert_sql, audit_record
from apps.cases import bulk
from apps.cases.columns import MappingError
from apps.cases.importing import ImportIssue, ImportRejected
from apps.cases.mapping import file_with_mapping
from apps.cases.models import Case, ImportBatch
from apps.cases.services import ImportResult, case_import
from apps.core import tasks as task_queue
from apps.labeling import selectors, strategies
from apps.labeling.models import (
    CaseScore,
    Label,
    LabelCount,
    LabelKind,
    LabelTask,
    Lease,
    LeaseState,
    QueueBuild,
    QueueSettings,
    QueueStrategy,
    Skip,
    TaskKind,
    TaskStatus,
    UncertaintyMeasure,
)
from apps.projects import services as project_services
from apps.projects.models import ROLE_RANK, Membership, Project, Role

logger = logging.getLogger(__name__)


# The label submit and the next-case hand-out are the two requests clinicians make all day.
# Their statements are written as SQL: each ORM query costs about a millisecond of Python to
# compile here, which alone would take the submit past its 11 ms budget.
CASE_TABLE = Case._meta.db_table
LABEL_TABLE = Label._meta.db_table
LEASE_TABLE = Lease._meta.db_table
TASK_TABLE = LabelTask._meta.db_table
COUNT_TABLE = LabelCount._meta.db_table
SETTINGS_TABLE = QueueSettings._meta.db_table
PROJECT_TABLE = Project._meta.db_table
USER_TABLE = User._meta.db_table


def _sql(sql: str, params: list | tuple = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


Statement = tuple[str, list]


def _sql_batch(statements: list[Statement | None]) -> list[list[tuple]]:
    """Run statements in order and return each one's rows.

    On PostgreSQL they go in one round trip (psycopg's pipeline mode): the label submit's
    writes depend on nothing but the locking read before them, and waiting for each reply in
    turn was most of a submit's time. An error in any of them raises here, as Django's error,
    and the surrounding transaction rolls back as usual. `None` entries are skipped.
    """
    statements = [s for s in statements if s is not None]
    if not bulk.is_postgresql() or len(statements) < 2:
        return [_sql(sql, params) for sql, params in statements]
    connection.ensure_connection()
    cursors = [connection.cursor() for _ in statements]
    try:
        with connection.wrap_database_errors, connection.connection.pipeline():
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
        return [c.fetchall() if c.description else [] for c in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def _stamp(when):
    """A datetime as the database backend stores it (SQLite compares ISO text)."""
    return connection.ops.adapt_datetimefield_value(when)


def _labels_changed_sql(project_id: int, count: int) -> Statement:
    # The retrain scheduler (modeling) compares this version with its last run's; labeling
    # never calls modeling code.
    return (
        f"UPDATE {PROJECT_TABLE} SET labels_version = labels_version + %s, last_labeled_at = %s"
        f" WHERE id = %s",
        [count, _stamp(timezone.now()), project_id],
    )


def _labels_changed(project_id: int, count: int) -> None:
    _sql(*_labels_changed_sql(project_id, count))


class StaleLabel(ValidationError):
    """The case was labeled by someone else after the form was shown."""


def _count_move(project_id: int, old: str, new: str, cases: int = 1) -> None:
    """Move `cases` from one label value's count to another's ('' = unlabeled)."""
    statement = _count_move_sql(project_id, old, new, cases)
    if statement is not None:
        _sql(*statement)


def _count_move_sql(project_id: int, old: str, new: str, cases: int = 1) -> Statement | None:
    if old == new or cases == 0:
        return None
    # One upsert for both rows, in the same order every time, so two transactions moving
    # counts never wait on each other crosswise; a class's first label needs no row made.
    moves = sorted([(old, -cases), (new, cases)])
    return (
        f"INSERT INTO {COUNT_TABLE} (project_id, value, cases) VALUES (%s, %s, %s), (%s, %s, %s)"
        f" ON CONFLICT (project_id, value)"
        f" DO UPDATE SET cases = {COUNT_TABLE}.cases + excluded.cases",
        [project_id, moves[0][0], moves[0][1], project_id, moves[1][0], moves[1][1]],
    )


def _counts_add(project_id: int, counts: dict[str, int]) -> None:
    for value, cases in sorted(counts.items()):
        updated = LabelCount.objects.filter(project_id=project_id, value=value).update(
            cases=F("cases") + cases
        )
        if not updated:
            LabelCount.objects.create(project_id=project_id, value=value, cases=cases)


def label_counts_begin(*, project: Project, unlabeled: int) -> None:
    """The label counts of a project whose cases arrived unlabeled other than by an import
    (a project derived from another's)."""
    _counts_add(project.pk, dict.fromkeys(project.classes, 0) | {"": unlabeled})


def _lock_case(case_id: int) -> tuple:
    """Lock a case row (PostgreSQL; SQLite's write transactions are serial already) and read
    (current_label, queue_wanted, external_id, project_id).

    Whatever changes a case's leases locks the case first, then its leases: one lock order,
    so these transactions cannot deadlock each other.
    """
    lock = " FOR UPDATE" if bulk.is_postgresql() else ""
    ((row),) = _sql(
        f"SELECT current_label, queue_wanted, external_id, project_id FROM {CASE_TABLE}"
        f" WHERE id = %s{lock}",
        [case_id],
    )
    return row


def _recount_slots(case_id: int, new_label: str | None = None) -> None:
    _sql(*_recount_slots_sql(case_id, new_label))


def _recount_slots_sql(case_id: int, new_label: str | None = None) -> Statement:
    """Set how many labels the case still takes from new clinicians, from its leases:
    wanted − given − held, never below 0. For an overlap case, given is the number of people
    who labeled it independently (a task's answer is not an opinion); for any other case, 1
    once it has a label, whoever gave it. Held is what the queue leases out now.

    Recounted (with the case locked) rather than incremented, so that late labels, overlap and
    undo cannot make the count drift. With `new_label`, the same statement also sets the
    case's current label.
    """
    greatest = "GREATEST" if bulk.is_postgresql() else "MAX"
    label = "current_label" if new_label is None else "%s"
    sets = "" if new_label is None else "current_label = %s, "
    params = [] if new_label is None else [new_label]
    params += [case_id] + ([] if new_label is None else [new_label]) + [case_id, case_id]
    return (
        f"UPDATE {CASE_TABLE} SET {sets}queue_open = {greatest}(0, queue_wanted"
        f" - CASE WHEN queue_wanted > 1 THEN (SELECT COUNT(DISTINCT user_id) FROM {LEASE_TABLE}"
        f"    WHERE case_id = %s AND state = 'labeled' AND task_id IS NULL)"
        f"   WHEN {label} <> '' THEN 1 ELSE 0 END"
        f" - (SELECT COUNT(*) FROM {LEASE_TABLE}"
        f"    WHERE case_id = %s AND state = 'active' AND task_id IS NULL))"
        f" WHERE id = %s",
        params,
    )


def _close_lease_row(lease_id: int, state: str, now) -> bool:
    """End a lease if it is still active; the caller recounts its case's slots."""
    return bool(_sql(*_close_lease_row_sql(lease_id, state, now)))


def _close_lease_row_sql(lease_id: int, state: str, now) -> Statement:
    return (
        f"UPDATE {LEASE_TABLE} SET state = %s, closed_at = %s"
        f" WHERE id = %s AND state = 'active' RETURNING id",
        [state, _stamp(now), lease_id],
    )


def _close_lease(lease: Lease, state: str, now) -> None:
    """End an active lease of any case: lock the case, close, recount."""
    _lock_case(lease.case_id)
    _close_lease_row(lease.pk, state, now)
    _recount_slots(lease.case_id)
    lease.state = state
    lease.closed_at = now


def _release_task_holders(task_id: int, now) -> None:
    """A task that is done or cancelled frees whoever else holds it."""
    _sql(
        f"UPDATE {LEASE_TABLE} SET state = 'released', closed_at = %s"
        f" WHERE task_id = %s AND state = 'active'",
        [_stamp(now), task_id],
    )


def _adjudication_open(case_id: int, project_id: int, created_by: User, reason: str) -> None:
    """Open an adjudication of the case for the reviewers' pool, unless one is open."""
    if LabelTask.objects.filter(
        case_id=case_id, kind=TaskKind.ADJUDICATE, status=TaskStatus.OPEN
    ).exists():
        return
    LabelTask.objects.create(
        project_id=project_id,
        case_id=case_id,
        kind=TaskKind.ADJUDICATE,
        assignee=None,
        reason=reason[:500],
        created_by=created_by,
    )


def _sync_adjudication(case_id: int, project_id: int, wanted: int, now) -> None:
    """Keep an overlap case's adjudication in step with its independent labels: open one when
    all the labels wanted are in and they disagree, cancel an open one when they no longer do
    (a label undone or corrected). A case already adjudicated stays settled."""
    labelers = _sql(
        f"SELECT COUNT(DISTINCT user_id) FROM {LEASE_TABLE}"
        f" WHERE case_id = %s AND state = 'labeled' AND task_id IS NULL",
        [case_id],
    )[0][0]
    opinions = selectors.case_opinions(case_id=case_id)
    disputed = labelers >= wanted and len(set(opinions.values())) > 1
    tasks = LabelTask.objects.filter(case_id=case_id, kind=TaskKind.ADJUDICATE)
    open_task = tasks.filter(status=TaskStatus.OPEN).first()
    if disputed and open_task is None and not tasks.filter(status=TaskStatus.DONE).exists():
        LabelTask.objects.create(
            project_id=project_id,
            case_id=case_id,
            kind=TaskKind.ADJUDICATE,
            reason=f"The {len(opinions)} clinicians who labeled it independently disagree.",
        )
    elif not disputed and open_task is not None:
        open_task.status = TaskStatus.CANCELLED
        open_task.closed_at = now
        open_task.save(update_fields=["status", "closed_at"])
        _release_task_holders(open_task.pk, now)


def _task_settled_message(task: LabelTask, *, author: User, hidden: bool) -> str:
    """Why a label naming an already settled task was not saved: two people settled it at
    once, or the person's other tab did."""
    settled = ""
    if task.label_id:
        winner = Label.objects.select_related("author").get(pk=task.label_id)
        if winner.author_id == author.pk:
            who = "you, in another tab or window,"
        else:
            # Blind: whoever answered may be the one whose label was questioned.
            who = "someone else" if hidden else winner.author.username
        given = "answered it" if hidden else f"gave {winner.value}"
        settled = (
            f": {who} {given} at {timezone.localtime(winner.created_at):%H:%M}. "
            "Your label was not saved"
        )
    return (
        f"This {task.get_kind_display().lower()} task is already "
        f"{task.get_status_display().lower()}{settled}."
    )


def _changed_meanwhile_message(
    external_id: str, *, by_you: bool, who: str | None, value: str | None, hidden: bool
) -> str:
    """Why a label was refused as stale. `hidden`: the person must not learn the case's labels
    (a blind relabel), so neither the value nor its author is named."""
    if by_you:
        now = "" if hidden else f": it is now {value or 'no label'}"
        return (
            f"You labeled case {external_id} in another tab or window while this page was "
            f"open{now}. This label was not saved; give it again if you meant to change it."
        )
    if hidden:
        return (
            f"Case {external_id} was labeled by someone else while you looked at it. Your "
            "label was not saved; the case is shown as it is now, label it again to give yours."
        )
    return (
        f"Case {external_id} was changed by {who or 'someone'} while you looked at it: it is "
        f"now {value or 'no label'}. Your label was not saved; label it again to replace theirs."
    )


def label_record(
    *,
    case: Case,
    value: str,
    author: User,
    kind: str = LabelKind.LABELED,
    note: str = "",
    seen_label_id: int | None = None,
    task: LabelTask | None = None,
) -> Label:
    """Append a label to a case's history and make it the case's current label.

    `seen_label_id` is the newest label row the person saw (0 for none): when the case has been
    labeled since, nothing is recorded and StaleLabel says by whom. The same label sent twice in
    a row by the same person (a double click, a retried request) is recorded once.

    An overlap case (one the project wants several clinicians to label) takes each clinician's
    first label as an independent opinion, whatever others said meanwhile. A label given under
    a relabel or adjudication task (passed, or held by lease) is of that kind and closes it.
    """
    value = value.strip()
    classes = list(case.project.classes)
    if value not in classes:
        raise ValidationError(
            {"value": f"Unknown label {value!r}; this project's classes are {', '.join(classes)}."}
        )
    if kind not in (LabelKind.LABELED, LabelKind.RELABELED, LabelKind.ADJUDICATED):
        raise ValidationError({"kind": f"Labels of kind {kind!r} are not recorded by hand."})
    now = timezone.now()
    lock = " FOR UPDATE OF c" if bulk.is_postgresql() else ""
    with transaction.atomic():
        # One statement: lock the case (so that concurrent labels cannot leave current_label
        # pointing at a row that is not the newest) and read its newest label and the author's
        # leases of it.
        (
            current_label,
            wanted,
            external_id,
            project_id,
            newest_id,
            newest_value,
            newest_kind,
            newest_author,
            newest_username,
            lease_id,
            lease_task_id,
            labeled_before,
        ) = _sql(
            f"SELECT c.current_label, c.queue_wanted, c.external_id, c.project_id,"
            f" l.id, l.value, l.kind, l.author_id, u.username,"
            f" (SELECT id FROM {LEASE_TABLE} WHERE case_id = c.id AND user_id = %s"
            f"  AND state = 'active' LIMIT 1),"
            f" (SELECT task_id FROM {LEASE_TABLE} WHERE case_id = c.id AND user_id = %s"
            f"  AND state = 'active' LIMIT 1),"
            f" (SELECT COUNT(*) FROM {LEASE_TABLE} WHERE case_id = c.id AND user_id = %s"
            f"  AND state = 'labeled')"
            f" FROM {CASE_TABLE} c"
            f" LEFT JOIN {LABEL_TABLE} l"
            f"  ON l.id = (SELECT MAX(id) FROM {LABEL_TABLE} WHERE case_id = c.id)"
            f" LEFT JOIN {USER_TABLE} u ON u.id = l.author_id"
            f" WHERE c.id = %s{lock}",
            [author.pk, author.pk, author.pk, case.pk],
        )[0]
        newest_id = newest_id or 0
        if task is None and lease_task_id is not None:
            task = LabelTask(pk=lease_task_id)
        hidden = False
        if task is not None:
            task = LabelTask.objects.select_for_update().get(pk=task.pk)
            if task.case_id != case.pk:
                raise ValidationError("That task is about another case.")
            # A blind relabel hides the case's labels from the person answering it, and so
            # does every message they get about it.
            hidden = task.kind == TaskKind.RELABEL and case.project.relabel_blind
            if task.status != TaskStatus.OPEN:
                raise StaleLabel(_task_settled_message(task, author=author, hidden=hidden))
            adjudicating = task.kind == TaskKind.ADJUDICATE
            kind = LabelKind.ADJUDICATED if adjudicating else LabelKind.RELABELED
        independent = task is None and wanted > 1 and not labeled_before
        if not independent and seen_label_id is not None and newest_id != seen_label_id:
            raise StaleLabel(
                _changed_meanwhile_message(
                    external_id,
                    by_you=newest_author == author.pk,
                    who=newest_username,
                    value=newest_value,
                    hidden=hidden,
                )
            )
        if (
            task is None
            and newest_author == author.pk
            and newest_value == value
            and newest_kind in (LabelKind.LABELED, LabelKind.RELABELED, LabelKind.ADJUDICATED)
        ):
            return Label.objects.select_related("author").get(pk=newest_id)
        if kind == LabelKind.LABELED and current_label and not independent:
            kind = LabelKind.RELABELED
        stamp = _stamp(now)
        note = note[:500]
        insert: Statement = (
            f"INSERT INTO {LABEL_TABLE} (project_id, case_id, value, kind, author_id, note,"
            f" undoes_id, import_batch_id, created_at)"
            f" VALUES (%s, %s, %s, %s, %s, %s, NULL, NULL, %s) RETURNING id",
            [project_id, case.pk, value, kind, author.pk, note, stamp],
        )
        lease_write: Statement | None = None
        if lease_id is not None:
            lease_write = _close_lease_row_sql(lease_id, LeaseState.LABELED, now)
        elif not labeled_before:
            # Labeled outside the queue (a correction, the API): it still counts as this
            # person's label of the case, and fills a slot the queue would have handed out.
            lease_write = (
                f"INSERT INTO {LEASE_TABLE} (project_id, case_id, user_id, task_id, state,"
                f" rank, expires_at, created_at, closed_at)"
                f" VALUES (%s, %s, %s, %s, %s, NULL, %s, %s, %s)",
                [project_id, case.pk, author.pk, task.pk if task else None, "labeled"]
                + [stamp] * 3,
            )
        # The writes depend only on the locking read above: one round trip on PostgreSQL.
        # The slot recount runs after the lease write, so it sees the lease closed.
        action = {
            LabelKind.RELABELED: AuditAction.RELABEL,
            LabelKind.ADJUDICATED: AuditAction.ADJUDICATE,
        }.get(kind, AuditAction.LABEL)
        (((label_id,),), *_) = _sql_batch(
            [
                insert,
                _count_move_sql(project_id, current_label, value),
                lease_write,
                _recount_slots_sql(case.pk, new_label=value),
                _labels_changed_sql(project_id, 1),
                # In the same round trip: the audit event commits with the label.
                audit_insert_sql(
                    action=action,
                    actor=author,
                    summary=f"{kind} case {case.pk}: {value}"
                    + (f" (was {current_label})" if current_label else ""),
                    project_id=project_id,
                    object_type="case",
                    object_id=case.pk,
                ),
            ]
        )
        label = Label(
            pk=label_id,
            project_id=project_id,
            case_id=case.pk,
            value=value,
            kind=kind,
            author=author,
            note=note,
            created_at=now,
        )
        if task is not None:
            task.status = TaskStatus.DONE
            task.closed_by = author
            task.closed_at = now
            task.label = label
            task.save(update_fields=["status", "closed_by", "closed_at", "label"])
            _release_task_holders(task.pk, now)
            if task.kind == TaskKind.RELABEL and current_label and current_label != value:
                _adjudication_open(
                    case.pk,
                    project_id,
                    author,
                    f"{author.username} relabeled it {value}; it was {current_label}"
                    + (
                        " (imported)"
                        if newest_kind == LabelKind.IMPORTED
                        else f" ({newest_username})"
                        if newest_username
                        else ""
                    )
                    + ". Your label settles it.",
                )
        elif wanted > 1 and (independent or labeled_before):
            _sync_adjudication(case.pk, project_id, wanted, now)
    case.current_label = value
    return label


def label_undo_last(*, project: Project, author: User) -> Label:
    """Undo `author`'s newest label in `project` by appending an `undone` row.

    The case goes back to the value it had before, and back to the author under a fresh lease
    so that nobody else is handed it meanwhile; nothing is deleted.
    """
    now = timezone.now()
    with transaction.atomic():
        undone = Label.objects.filter(project=project, author=author, kind=LabelKind.UNDONE)
        last = (
            Label.objects.filter(
                project=project,
                author=author,
                kind__in=[LabelKind.LABELED, LabelKind.RELABELED],
            )
            .exclude(pk__in=undone.values("undoes_id"))
            .order_by("-id")
            .first()
        )
        if last is None:
            raise ValidationError("You have no label to undo in this project.")
        _lock_case(last.case_id)
        case = Case.objects.get(pk=last.case_id)
        newest = Label.objects.filter(case=case).order_by("-id").first()
        if newest is None or newest.pk != last.pk:
            raise ValidationError(
                f"Case {case.external_id} was labeled again after your label; "
                "relabel it instead of undoing."
            )
        previous = Label.objects.filter(case=case, id__lt=last.pk).order_by("-id").first()
        restored = previous.value if previous else ""
        undo = Label.objects.create(
            project=project,
            case=case,
            value=restored,
            kind=LabelKind.UNDONE,
            author=author,
            undoes=last,
        )
        _count_move(project.pk, case.current_label, restored)
        audit_record(
            action=AuditAction.UNDO,
            actor=author,
            summary=f"Undid label {last.pk} of case {case.pk}: {last.value} → {restored or 'none'}",
            project_id=project.pk,
            object_type="case",
            object_id=case.pk,
        )
        case.current_label = restored
        case.save(update_fields=["current_label"])
        LabelTask.objects.filter(label=last, status=TaskStatus.DONE).update(
            status=TaskStatus.OPEN, closed_by=None, closed_at=None, label=None
        )
        undone_ids = Label.objects.filter(case=case, kind=LabelKind.UNDONE).values("undoes_id")
        still_labeled = (
            Label.objects.filter(
                case=case, author=author, kind__in=[LabelKind.LABELED, LabelKind.RELABELED]
            )
            .exclude(pk__in=undone_ids)
            .exists()
        )
        if not still_labeled:
            # The case is the author's again, under a fresh lease, so that nobody else is
            # handed it meanwhile; the case they held goes back to the queue.
            for held in Lease.objects.filter(
                project=project, user=author, state=LeaseState.ACTIVE
            ).exclude(case=case):
                _close_lease(held, LeaseState.RELEASED, now)
            lease = (
                Lease.objects.filter(case=case, user=author, state=LeaseState.LABELED)
                .order_by("-id")
                .first()
            )
            if lease is not None:
                lease.state = LeaseState.ACTIVE
                lease.closed_at = None
                lease.expires_at = now + _lease_length(project.pk)
                lease.save(update_fields=["state", "closed_at", "expires_at"])
        _recount_slots(case.pk)
        if case.queue_wanted > 1:
            _sync_adjudication(case.pk, project.pk, case.queue_wanted, now)
        _labels_changed(project.pk, 1)
    return undo


def case_skip(*, case: Case, user: User) -> Skip:
    """The person passes on this case: it goes back to the queue for others, and is not
    offered to them again. A skipped task stays open for others (or its assignee's list)."""
    now = timezone.now()
    with transaction.atomic():
        _lock_case(case.pk)
        lease = Lease.objects.filter(case=case, user=user, state=LeaseState.ACTIVE).first()
        if lease is not None:
            _close_lease_row(lease.pk, LeaseState.SKIPPED, now)
        else:
            Lease.objects.create(
                project_id=case.project_id,
                case=case,
                user=user,
                state=LeaseState.SKIPPED,
                expires_at=now,
                closed_at=now,
            )
        _recount_slots(case.pk)
        return Skip.objects.create(case=case, user=user)


def member_remove(*, project: Project, username: str, removed_by: User) -> Membership:
    """Take a person out of a project and hand their work back: the cases they hold return to
    the queue and the tasks assigned to them to the pool, so that nothing waits on someone who
    can no longer open the project. Their labels stay in the history."""
    now = timezone.now()
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        held = list(
            Lease.objects.filter(project=project, user=user, state=LeaseState.ACTIVE)
            if user is not None
            else []
        )
        for lease in held:
            _close_lease(lease, LeaseState.RELEASED, now)
        pooled = (
            LabelTask.objects.filter(project=project, assignee=user, status=TaskStatus.OPEN).update(
                assignee=None
            )
            if user is not None
            else 0
        )
        return project_services.membership_remove(
            project=project,
            username=username,
            removed_by=removed_by,
            detail={"cases_released": len(held), "tasks_to_pool": pooled},
        )


def lease_release(*, project: Project, user: User) -> Lease | None:
    """Give back the case `user` holds in `project` without labeling or skipping it."""
    with transaction.atomic():
        lease = Lease.objects.filter(project=project, user=user, state=LeaseState.ACTIVE).first()
        if lease is not None:
            _close_lease(lease, LeaseState.RELEASED, timezone.now())
    return lease


def _lease_length(project_id: int) -> timedelta:
    found = _sql(
        f"SELECT lease_minutes FROM {SETTINGS_TABLE} WHERE project_id = %s"
        f" ORDER BY id DESC LIMIT 1",
        [project_id],
    )
    return timedelta(minutes=found[0][0] if found else QueueSettings().lease_minutes)


def leases_expire(*, project_id: int, now=None) -> int:
    """Return the cases of expired leases to the queue.

    On PostgreSQL only the cases are locked, skipping any that a label being recorded holds
    right now (that label closes the lease itself); callers run this in a transaction of its
    own, so that no other lock is held while it waits.
    """
    now = now or timezone.now()
    lock = " FOR UPDATE OF c SKIP LOCKED" if bulk.is_postgresql() else ""
    expired = _sql(
        f"SELECT l.id, l.case_id FROM {LEASE_TABLE} l"
        f" JOIN {CASE_TABLE} c ON c.id = l.case_id"
        f" WHERE l.project_id = %s AND l.state = 'active' AND l.expires_at <= %s{lock}",
        [project_id, _stamp(now)],
    )
    for lease_id, _ in expired:
        _close_lease_row(lease_id, LeaseState.EXPIRED, now)
    for case_id in sorted({case_id for _, case_id in expired}):
        _recount_slots(case_id)
    return len(expired)


def _lease_insert(
    *,
    project_id: int,
    case: Case,
    user: User,
    expires_at,
    now,
    task: LabelTask | None = None,
    rank: int | None = None,
) -> Lease | None:
    """Insert an active lease; None when the person already holds one (a request of theirs
    running at the same moment, e.g. a double press, got there first)."""
    rows = _sql(
        f"INSERT INTO {LEASE_TABLE} (project_id, case_id, user_id, task_id, state, rank,"
        f" expires_at, created_at, closed_at) VALUES (%s, %s, %s, %s, 'active', %s, %s, %s, NULL)"
        f" ON CONFLICT (project_id, user_id) WHERE state = 'active' DO NOTHING RETURNING id",
        [
            project_id,
            case.pk,
            user.pk,
            task.pk if task else None,
            rank,
            _stamp(expires_at),
            _stamp(now),
        ],
    )
    if not rows:
        return None
    return Lease(
        pk=rows[0][0],
        project_id=project_id,
        case=case,
        user=user,
        task=task,
        state=LeaseState.ACTIVE,
        rank=rank,
        expires_at=expires_at,
        created_at=now,
    )


def _held_lease(project: Project, user: User) -> Lease | None:
    held = _sql(
        f"SELECT id FROM {LEASE_TABLE} WHERE project_id = %s AND user_id = %s AND state = 'active'",
        [project.pk, user.pk],
    )
    if not held:
        return None
    lease = Lease.objects.select_related("case", "task").get(pk=held[0][0])
    lease.case.project = project
    return lease


def _queue_status(project: Project, user: User, now) -> tuple:
    """(held lease id, lease minutes, any open task, any expired lease) in one statement."""
    return _sql(
        f"SELECT (SELECT id FROM {LEASE_TABLE} WHERE project_id = %s AND user_id = %s"
        f"  AND state = 'active' LIMIT 1),"
        f" (SELECT lease_minutes FROM {SETTINGS_TABLE} WHERE project_id = %s"
        f"  ORDER BY id DESC LIMIT 1),"
        f" (SELECT 1 FROM {TASK_TABLE} WHERE project_id = %s AND status = 'open' LIMIT 1),"
        f" (SELECT 1 FROM {LEASE_TABLE} WHERE project_id = %s AND state = 'active'"
        f"  AND expires_at <= %s LIMIT 1)",
        [project.pk, user.pk, project.pk, project.pk, project.pk, _stamp(now)],
    )[0]


def queue_next(*, project: Project, user: User, role: str, now=None) -> Lease | None:
    """Hand `user` their next case under a lease, or None when nothing is waiting for them.

    In order: the case they already hold (a reload shows it again); their open relabel and
    adjudication tasks, then the pool's; then the queue's first case with an open slot that
    they have neither labeled nor skipped. On PostgreSQL, clinicians asking at the same moment
    skip each other's locked rows instead of waiting, so no case is handed out twice beyond
    the overlap asked for.
    """
    now = now or timezone.now()
    held_id, minutes, has_tasks, has_expired = _queue_status(project, user, now)
    if has_expired:
        # Expired leases go back first, in a transaction of their own, so that no lock is
        # held while waiting for a case below.
        with transaction.atomic():
            leases_expire(project_id=project.pk, now=now)
        held_id, minutes, has_tasks, _ = _queue_status(project, user, now)
    expires_at = now + timedelta(minutes=minutes or QueueSettings().lease_minutes)
    with transaction.atomic():
        if held_id is not None:
            held = _held_lease(project, user)
            if held is not None and (held.task is None or held.task.status == TaskStatus.OPEN):
                return held
            if held is not None:
                _close_lease(held, LeaseState.RELEASED, now)  # its task was settled meanwhile
        task = _task_take(project=project, user=user, role=role) if has_tasks else None
        if task is not None:
            lease = _lease_insert(
                project_id=project.pk,
                case=task.case,
                user=user,
                task=task,
                expires_at=expires_at,
                now=now,
            )
            return lease or _held_lease(project, user)
        case = selectors.queue_candidate(project=project, user=user, skip_locked=True)
        if case is None and bulk.is_postgresql():
            # Every open case is locked right now (a batch of the queue being re-ranked, or
            # other clinicians): wait for one instead of saying the queue is empty.
            case = selectors.queue_candidate(project=project, user=user, skip_locked=False)
        if case is None:
            return None
        lease = _lease_insert(
            project_id=project.pk,
            case=case,
            user=user,
            rank=case.queue_rank,
            expires_at=expires_at,
            now=now,
        )
        if lease is None:
            return _held_lease(project, user)
        _recount_slots(case.pk)
        case.queue_open = max(case.queue_open - 1, 0)
    return lease


def _task_take(*, project: Project, user: User, role: str) -> LabelTask | None:
    """The first task `user` may take, locked, and checked again after the lock: a lease
    taken by someone whose transaction ended just before ours is then seen."""
    passed: list[int] = []
    for _ in range(5):
        task = selectors.task_next_for(project=project, user=user, role=role, exclude=passed)
        if task is None:
            return None
        if not Lease.objects.filter(task=task, state=LeaseState.ACTIVE).exists():
            return task
        passed.append(task.pk)
    return None


def _gave_an_opinion(task: LabelTask, user: User) -> bool:
    return Label.objects.filter(
        case_id=task.case_id, author=user, kind__in=[LabelKind.LABELED, LabelKind.RELABELED]
    ).exists()


def task_claim(*, task: LabelTask, user: User, role: str) -> Lease:
    """Take an open task under a lease (from a list or a link), releasing what `user` held."""
    now = timezone.now()
    with transaction.atomic():
        leases_expire(project_id=task.project_id, now=now)
    with transaction.atomic():
        task = LabelTask.objects.select_for_update().select_related("case").get(pk=task.pk)
        if task.status != TaskStatus.OPEN:
            raise ValidationError(
                f"This {task.get_kind_display().lower()} task is already "
                f"{task.get_status_display().lower()}."
            )
        task_answer_check(task=task, user=user, role=role)
        other = (
            Lease.objects.filter(task=task, state=LeaseState.ACTIVE)
            .exclude(user=user)
            .select_related("user")
            .first()
        )
        if other is not None:
            raise ValidationError(f"{other.user.username} is working on this task right now.")
        held = Lease.objects.filter(project_id=task.project_id, user=user, state=LeaseState.ACTIVE)
        for lease in held:
            if lease.task_id == task.pk:
                return lease
            _close_lease(lease, LeaseState.RELEASED, now)
        lease = _lease_insert(
            project_id=task.project_id,
            case=task.case,
            user=user,
            task=task,
            expires_at=now + _lease_length(task.project_id),
            now=now,
        )
        if lease is None:
            raise ValidationError("You took another case at the same moment; try again.")
        return lease


def task_answer_check(*, task: LabelTask, user: User, role: str) -> None:
    """Refuse a label that names a task the person may not answer."""
    if task.kind == TaskKind.ADJUDICATE:
        if ROLE_RANK[role] < ROLE_RANK[Role.REVIEWER]:
            raise ValidationError("Only reviewers adjudicate.")
        if _gave_an_opinion(task, user):
            raise ValidationError(
                "You gave one of the labels in dispute; another reviewer settles it."
            )
    if task.assignee_id not in (None, user.pk):
        raise ValidationError(f"This task is assigned to {task.assignee}.")


def task_open(
    *,
    case: Case,
    kind: str,
    created_by: User,
    reason: str = "",
    assignee: User | None = None,
) -> LabelTask:
    """Ask for a case to be relabeled (or adjudicated), by one member or by the pool."""
    if kind not in TaskKind.values:
        raise ValidationError({"kind": f"Unknown task kind {kind!r}; use relabel or adjudicate."})
    if assignee is not None:
        membership = Membership.objects.filter(project_id=case.project_id, user=assignee).first()
        if membership is None:
            raise ValidationError({"assignee": f"{assignee} is not a member of this project."})
        if kind == TaskKind.ADJUDICATE and ROLE_RANK[membership.role] < ROLE_RANK[Role.REVIEWER]:
            raise ValidationError(
                {"assignee": f"{assignee} is not a reviewer; only reviewers adjudicate."}
            )
    duplicate = ValidationError(f"Case {case.external_id} already has an open adjudication.")
    adjudicating = LabelTask.objects.filter(
        case=case, kind=TaskKind.ADJUDICATE, status=TaskStatus.OPEN
    ).exists()
    if kind == TaskKind.ADJUDICATE and adjudicating:
        raise duplicate
    if kind == TaskKind.RELABEL and adjudicating:
        # Another relabel now would make the dispute's account (who said what) stale.
        raise ValidationError(
            f"Case {case.external_id} has an open adjudication: a reviewer settles it first."
        )
    try:
        with transaction.atomic():
            task = LabelTask.objects.create(
                project_id=case.project_id,
                case=case,
                kind=kind,
                assignee=assignee,
                reason=reason[:500],
                created_by=created_by,
            )
            audit_record(
                action=AuditAction.RELABEL_TASK,
                actor=created_by,
                summary=f"Asked to {kind} case {case.pk}"
                + (f" by {assignee.username}" if assignee else " by the pool"),
                project_id=case.project_id,
                object_type="task",
                object_id=task.pk,
                detail={"reason": reason[:300]},
            )
            return task
    except IntegrityError:
        raise duplicate from None


def queue_settings_change(*, project: Project, changed_by: User, **fields: object) -> QueueSettings:
    """Record a new version of the project's queue settings and have the worker re-rank.

    Fields not given keep their current values.
    """
    current = selectors.queue_settings_current(project_id=project.pk)
    editable = [
        "strategy",
        "uncertainty_measure",
        "target_class",
        "mix_base",
        "random_share",
        "seed",
        "lease_minutes",
        "overlap_share",
        "overlap_labels",
        "note",
    ]
    unknown = sorted(set(fields) - set(editable))
    if unknown:
        raise ValidationError(f"Unknown queue settings: {', '.join(unknown)}.")
    values = {name: fields.get(name, getattr(current, name)) for name in editable}
    if "note" not in fields:
        values["note"] = ""
    new = QueueSettings(project=project, changed_by=changed_by, **values)
    errors: dict[str, str] = {}
    if new.strategy not in QueueStrategy.values:
        errors["strategy"] = f"Unknown strategy {new.strategy!r}."
    if new.uncertainty_measure not in UncertaintyMeasure.values:
        errors["uncertainty_measure"] = f"Unknown uncertainty measure {new.uncertainty_measure!r}."
    if new.mix_base not in (QueueStrategy.UNCERTAINTY, QueueStrategy.MINORITY):
        errors["mix_base"] = "A mix is based on uncertainty or minority-targeting."
    targets_class = new.strategy == QueueStrategy.MINORITY or (
        new.strategy == QueueStrategy.MIX and new.mix_base == QueueStrategy.MINORITY
    )
    if targets_class and new.target_class not in project.classes:
        errors["target_class"] = (
            f"Choose the rare class to target, one of {', '.join(project.classes)}."
        )
    if new.target_class and new.target_class not in project.classes:
        errors["target_class"] = f"{new.target_class!r} is not a class of this project."
    if not 0 <= float(new.random_share) <= 1:
        errors["random_share"] = "The random share is between 0 and 1."
    if not 1 <= int(new.lease_minutes) <= 24 * 60:
        errors["lease_minutes"] = "A lease lasts between 1 minute and 24 hours."
    if not 0 <= float(new.overlap_share) <= 1:
        errors["overlap_share"] = "The overlap share is between 0 and 1."
    if not 2 <= int(new.overlap_labels) <= 10:
        errors["overlap_labels"] = "Overlap cases get between 2 and 10 labels."
    if errors:
        raise ValidationError(errors)
    new.save()
    transaction.on_commit(lambda: _enqueue_queue_refresh(project.pk))
    return new


def queue_refresh_request(*, project_id: int) -> None:
    """Have the worker re-rank the project's queue once the current transaction commits."""
    transaction.on_commit(lambda: _enqueue_queue_refresh(project_id))


def _enqueue_queue_refresh(project_id: int) -> None:
    # By name: no import of the tasks module (which imports this one). When the broker is
    # down, the beat reconciler refreshes queues whose settings are newer than their last
    # build, so nothing is forgotten.
    task_queue.task_send("labeling.refresh_queue", project_id)


def _imported_labels_sink(author: User, tally: Counter):
    def store(batch: ImportBatch, case_ids: np.ndarray, values: list[str]) -> int:
        keep = [i for i, value in enumerate(values) if value]
        if not keep:
            return 0
        tally.update(values[i] for i in keep)
        if bulk.is_postgresql():
            now = timezone.now().isoformat()
            fixed = f"\t{LabelKind.IMPORTED.value}\t{author.pk}\t\t\\N\t{batch.pk}\t{now}\n"
            lines = [
                f"{batch.project_id}\t{case_ids[i]}\t{bulk.copy_text(values[i])}{fixed}"
                for i in keep
            ]
            bulk.copy_lines(
                Label._meta.db_table,
                [
                    "project_id",
                    "case_id",
                    "value",
                    "kind",
                    "author_id",
                    "note",
                    "undoes_id",
                    "import_batch_id",
                    "created_at",
                ],
                lines,
            )
        else:
            Label.objects.bulk_create(
                (
                    Label(
                        project_id=batch.project_id,
                        case_id=int(case_ids[i]),
                        value=values[i],
                        kind=LabelKind.IMPORTED,
                        author=author,
                        import_batch=batch,
                    )
                    for i in keep
                ),
                batch_size=1000,
            )
        return len(keep)

    return store


def cases_import(
    *,
    project: Project,
    path: Path,
    filename: str,
    imported_by: User,
    mapping: object = None,
) -> ImportResult:
    """Import a case file; its `label` column becomes imported labels, in one transaction.

    With a `mapping` (see apps/cases/columns.py), the file is first rewritten under it: its
    own id, date and label columns, headers as keys, yes/no as 1/0; what is not stored yet is
    reported in `ignored_columns`. The new cases join the queue: after the ranked ones until
    the worker re-ranks, with the project's overlap share of them wanting several labels.
    """
    if mapping is not None:
        return _cases_import_mapped(project, path, filename, imported_by, mapping)
    queue_settings = selectors.queue_settings_current(project_id=project.pk)

    def queue_wanted(external_ids: list[str]) -> np.ndarray:
        chosen = strategies.in_overlap(
            external_ids, queue_settings.overlap_share, queue_settings.seed
        )
        return np.where(chosen, queue_settings.overlap_labels, 1)

    tally: Counter = Counter()
    with transaction.atomic():
        result = case_import(
            project=project,
            path=path,
            filename=filename,
            imported_by=imported_by,
            label_sink=_imported_labels_sink(imported_by, tally),
            queue_wanted=queue_wanted,
        )
        # Every class gets its row now, so that labeling only ever updates counts.
        counts = dict.fromkeys(project.classes, 0) | {"": result.imported - result.labels}
        _counts_add(project.pk, counts | dict(tally))
        if result.labels:
            _labels_changed(project.pk, result.labels)
        audit_record(
            action=AuditAction.IMPORT,
            actor=imported_by,
            summary=f"Imported {result.imported} cases and {result.labels} labels",
            project_id=project.pk,
            object_type="import",
            object_id=result.batch.pk,
            detail={"file": filename[:200], "cases": result.imported, "labels": result.labels},
        )
        if queue_settings.strategy != QueueStrategy.IMPORT_ORDER:
            transaction.on_commit(lambda: _enqueue_queue_refresh(project.pk))
    return result


def _cases_import_mapped(
    project: Project, path: Path, filename: str, imported_by: User, mapping: object
) -> ImportResult:
    try:
        rewritten, not_stored = file_with_mapping(path, filename, mapping, list(project.classes))
    except MappingError as error:
        raise ImportRejected([ImportIssue(str(error))]) from None
    try:
        result = cases_import(
            project=project, path=rewritten, filename=filename, imported_by=imported_by
        )
    finally:
        rewritten.unlink(missing_ok=True)
    result.ignored_columns = [*not_stored, *result.ignored_columns]
    return result


def case_scores_replace(
    *,
    project_id: int,
    model_version_number: int,
    case_ids: np.ndarray,
    predicted_labels: list[str],
    confidences: np.ndarray,
    probabilities: np.ndarray | None = None,
) -> int:
    """Replace the project's case scores with a new model version's predictions.

    `probabilities` holds one row per case, a column per class in the project's order.
    """
    if probabilities is None:
        probabilities = np.full((len(case_ids), 0), np.nan)
    packed = np.ascontiguousarray(probabilities, dtype="<f8")
    with transaction.atomic():
        CaseScore.objects.filter(project_id=project_id).delete()
        if bulk.is_postgresql():
            # A million scores in one binary COPY: bulk_create would build a million objects.
            rows = len(case_ids)
            bulk.copy_binary(
                CaseScore._meta.db_table,
                [
                    "case_id",
                    "project_id",
                    "model_version_number",
                    "predicted_label",
                    "confidence",
                    "probabilities",
                    "updated_at",
                ],
                [
                    bulk.binary_int8(np.asarray(case_ids, dtype=np.int64), rows),
                    bulk.binary_int8(project_id, rows),
                    bulk.binary_int4(model_version_number, rows),
                    bulk.binary_text(list(predicted_labels)),
                    bulk.binary_float8(np.asarray(confidences, dtype=np.float64), rows),
                    bulk.binary_bytea_rows(packed),
                    bulk.binary_timestamptz(timezone.now(), rows),
                ],
            )
            return rows
        CaseScore.objects.bulk_create(
            (
                CaseScore(
                    case_id=int(case_id),
                    project_id=project_id,
                    model_version_number=model_version_number,
                    predicted_label=label,
                    confidence=float(confidence),
                    probabilities=packed[i].tobytes(),
                )
                for i, (case_id, label, confidence) in enumerate(
                    zip(case_ids, predicted_labels, confidences, strict=True)
                )
            ),
            batch_size=2000,
        )
    return len(case_ids)


RANK_BATCH = 5000


def queue_refresh(*, project_id: int) -> QueueBuild:
    """Re-rank the cases still waiting for labels under the project's queue settings.

    Runs in the worker: after a settings change, an import, or a new model version. Cases not
    yet touched by anyone get the overlap the settings ask for. Ranks are written in batches,
    best first, each in a short transaction of its own: a clinician asking for a case meanwhile
    is handed the first case no batch holds, and the head of the queue is in its new order
    after the first batch.
    """
    started = time.monotonic()
    queue_settings = selectors.queue_settings_current(project_id=project_id)
    if queue_settings.pk is None:
        queue_settings.save()
    project = Project.objects.get(pk=project_id)
    waiting = selectors.queue_waiting_cases(project_id=project_id)
    _overlap_update(waiting, queue_settings)
    order, strategy_used, note = _queue_order(project, queue_settings, waiting)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order), dtype=np.int64)
    changed = ranks != waiting.ranks
    # Best first: the head of the queue is right again after the first batch.
    positions = order[changed[order]]
    for start in range(0, len(positions), RANK_BATCH):
        chunk = positions[start : start + RANK_BATCH]
        _write_ranks(waiting.case_ids[chunk], ranks[chunk])
    build = QueueBuild.objects.create(
        project_id=project_id,
        settings=queue_settings,
        model_version_number=waiting.model_version_number,
        strategy_used=strategy_used,
        cases_ranked=len(order),
        note=note,
        seconds=round(time.monotonic() - started, 3),
    )
    logger.info(
        "queue of project %s re-ranked: %d cases (%d moved) in %.2f s",
        project_id,
        len(order),
        len(positions),
        build.seconds,
    )
    return build


def _overlap_update(waiting: selectors.WaitingCases, queue_settings: QueueSettings) -> None:
    untouched = waiting.untouched
    if not untouched.any():
        return
    chosen = strategies.in_overlap(
        waiting.external_ids[untouched], queue_settings.overlap_share, queue_settings.seed
    )
    wanted = np.where(chosen, queue_settings.overlap_labels, 1)
    differs = wanted != waiting.wanted[untouched]
    ids = waiting.case_ids[untouched][differs]
    values = wanted[differs]
    for value in np.unique(values).tolist():
        chunk_ids = ids[values == value].tolist()
        for start in range(0, len(chunk_ids), RANK_BATCH):
            Case.objects.filter(
                pk__in=chunk_ids[start : start + RANK_BATCH],
                current_label="",
                queue_open=F("queue_wanted"),
            ).update(queue_wanted=value, queue_open=value)


def _queue_order(
    project: Project, queue_settings: QueueSettings, waiting: selectors.WaitingCases
) -> tuple[np.ndarray, str, str]:
    strategy = queue_settings.strategy
    ids = waiting.case_ids
    if strategy == QueueStrategy.IMPORT_ORDER:
        return strategies.order_import(ids), strategy, ""
    if strategy == QueueStrategy.RANDOM:
        return strategies.order_random(ids, queue_settings.seed), strategy, ""
    if strategy == QueueStrategy.RECENT_FIRST:
        return strategies.order_recent_first(ids, waiting.occurred_at), strategy, ""
    if waiting.probabilities is None:
        note = "No model scores yet: in order of import until the first model version."
        return strategies.order_import(ids), QueueStrategy.IMPORT_ORDER, note
    base = strategy if strategy != QueueStrategy.MIX else queue_settings.mix_base
    if base == QueueStrategy.MINORITY:
        column = list(project.classes).index(queue_settings.target_class)
        primary = strategies.order_by_score(ids, waiting.probabilities[:, column])
    else:
        measure = queue_settings.uncertainty_measure or UncertaintyMeasure.MARGIN
        primary = strategies.order_by_score(
            ids, strategies.uncertainty(waiting.probabilities, measure)
        )
    if strategy != QueueStrategy.MIX:
        return primary, strategy, ""
    secondary = strategies.order_random(ids, queue_settings.seed)
    merged, _ = strategies.mix_orders(
        primary, secondary, queue_settings.random_share, queue_settings.seed
    )
    return merged, strategy, ""


def _write_ranks(case_ids: np.ndarray, ranks: np.ndarray) -> None:
    table = Case._meta.db_table
    with transaction.atomic():
        if bulk.is_postgresql():
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} AS c SET queue_rank = v.rank"
                    f" FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::bigint[]) AS rank) v"
                    f" WHERE c.id = v.id AND c.queue_rank <> v.rank",
                    [case_ids.tolist(), ranks.tolist()],
                )
        else:
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {table} SET queue_rank = %s WHERE id = %s",
                    list(zip(ranks.tolist(), case_ids.tolist(), strict=True)),
                )


def queue_refresh_due() -> list[int]:
    """Enqueue a re-rank for each project whose queue settings are newer than its last
    build: a change whose message was lost with the broker is picked up here."""
    due = selectors.queue_projects_due()
    for project_id in due:
        _enqueue_queue_refresh(project_id)
    return due


def labels_export(
    *, project: Project, exported_by: User, what: str, file_format: str
) -> tuple[bytes, str]:
    """The project's current labels ('labels') or full label history ('history') as CSV or
    Parquet, with the export in the audit log. Returns (body, content type)."""
    from apps.labeling.exports import frame_to_csv, frame_to_parquet

    frames = {
        "labels": selectors.current_labels_frame,
        "history": selectors.label_history_frame,
    }
    if what not in frames or file_format not in ("csv", "parquet"):
        raise ValidationError("Export 'labels' or 'history' as csv or parquet.")
    frame = frames[what](project=project)
    if file_format == "csv":
        body, content_type = frame_to_csv(frame), "text/csv; charset=utf-8"
    else:
        body, content_type = frame_to_parquet(frame), "application/vnd.apache.parquet"
    audit_record(
        action=AuditAction.EXPORT,
        actor=exported_by,
        summary=f"Exported the {what} ({len(frame)} rows, {file_format})",
        project_id=project.pk,
        object_type=what,
    )
    return body, content_type
