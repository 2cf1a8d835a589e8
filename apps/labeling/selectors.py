"""Reads of labels: the queue, the history, snapshots for training and exports."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

import krippendorff
import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models import Case as Case_
from django.db.models.functions import Coalesce, Now
from django.utils import timezone
from sklearn.metrics import cohen_kappa_score

from apps.accounts.models import User
from apps.cases import bulk
from apps.cases.models import Case
from apps.labeling import strategies
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
    TaskKind,
    TaskStatus,
)
from apps.projects.models import ROLE_RANK, Project, Role


def label_newest_id(*, case: Case) -> int:
    """The id of the case's newest label row, 0 when it has none: what a form was based on."""
    return Label.objects.filter(case=case).order_by("-id").values_list("id", flat=True).first() or 0


def case_score_get(*, case: Case) -> CaseScore | None:
    return CaseScore.objects.filter(case=case).first()


def label_history(*, case: Case) -> QuerySet[Label]:
    return Label.objects.filter(case=case).select_related("author").order_by("-id")


def _held_blind(user: User) -> QuerySet[Lease]:
    """The leases by which `user` holds a case under a relabel task of a project that relabels
    blind: they must not learn that case's labels (the questioned one, who gave it) until they
    have answered."""
    return Lease.objects.filter(
        user=user,
        state=LeaseState.ACTIVE,
        task__kind=TaskKind.RELABEL,
        project__relabel_blind=True,
    )


def blind_relabel_held(*, case_id: int, user: User) -> bool:
    """Whether `user` holds this case under a blind relabel task (see `_held_blind`)."""
    return _held_blind(user).filter(case_id=case_id).exists()


def case_labels_hidden_for(*, case: Case, user: User) -> bool:
    """Whether others' labels of `case` are hidden from `user` right now: an overlap case they
    have not labeled yet, or a blind relabel they hold. The one rule for the page, the API and
    the discussion."""
    return case_blind_for(case=case, user=user) or blind_relabel_held(case_id=case.pk, user=user)


def case_ids_hidden_for(*, user: User, case_ids: list[int]) -> set[int]:
    """Of these cases, those whose labels (and so their discussion) are hidden from `user`
    now, by the rule of `case_labels_hidden_for`, in two queries whatever their number: for
    lists such as the mentions page."""
    if not case_ids:
        return set()
    held = set(_held_blind(user).filter(case_id__in=case_ids).values_list("case_id", flat=True))
    independent = Lease.objects.filter(
        case=OuterRef("pk"), state=LeaseState.LABELED, task__isnull=True
    )
    overlap = (
        Case.objects.filter(pk__in=case_ids, queue_wanted__gt=1)
        .annotate(
            mine=Exists(independent.filter(user=user)),
            labelers=Subquery(
                independent.values("case").annotate(n=Count("user", distinct=True)).values("n")[:1]
            ),
        )
        .filter(mine=False)
        .filter(Q(labelers__isnull=True) | Q(labelers__lt=F("queue_wanted")))
    )
    return held | set(overlap.values_list("pk", flat=True))


def label_recent_for_user(*, project: Project, user: User, limit: int = 10) -> QuerySet[Label]:
    """The cases the user labeled last, each once, with the user's newest label of it.

    A correction and its undo are rows of their own; listing rows would show one case up to
    three times and push the other recent cases out of the list. A case the user now holds
    under a blind relabel is left out: its row would show the label being questioned (theirs,
    or after an undo, the value it went back to)."""
    mine = Label.objects.filter(author=user).exclude(kind=LabelKind.IMPORTED)
    newer_of_same_case = mine.filter(case=OuterRef("case"), id__gt=OuterRef("id"))
    return (
        mine.filter(project=project)
        .exclude(Exists(newer_of_same_case))
        .exclude(case_id__in=_held_blind(user).values("case_id"))
        .select_related("case")
        .order_by("-id")[:limit]
    )


@dataclass
class LabelProgress:
    total_cases: int
    labeled_cases: int
    per_class: dict[str, int]
    labeled_by_user_today: int
    labeled_by_user: int

    @property
    def percent(self) -> int:
        return round(100 * self.labeled_cases / self.total_cases) if self.total_cases else 0

    @property
    def class_shares(self) -> list[tuple[str, int, int]]:
        """(class, cases, percent of the labeled cases) in the project's class order."""
        labeled = self.labeled_cases or 1
        return [(cls, n, round(100 * n / labeled)) for cls, n in self.per_class.items()]


