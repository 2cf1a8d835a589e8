"""Reads of cases, including the feature matrix that training loads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.db.models import QuerySet

from apps.cases import bulk, feature_cache
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

    def read(after: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        loaded = (
            _feature_rows_copy(int(project_id), width, after)
            if connection.vendor == "postgresql"
            else None
        )
        return loaded or _feature_rows_fetch(project_id, width, after)

    ids, occurred, values = feature_cache.matrix_rows(
        project_id=int(project_id), names=names, read=read
    )
    return FeatureMatrix(case_ids=ids, occurred_at=occurred, values=values, feature_names=names)


def _feature_rows_fetch(
    project_id: int, width: int, after: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Any database: rows fetched as Python tuples, the packed vectors joined into one buffer.
    Only cases with ids above `after`, when given."""
    table = Case._meta.db_table
    sql = (
        f"SELECT id, occurred_at, features FROM {table} WHERE project_id = %s AND id > %s"
        f" ORDER BY id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id, -1 if after is None else int(after)])
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


# Cases per aggregated row: big enough that Python handles a few hundred values, not a
# million; small enough that each value stays far below PostgreSQL's 1 GB limit.
_CHUNK_CASES = 32_768


def _feature_rows_copy(
    project_id: int, width: int, after: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """PostgreSQL: the cases concatenated by the server, a chunk of ids to a row, into bytea
    that numpy reads as is (ids as int8send, vectors as stored, times as timestamptz_send).

    A row per case, even as binary COPY, costs a Python object per case on the way in, which
    is most of the time at a million cases. Rows come sorted by id here rather than by the
    server, which would spill a million vectors to disk. None when a vector does not hold
    `width` values (the caller then takes the general path, with its errors).
    """
    table = Case._meta.db_table
    # One aggregate per range of ids, each read through the primary key: a GROUP BY over a
    # computed chunk number made the planner sort a million vectors on disk first.
    sql = (
        f"WITH span AS (SELECT MIN(id) AS low, MAX(id) AS high FROM {table}"
        f" WHERE project_id = %s AND id > %s)"
        f" SELECT c.* FROM span, generate_series(span.low, span.high, {_CHUNK_CASES:d}) AS s,"
        f" LATERAL (SELECT string_agg(int8send(id), ''::bytea),"
        f" string_agg(features, ''::bytea),"
        f" string_agg(timestamptz_send(COALESCE(occurred_at, '2000-01-01 00:00:00+00')),"
        f" ''::bytea),"
        f" string_agg(boolsend(occurred_at IS NULL), ''::bytea),"
        f" bool_and(octet_length(features) = %s)"
        f" FROM {table} WHERE project_id = %s AND id >= s AND id < s + {_CHUNK_CASES:d}) AS c"
    )
    pid = int(project_id)
    low = -1 if after is None else int(after)
    chunks = [c for c in bulk.fetch_binary(sql, [pid, low, 8 * width, pid]) if c[0] is not None]
    if not all(chunk[4] for chunk in chunks):
        return None
    ids = np.frombuffer(b"".join(c[0] for c in chunks), dtype=">i8").astype(np.int64)
    n = len(ids)
    values = np.frombuffer(b"".join(c[1] for c in chunks), dtype="<f8")
    if len(values) != n * width:
        return None
    values = values.reshape(n, width)
    when = bulk.timestamps_from_send(b"".join(c[2] for c in chunks))
    missing = np.frombuffer(b"".join(c[3] for c in chunks), dtype=np.uint8).astype(bool)
    occurred = np.where(missing, np.datetime64("NaT", "us"), when)
    if n and not bool(np.all(ids[1:] > ids[:-1])):
        order = np.argsort(ids, kind="stable")
        ids, occurred, values = ids[order], occurred[order], values[order]
    return ids, occurred, np.ascontiguousarray(values, dtype=np.float64)


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


def case_list(*, project: Project) -> QuerySet[Case]:
    """The project's cases in import order."""
    return Case.objects.filter(project=project).order_by("id")
