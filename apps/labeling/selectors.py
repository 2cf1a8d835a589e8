"""Reads of labels: the queue, the history, snapshots for training and exports."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from apps.accounts.models import User
from apps.cases.models import Case
from apps.labeling.models import CaseScore, Label, LabelKind, Skip
from apps.projects.models import Project


def queue_next_case(*, project: Project, user: User) -> Case | None:
    """The next unlabeled case for `user`, in import order, leaving out the ones they skipped."""
    skipped = Skip.objects.filter(user=user, case__project=project).values("case_id")
    case = (
        Case.objects.filter(project=project, current_label="")
        .exclude(pk__in=skipped)
        .order_by("pk")
        .first()
    )
    if case is not None:
        case.project = project
    return case


def label_newest_id(*, case: Case) -> int:
    """The id of the case's newest label row, 0 when it has none: what a form was based on."""
    return Label.objects.filter(case=case).order_by("-id").values_list("id", flat=True).first() or 0


def case_score_get(*, case: Case) -> CaseScore | None:
    return CaseScore.objects.filter(case=case).first()


def label_history(*, case: Case) -> QuerySet[Label]:
    return Label.objects.filter(case=case).select_related("author").order_by("-id")


def label_recent_for_user(*, project: Project, user: User, limit: int = 10) -> QuerySet[Label]:
    return (
        Label.objects.filter(project=project, author=user)
        .exclude(kind=LabelKind.IMPORTED)
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


def label_progress(*, project: Project, user: User | None = None) -> LabelProgress:
    counts = dict(
        Case.objects.filter(project=project)
        .values_list("current_label")
        .annotate(n=Count("id"))
        .values_list("current_label", "n")
    )
    total = sum(counts.values())
    per_class = {cls: counts.get(cls, 0) for cls in project.classes}
    mine = today = 0
    if user is not None:
        undone = Label.objects.filter(project=project, author=user, kind=LabelKind.UNDONE)
        own = Label.objects.filter(
            project=project, author=user, kind__in=[LabelKind.LABELED, LabelKind.RELABELED]
        ).exclude(pk__in=undone.values("undoes_id"))
        midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
        # Cases, not rows: correcting one's own label does not count twice.
        own_counts = own.aggregate(
            mine=Count("case", distinct=True),
            today=Count("case", distinct=True, filter=Q(created_at__gte=midnight)),
        )
        mine, today = own_counts["mine"], own_counts["today"]
    return LabelProgress(
        total_cases=total,
        labeled_cases=total - counts.get("", 0),
        per_class=per_class,
        labeled_by_user_today=today,
        labeled_by_user=mine,
    )


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