def _midnight():
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def label_progress(*, project: Project, user: User | None = None) -> LabelProgress:
    """Counts kept by the label services: a few rows read, whatever the project's size."""
    counts = dict(LabelCount.objects.filter(project=project).values_list("value", "cases"))
    total = sum(counts.values())
    per_class = {cls: counts.get(cls, 0) for cls in project.classes}
    mine = today = 0
    if user is not None:
        # Cases with a labeled lease of the person: correcting one's own label does not count
        # twice, and an undone label reopens its lease.
        own = Lease.objects.filter(project=project, user=user, state=LeaseState.LABELED)
        own_counts = own.aggregate(
            mine=Count("case", distinct=True),
            today=Count("case", distinct=True, filter=Q(closed_at__gte=_midnight())),
        )
        mine, today = own_counts["mine"], own_counts["today"]
    return LabelProgress(
        total_cases=total,
        labeled_cases=total - counts.get("", 0),
        per_class=per_class,
        labeled_by_user_today=today,
        labeled_by_user=mine,
    )


def case_totals(*, project_ids: list[int]) -> dict[int, int]:
    """Cases per project, from the kept counts (no count over the cases themselves)."""
    rows = (
        LabelCount.objects.filter(project_id__in=project_ids)
        .values("project_id")
        .annotate(n=Sum("cases"))
        .values_list("project_id", "n")
    )
    return dict(rows)


@dataclass
class ClinicianCounts:
    username: str
    cases: int
    today: int


def label_counts_by_clinician(*, project: Project) -> list[ClinicianCounts]:
    """Per person: the cases they labeled (in or out of the queue, undone ones not counted)."""
    rows = (
        Lease.objects.filter(project=project, state=LeaseState.LABELED)
        .values("user__username")
        .annotate(
            cases=Count("case", distinct=True),
            today=Count("case", distinct=True, filter=Q(closed_at__gte=_midnight())),
        )
        .order_by("-cases", "user__username")
    )
    return [ClinicianCounts(r["user__username"], r["cases"], r["today"]) for r in rows]


def label_watermark(*, project_id: int) -> int:
    """The newest label row id of the project (0 when none)."""
    return Label.objects.filter(project_id=project_id).aggregate(m=Max("id"))["m"] or 0


@dataclass
class LabelSnapshot:
    """Each labeled case's newest label row at or below a watermark."""

    case_ids: np.ndarray
    label_ids: np.ndarray
    values: np.ndarray  # object array of class names
    watermark: int
    # Each value's position among the project's classes, when the reader had it anyway.
    codes: np.ndarray | None = None

    def sha256(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.case_ids.astype("<i8").tobytes())
        digest.update(self.label_ids.astype("<i8").tobytes())
        digest.update("\n".join(self.values.tolist()).encode())
        return digest.hexdigest()

    def content_sha256(self) -> str:
        """Which case has which label, whatever rows say so: a relabel and its undo leave it
        unchanged, so a retrain on it would only repeat the last model."""
        digest = hashlib.sha256()
        digest.update(self.case_ids.astype("<i8").tobytes())
        digest.update("\n".join(self.values.tolist()).encode())
        return digest.hexdigest()

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"case_id": self.case_ids, "label_id": self.label_ids, "label": self.values}
        )


