"""Reads of cases, including the feature matrix that training loads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.db.models import QuerySet

from apps.cases.models import Case, ImportBatch
from apps.projects.models import Feature, Project


@dataclass
class FeatureMatrix:
    case_ids: np.ndarray  # int64
    occurred_at: np.ndarray  # datetime64[us], NaT where unknown
    values: np.ndarray  # (n, k) float64
    feature_names: list[str]


def case_feature_matrix(*, project_id: int) -> FeatureMatrix:
    """All cases of a project as one float matrix, ordered by case id.

    On PostgreSQL the rows come as one binary COPY that numpy reads as fixed-width records: no
    Python object per case or per value, which is what keeps a million cases in seconds.
    """
    names = list(
        Feature.objects.filter(project_id=project_id)
        .order_by("position")
        .values_list("name", flat=True)
    )
    width = len(names)
    loaded = (
        _feature_rows_copy(int(project_id), width) if connection.vendor == "postgresql" else None
    )
    ids, occurred, values = loaded or _feature_rows_fetch(project_id, width)
    return FeatureMatrix(case_ids=ids, occurred_at=occurred, values=values, feature_names=names)


def _feature_rows_fetch(project_id: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Any database: rows fetched as Python tuples, the packed vectors joined into one buffer."""
    table = Case._meta.db_table
    sql = f"SELECT id, occurred_at, features FROM {table} WHERE project_id = %s ORDER BY id"
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id])
        rows = cursor.fetchall()
    n = len(rows)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    occurred = (
        np.array(
            [None if r[1] is None else r[1].replace(tzinfo=None) for r in rows],
            dtype="datetime64[us]",
        )
        if n
        else np.empty(0, dtype="datetime64[us]")
    )
    blob = b"".join(bytes(r[2]) for r in rows)
    values = np.frombuffer(blob, dtype="<f8").reshape(n, width) if n else np.empty((0, width))
    return ids, occurred, values


# A binary COPY starts with a 19-byte header and ends with a 2-byte trailer.
_COPY_HEADER_BYTES = 19
_COPY_TRAILER_BYTES = 2
# PostgreSQL counts timestamps in microseconds from 2000-01-01 00:00 UTC.
_PG_EPOCH_US = np.int64(946_684_800_000_000)


def _feature_rows_copy(
    project_id: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """PostgreSQL: one binary COPY whose rows all have the same layout, read by numpy.

    Every row is (id, features, occurred_at is null, occurred_at or epoch): fixed widths as long
    as every vector holds `width` values. Rows are sorted by id here rather than by the server,
    which would spill a million vectors to disk. None when a row does not fit the layout (the
    caller then takes the general path, with its errors).
    """
    record = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("features_len", ">i4"),
            ("features", "<f8", (width,)),
            ("missing_len", ">i4"),
            ("missing", "u1"),
            ("when_len", ">i4"),
            ("when", ">i8"),
        ]
    )
    table = Case._meta.db_table
    sql = (
        f"COPY (SELECT id, features, occurred_at IS NULL, "
        f"COALESCE(occurred_at, '2000-01-01 00:00:00+00') FROM {table} "
        f"WHERE project_id = {project_id:d}) TO STDOUT WITH (FORMAT binary)"
    )
    data = bytearray()
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for block in copy:
            data += block
    body = memoryview(data)[_COPY_HEADER_BYTES : len(data) - _COPY_TRAILER_BYTES]
    if len(body) % record.itemsize:
        return None
    rows = np.frombuffer(body, dtype=record)
    expected = ((rows["fields"] == 4) & (rows["id_len"] == 8) & (rows["missing_len"] == 1)) & (
        (rows["features_len"] == 8 * width) & (rows["when_len"] == 8)
    )
    if not expected.all():
        return None
    ids = rows["id"].astype(np.int64)
    # A sequential scan of an append-only table usually gives the rows in id order already.
    order = None if bool(np.all(ids[1:] > ids[:-1])) else np.argsort(ids, kind="stable")
    pick = slice(None) if order is None else order
    when = (rows["when"][pick].astype(np.int64) + _PG_EPOCH_US).view("datetime64[us]")
    occurred = np.where(rows["missing"][pick].astype(bool), np.datetime64("NaT", "us"), when)
    values = np.ascontiguousarray(rows["features"][pick], dtype=np.float64)
    return ids[pick], occurred, values


def case_features_dict(
    *, case: Case, features: list[Feature] | None = None
) -> dict[str, float | None]:
    """A case's feature values by name (None where missing). Pass `features` when the caller
    already has the project's features, to save a query."""
    values = np.frombuffer(bytes(case.features), dtype="<f8")
    if features is None:
        features = list(
            Feature.objects.raw(
                f"SELECT * FROM {Feature._meta.db_table} WHERE project_id = %s ORDER BY position",
                [case.project_id],
            )
        )
    return {
        f.name: (
            None
            if f.position >= len(values) or np.isnan(values[f.position])
            else float(values[f.position])
        )
        for f in features
    }


def case_get_in_project(*, project: Project, case_id: int) -> Case | None:
    case = Case.objects.filter(project=project, pk=case_id).first()
    if case is not None:
        case.project = project  # the caller's object: no second query for it
    return case


def import_batch_list(*, project: Project) -> QuerySet[ImportBatch]:
    return ImportBatch.objects.filter(project=project).select_related("imported_by")