def label_snapshot(*, project_id: int, watermark: int) -> LabelSnapshot:
    if connection.vendor == "postgresql":
        classes = list(Project.objects.values_list("classes", flat=True).get(pk=project_id))
        snapshot = _label_snapshot_copy(project_id, watermark, classes)
        if snapshot is not None:
            return snapshot
    table = Label._meta.db_table
    sql = (
        f"SELECT l.case_id, l.id, l.value FROM {table} l JOIN ("
        f" SELECT case_id, MAX(id) AS newest FROM {table}"
        f" WHERE project_id = %s AND id <= %s GROUP BY case_id"
        f") m ON l.id = m.newest WHERE l.value <> '' ORDER BY l.case_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id, watermark])
        rows = cursor.fetchall()
    n = len(rows)
    return LabelSnapshot(
        case_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        label_ids=np.fromiter((r[1] for r in rows), dtype=np.int64, count=n),
        values=np.array([r[2] for r in rows], dtype=object),
        watermark=watermark,
    )


def _label_snapshot_copy(
    project_id: int, watermark: int, classes: list[str]
) -> LabelSnapshot | None:
    """PostgreSQL: every label row up to the watermark, concatenated by the server into three
    bytea values (case ids, label ids, the class as its position among the project's classes)
    that numpy reads as is; numpy then picks each case's newest row. Grouping and joining a
    million rows on the server, and a Python tuple per row here, cost seconds at that size.
    None when a value is not one of the classes (the general path then reads the values)."""
    table = Label._meta.db_table
    # 0: an empty value (a label withdrawn); -1: a value that is not a class of the project.
    sql = (
        f"SELECT string_agg(int8send(case_id), ''::bytea), string_agg(int8send(id), ''::bytea),"
        f" string_agg(int2send((CASE WHEN value = '' THEN 0"
        f" ELSE COALESCE(array_position(%s::text[], value::text), -1) END)::int2), ''::bytea)"
        f" FROM {table} WHERE project_id = %s AND id <= %s"
    )
    ((case_blob, id_blob, class_blob),) = bulk.fetch_binary(
        sql, [list(classes), project_id, watermark]
    )
    if case_blob is None:  # no label rows
        return LabelSnapshot(
            case_ids=np.empty(0, np.int64),
            label_ids=np.empty(0, np.int64),
            values=np.empty(0, dtype=object),
            watermark=watermark,
        )
    klass = np.frombuffer(class_blob, dtype=">i2").astype(np.int64)
    if (klass < 0).any():
        return None
    case_ids = np.frombuffer(case_blob, dtype=">i8").astype(np.int64)
    label_ids = np.frombuffer(id_blob, dtype=">i8").astype(np.int64)
    order = np.lexsort((label_ids, case_ids))
    case_ids, label_ids, klass = case_ids[order], label_ids[order], klass[order]
    newest = np.ones(len(case_ids), dtype=bool)
    newest[:-1] = case_ids[1:] != case_ids[:-1]
    keep = newest & (klass > 0)
    names = np.array(["", *classes], dtype=object)
    return LabelSnapshot(
        case_ids=case_ids[keep],
        label_ids=label_ids[keep],
        values=names[klass[keep]],
        watermark=watermark,
        codes=klass[keep] - 1,
    )


class LabelAuthorship(NamedTuple):
    """A project's label rows as arrays, in label id order."""

    ids: np.ndarray
    authors: np.ndarray
    times: np.ndarray  # created_at, UTC datetime64[us]
    import_batches: np.ndarray  # the import a row came from; 0 for a label a person gave


def label_rows_authorship(*, project_id: int, watermark: int) -> LabelAuthorship:
    """Who gave each of a project's label rows up to a watermark, when, and from which import.
    On PostgreSQL the server concatenates each column into bytea that numpy reads as is: a
    million rows as Python tuples with datetimes took seconds."""
    if connection.vendor == "postgresql":
        table = Label._meta.db_table
        sql = (
            f"SELECT string_agg(int8send(id), ''::bytea), string_agg(int8send(author_id),"
            f" ''::bytea), string_agg(timestamptz_send(created_at), ''::bytea),"
            f" string_agg(int8send(COALESCE(import_batch_id, 0)), ''::bytea)"
            f" FROM {table} WHERE project_id = %s AND id <= %s"
        )
        ((id_blob, author_blob, time_blob, batch_blob),) = bulk.fetch_binary(
            sql, [project_id, watermark]
        )
        if id_blob is None:
            empty = np.empty(0, np.int64)
            return LabelAuthorship(empty, empty, np.empty(0, "datetime64[us]"), empty)
        # The aggregates read the rows in one scan, so their values line up.
        ids = np.frombuffer(id_blob, dtype=">i8").astype(np.int64)
        authors = np.frombuffer(author_blob, dtype=">i8").astype(np.int64)
        batches = np.frombuffer(batch_blob, dtype=">i8").astype(np.int64)
        times = bulk.timestamps_from_send(time_blob)
        order = np.argsort(ids, kind="stable")
        return LabelAuthorship(ids[order], authors[order], times[order], batches[order])
    history = list(
        Label.objects.filter(project_id=project_id, pk__lte=watermark)
        .order_by("pk")
        .values_list("pk", "author_id", "created_at", "import_batch_id")
    )
    n = len(history)
    return LabelAuthorship(
        np.fromiter((r[0] for r in history), dtype=np.int64, count=n),
        np.fromiter((r[1] for r in history), dtype=np.int64, count=n),
        # UTC, without the zone numpy cannot hold.
        np.array([r[2].replace(tzinfo=None) for r in history], dtype="datetime64[us]"),
        np.fromiter((r[3] or 0 for r in history), dtype=np.int64, count=n),
    )


def current_labels_frame(*, project: Project) -> pd.DataFrame:
    """One row per labeled case: its current label, and who gave it and when."""
    table = Label._meta.db_table
    case_table = Case._meta.db_table
    user_table = User._meta.db_table
    sql = (
        f"SELECT c.external_id, c.occurred_at, l.value, l.kind, u.username, l.created_at, l.id"
        f" FROM {table} l"
        f" JOIN (SELECT case_id, MAX(id) AS newest FROM {table} WHERE project_id = %s"
        f"       GROUP BY case_id) m ON l.id = m.newest"
        f" JOIN {case_table} c ON c.id = l.case_id"
        f" JOIN {user_table} u ON u.id = l.author_id"
        f" WHERE l.value <> '' ORDER BY c.id"
    )
    columns = [
        "external_id",
        "occurred_at",
        "label",
        "kind",
        "labeled_by",
        "labeled_at",
        "label_id",
    ]
    return _frame(sql, [project.pk], columns)


def label_history_frame(*, project: Project) -> pd.DataFrame:
    """Every label row of the project, oldest first."""
    table = Label._meta.db_table
    case_table = Case._meta.db_table
    user_table = User._meta.db_table
    sql = (
        f"SELECT l.id, c.external_id, l.value, l.kind, u.username, l.created_at, l.note,"
        f" l.undoes_id, l.import_batch_id"
        f" FROM {table} l JOIN {case_table} c ON c.id = l.case_id"
        f" JOIN {user_table} u ON u.id = l.author_id"
        f" WHERE l.project_id = %s ORDER BY l.id"
    )
    columns = [
        "label_id",
        "external_id",
        "label",
        "kind",
        "author",
        "created_at",
        "note",
        "undoes_label_id",
        "import_batch_id",
    ]
    return _frame(sql, [project.pk], columns)


def _frame(sql: str, params: list[object], columns: list[str]) -> pd.DataFrame:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in ("occurred_at", "labeled_at", "created_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("undoes_label_id", "import_batch_id"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


# --- The queue -----------------------------------------------------------------------------


def queue_settings_current(*, project_id: int) -> QueueSettings:
    """The settings in force: the newest version, or the defaults (unsaved) when none."""
    found = QueueSettings.objects.filter(project_id=project_id).order_by("-id").first()
    return found or QueueSettings(project_id=project_id)


def queue_settings_history(*, project: Project, limit: int = 20) -> QuerySet[QueueSettings]:
    return (
        QueueSettings.objects.filter(project=project)
        .select_related("changed_by")
        .order_by("-id")[:limit]
    )


def queue_build_latest(*, project: Project) -> QueueBuild | None:
    return QueueBuild.objects.filter(project=project).order_by("-id").first()


def queue_candidate(*, project: Project, user: User, skip_locked: bool) -> Case | None:
    """The first case in queue order with an open slot that `user` has not labeled or skipped.

    Reads the partial index on (project, queue_rank, id) from its head; on PostgreSQL the row
    is locked for the caller's transaction. Written as SQL: it runs on every next-case request.
    """
    lock = ""
    if bulk.is_postgresql():
        lock = " FOR UPDATE OF c SKIP LOCKED" if skip_locked else " FOR UPDATE OF c"
    sql = (
        f"SELECT c.* FROM {Case._meta.db_table} c"
        f" WHERE c.project_id = %s AND c.queue_open > 0 AND NOT EXISTS ("
        f"  SELECT 1 FROM {Lease._meta.db_table} l WHERE l.case_id = c.id AND l.user_id = %s"
        f"  AND l.state IN ('labeled', 'skipped'))"
        f" ORDER BY c.queue_rank, c.id LIMIT 1{lock}"
    )
    found = list(Case.objects.raw(sql, [project.pk, user.pk]))
    if not found:
        return None
    case = found[0]
    case.project = project
    return case


def task_next_for(
    *, project: Project, user: User, role: str, exclude: list[int] | None = None
) -> LabelTask | None:
    """The first open task `user` may take: assigned to them first, then the pool's.

    Adjudication is for reviewers, and never of a case on which they gave an opinion. On
    PostgreSQL the task row is locked, skipping tasks someone else is taking right now.
    """
    kinds = [TaskKind.RELABEL]
    if ROLE_RANK[role] >= ROLE_RANK[Role.REVIEWER]:
        kinds.append(TaskKind.ADJUDICATE)
    busy = Lease.objects.filter(task=OuterRef("pk"), state=LeaseState.ACTIVE)
    passed = Lease.objects.filter(task=OuterRef("pk"), user=user, state=LeaseState.SKIPPED)
    own_opinion = Label.objects.filter(
        case=OuterRef("case"), author=user, kind__in=[LabelKind.LABELED, LabelKind.RELABELED]
    )
    tasks = LabelTask.objects.filter(project=project, status=TaskStatus.OPEN, kind__in=kinds)
    if project.relabel_blind:
        # A blind relabel from the pool is a second look by someone else: the person whose
        # label is questioned is not handed it (a task assigned to them by name still is).
        newest_author = Label.objects.filter(case=OuterRef("case")).order_by("-id")
        # Coalesce: a case with no label yet has no author to compare (NULL would drop the row).
        tasks = tasks.annotate(
            questioned_by=Coalesce(
                Subquery(newest_author.values("author_id")[:1]),
                Value(0),
                output_field=BigIntegerField(),
            )
        ).exclude(Q(kind=TaskKind.RELABEL) & Q(assignee__isnull=True) & Q(questioned_by=user.pk))
    task = (
        tasks.filter(Q(assignee=user) | Q(assignee__isnull=True))
        .exclude(Exists(busy))
        .exclude(Exists(passed))
        .exclude(Q(kind=TaskKind.ADJUDICATE) & Q(Exists(own_opinion)))
        .exclude(pk__in=exclude or [])
        .select_related("case", "created_by")
        .order_by(F("assignee_id").asc(nulls_last=True), "id")
    )
    if bulk.is_postgresql():
        task = task.select_for_update(skip_locked=True, of=("self",))
    task = task.first()
    if task is not None:
        task.case.project = project
    return task


def case_blind_for(*, case: Case, user: User) -> bool:
    """Whether `user` must label this case without seeing others' labels of it: an overlap
    case still collecting independent labels, to which they have not given theirs."""
    if case.queue_wanted <= 1:
        return False
    labelers = set(
        Lease.objects.filter(case=case, state=LeaseState.LABELED, task__isnull=True)
        .values_list("user_id", flat=True)
        .distinct()
    )
    return user.pk not in labelers and len(labelers) < case.queue_wanted


def lease_active_for(*, project: Project, user: User) -> Lease | None:
    return (
        Lease.objects.filter(project=project, user=user, state=LeaseState.ACTIVE)
        .select_related("task")
        .first()
    )


def leases_active(*, project: Project, limit: int = 50) -> QuerySet[Lease]:
    return (
        Lease.objects.filter(project=project, state=LeaseState.ACTIVE, expires_at__gt=Now())
        .select_related("user", "case", "task")
        .order_by("expires_at")[:limit]
    )


def task_list(
    *, project: Project, status: str | None = TaskStatus.OPEN, kind: str | None = None
) -> QuerySet[LabelTask]:
    tasks = LabelTask.objects.filter(project=project).select_related(
        "case", "assignee", "created_by", "closed_by", "label"
    )
    if status:
        tasks = tasks.filter(status=status)
    if kind:
        tasks = tasks.filter(kind=kind)
    return tasks.order_by("-id")


def task_get(*, project: Project, task_id: int) -> LabelTask | None:
    task = (
        LabelTask.objects.filter(project=project, pk=task_id)
        .select_related("case", "assignee", "created_by")
        .first()
    )
    if task is not None:
        task.case.project = project
    return task


@dataclass
class WaitingCases:
    """The cases still waiting for labels, as arrays for ranking (in case id order)."""

    case_ids: np.ndarray
    external_ids: np.ndarray
    occurred_at: np.ndarray  # datetime64[us], NaT when unknown
    wanted: np.ndarray
    open_slots: np.ndarray
    ranks: np.ndarray
    untouched: np.ndarray  # no label and no slot taken: the overlap choice may still change
    probabilities: np.ndarray | None  # (n, classes), NaN rows for unscored; None when no scores
    model_version_number: int | None


def queue_waiting_cases(*, project_id: int) -> WaitingCases:
    case_table = Case._meta.db_table
    score_table = CaseScore._meta.db_table
    sql = (
        f"SELECT c.id, c.external_id, c.occurred_at, c.queue_wanted, c.queue_open,"
        f" c.queue_rank, c.current_label, s.probabilities, s.model_version_number"
        f" FROM {case_table} c LEFT JOIN {score_table} s ON s.case_id = c.id"
        f" WHERE c.project_id = %s AND (c.current_label = '' OR c.queue_open > 0)"
        f" ORDER BY c.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id])
        rows = cursor.fetchall()
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if rows else [()] * 9
    wanted = np.fromiter(columns[3], dtype=np.int64, count=n)
    open_slots = np.fromiter(columns[4], dtype=np.int64, count=n)
    unlabeled = np.fromiter((label == "" for label in columns[6]), dtype=bool, count=n)
    occurred = pd.to_datetime(pd.Series(columns[2], dtype=object), utc=True)
    probabilities = None
    versions = [v for v in columns[8] if v is not None]
    packed = [bytes(p) if p is not None else b"" for p in columns[7]]
    width = max((len(p) for p in packed), default=0) // 8
    if versions and width:
        probabilities = np.full((n, width), np.nan)
        for i, blob in enumerate(packed):
            if len(blob) == width * 8:
                probabilities[i] = np.frombuffer(blob, dtype="<f8")
    return WaitingCases(
        case_ids=np.fromiter(columns[0], dtype=np.int64, count=n),
        external_ids=np.array(columns[1], dtype=object),
        occurred_at=occurred.dt.tz_localize(None).to_numpy(dtype="datetime64[us]"),
        wanted=wanted,
        open_slots=open_slots,
        ranks=np.fromiter(columns[5], dtype=np.int64, count=n),
        untouched=unlabeled & (open_slots == wanted),
        probabilities=probabilities,
        model_version_number=max(versions) if versions else None,
    )


def queue_projects_due(*, settle_seconds: int = 60) -> list[int]:
    """Projects whose newest queue settings have no build yet (older than a minute, so a
    refresh already on its way is not sent twice)."""
    newest = (
        QueueSettings.objects.values("project_id")
        .annotate(newest=Max("id"), at=Max("created_at"))
        .filter(at__lt=timezone.now() - timedelta(seconds=settle_seconds))
    )
    due = []
    for row in newest:
        built = (
            QueueBuild.objects.filter(project_id=row["project_id"])
            .order_by("-id")
            .values_list("settings_id", flat=True)
            .first()
        )
        if built != row["newest"]:
            due.append(row["project_id"])
    return due


@dataclass
class QueuePreviewRow:
    case: Case
    predicted_label: str | None
    confidence: float | None
    score: float | None  # what the strategy ranks by, when it is model-based


def queue_preview(*, project: Project, limit: int = 10) -> list[QueuePreviewRow]:
    """The next cases the queue will hand out (to someone who has seen none of them)."""
    queue_settings = queue_settings_current(project_id=project.pk)
    cases = list(
        Case.objects.filter(project=project, queue_open__gt=0)
        .select_related("score")
        .order_by("queue_rank", "id")[:limit]
    )
    base = queue_settings.strategy
    if base == QueueStrategy.MIX:
        base = queue_settings.mix_base
    classes = list(project.classes)
    rows = []
    for case in cases:
        score_row = getattr(case, "score", None)
        predicted = confidence = score = None
        if score_row is not None:
            predicted, confidence = score_row.predicted_label, score_row.confidence
            p = np.frombuffer(bytes(score_row.probabilities), dtype="<f8")
            if len(p) == len(classes):
                if base == QueueStrategy.UNCERTAINTY:
                    score = float(
                        strategies.uncertainty(p[None, :], queue_settings.uncertainty_measure)[0]
                    )
                elif base == QueueStrategy.MINORITY and queue_settings.target_class in classes:
                    score = float(p[classes.index(queue_settings.target_class)])
        rows.append(QueuePreviewRow(case, predicted, confidence, score))
    return rows


def queue_waiting_count(*, project: Project) -> int:
    """Slots open right now (a case wanting two more labels counts twice)."""
    return Case.objects.filter(project=project, queue_open__gt=0).aggregate(
        n=Coalesce(Sum("queue_open"), 0)
    )["n"]


# --- Agreement between clinicians ------------------------------------------------------------


def opinions_by_case(*, project: Project, case_ids: list[int] | None = None) -> dict:
    """{case id: {username: label}}: each clinician's own label of each overlap case (their
    newest labeled or relabeled row that is not undone), for the cases several labeled."""
    labels = Label.objects.filter(
        project=project,
        case__queue_wanted__gt=1,
        kind__in=[LabelKind.LABELED, LabelKind.RELABELED, LabelKind.UNDONE],
    )
    if case_ids is not None:
        labels = labels.filter(case_id__in=case_ids)
    rows = list(
        labels.order_by("-id").values_list(
            "id", "case_id", "author__username", "value", "kind", "undoes_id"
        )
    )
    undone = {undoes_id for *_, kind, undoes_id in rows if kind == LabelKind.UNDONE}
    # An opinion belongs to someone who labeled the case independently (a `labeled` row); a
    # relabel by a third person (a task) is not one, but correcting one's own label is.
    independent = {
        (case_id, who) for _, case_id, who, _, kind, _ in rows if kind == LabelKind.LABELED
    }
    opinions: dict[int, dict[str, str]] = {}
    for label_id, case_id, who, value, kind, _ in rows:  # newest first
        if kind == LabelKind.UNDONE or label_id in undone or (case_id, who) not in independent:
            continue
        opinions.setdefault(case_id, {}).setdefault(who, value)
    return opinions


def case_opinions(*, case_id: int) -> dict[str, str]:
    case = Case.objects.select_related("project").get(pk=case_id)
    return opinions_by_case(project=case.project, case_ids=[case_id]).get(case_id, {})


@dataclass
class PairAgreement:
    first: str
    second: str
    cases: int
    kappa: float | None  # Cohen's kappa; None when undefined (too few cases, one class only)
    percent: float


@dataclass
class Agreement:
    cases: int  # overlap cases with at least two opinions
    raters: list[str]
    alpha: float | None  # Krippendorff's alpha (nominal) over all raters
    percent: float | None  # share of those cases where everyone agreed
    pairs: list[PairAgreement]
    disputed: int


def label_agreement(*, project: Project) -> Agreement:
    """Agreement on the overlap cases: Cohen's kappa per pair of clinicians (scikit-learn),
    and Krippendorff's alpha over everyone (the `krippendorff` package), which allows any
    number of raters per case and cases some raters did not see."""
    opinions = {c: o for c, o in opinions_by_case(project=project).items() if len(o) >= 2}
    raters = sorted({who for o in opinions.values() for who in o})
    classes = list(project.classes)
    code = {cls: i for i, cls in enumerate(classes)}
    alpha = None
    if opinions and len(raters) >= 2:
        matrix = np.full((len(raters), len(opinions)), np.nan)
        row = {who: i for i, who in enumerate(raters)}
        for j, o in enumerate(opinions.values()):
            for who, value in o.items():
                if value in code:
                    matrix[row[who], j] = code[value]
        try:
            alpha = float(
                krippendorff.alpha(
                    reliability_data=matrix,
                    level_of_measurement="nominal",
                    value_domain=list(range(len(classes))),
                )
            )
        except ValueError:
            alpha = None  # a single value throughout: agreement is not measurable
        if alpha is not None and np.isnan(alpha):
            alpha = None
    pairs = []
    for i, first in enumerate(raters):
        for second in raters[i + 1 :]:
            both = [(o[first], o[second]) for o in opinions.values() if first in o and second in o]
            if not both:
                continue
            a, b = zip(*both, strict=True)
            percent = sum(x == y for x, y in both) / len(both)
            kappa = None
            if len(both) >= 2 and len(set(a) | set(b)) >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    value = cohen_kappa_score(a, b, labels=classes)
                kappa = None if np.isnan(value) else float(value)
            pairs.append(PairAgreement(first, second, len(both), kappa, percent))
    disputed = sum(len(set(o.values())) > 1 for o in opinions.values())
    return Agreement(
        cases=len(opinions),
        raters=raters,
        alpha=alpha,
        percent=(1 - disputed / len(opinions)) if opinions else None,
        pairs=pairs,
        disputed=disputed,
    )


@dataclass
class Disagreement:
    task: LabelTask
    opinions: dict[str, str]


def disagreements(*, project: Project, limit: int = 50) -> list[Disagreement]:
    """Adjudication tasks, open ones first, with the labels in dispute: each clinician's own
    label of an overlap case; for a relabel that disagreed, the questioned label and the
    relabel (the labels of the case when the adjudication was asked for)."""
    tasks = list(
        LabelTask.objects.filter(project=project, kind=TaskKind.ADJUDICATE)
        .exclude(status=TaskStatus.CANCELLED)
        .select_related("case", "closed_by", "label")
        .order_by(
            Case_(When(status=TaskStatus.OPEN, then=0), default=1),
            "-id",
        )[:limit]
    )
    opinions = opinions_by_case(project=project, case_ids=[t.case_id for t in tasks])
    disputed = _labels_in_dispute([t for t in tasks if not opinions.get(t.case_id)])
    return [Disagreement(t, opinions.get(t.case_id) or disputed.get(t.pk, {})) for t in tasks]


def _labels_in_dispute(tasks: list[LabelTask]) -> dict[int, dict[str, str]]:
    """{task id: {who: label}} for adjudications that are not of an overlap case: each
    author's newest label of the case before the adjudication was opened ("imported" for a
    label from a file), in one query for all the tasks."""
    if not tasks:
        return {}
    rows = (
        Label.objects.filter(case_id__in={t.case_id for t in tasks})
        .exclude(kind=LabelKind.ADJUDICATED)
        .order_by("-id")
        .values_list(
            "id",
            "case_id",
            "author__username",
            "value",
            "kind",
            "undoes_id",
            "import_batch_id",
            "created_at",
        )
    )
    found: dict[int, dict[str, str]] = {t.pk: {} for t in tasks}
    by_case: dict[int, list[LabelTask]] = {}
    for t in tasks:
        by_case.setdefault(t.case_id, []).append(t)
    undone: set[int] = set()
    # Newest first: an undo comes before the label it undoes.
    for label_id, case_id, who, value, kind, undoes_id, batch, created_at in rows:
        if kind == LabelKind.UNDONE:
            undone.add(undoes_id)
            continue
        if label_id in undone:
            continue
        for t in by_case[case_id]:
            if created_at <= t.created_at:
                found[t.pk].setdefault("imported" if batch else who, value)
    return found


@dataclass
class ClosedTask:
    task: LabelTask
    # The case's label just before the task's answer, for "did it change the case".
    before: str | None

    @property
    def changed(self) -> bool | None:
        if self.task.status != TaskStatus.DONE or self.task.label_id is None:
            return None
        return self.before != self.task.label.value


def task_closed_list(
    *, project: Project, before_id: int | None = None, limit: int = 25
) -> tuple[list[ClosedTask], int | None]:
    """Relabel and adjudication tasks done or cancelled, the most recently opened first, with
    whether the answer changed the case; and the id to list the older ones from (None at the
    end). One query for the page, keyset by task id."""
    before = (
        Label.objects.filter(case_id=OuterRef("case_id"), id__lt=OuterRef("label_id"))
        .order_by("-id")
        .values("value")[:1]
    )
    tasks = (
        LabelTask.objects.filter(project=project)
        .exclude(status=TaskStatus.OPEN)
        .select_related("case", "assignee", "created_by", "closed_by", "label")
        .annotate(value_before=Subquery(before))
        .order_by("-id")
    )
    if before_id is not None:
        tasks = tasks.filter(id__lt=before_id)
    page = list(tasks[: limit + 1])
    following = page[limit - 1].pk if len(page) > limit else None
    return [ClosedTask(t, t.value_before) for t in page[:limit]], following
