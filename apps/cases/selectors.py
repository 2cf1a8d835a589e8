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


def case_feature_matrix(*, project_id: int, case_ids: np.ndarray | None = None) -> FeatureMatrix:
    """All (or the given) cases of a project as one float matrix, ordered by case id.

    The packed vectors are joined into one buffer and viewed as a matrix: no Python object per
    value, which is what keeps a million cases in seconds.
    """
    names = list(
        Feature.objects.filter(project_id=project_id)
        .order_by("position")
        .values_list("name", flat=True)
    )
    table = Case._meta.db_table
    sql = f"SELECT id, occurred_at, features FROM {table} WHERE project_id = %s"
    params: list[object] = [project_id]
    sql += " ORDER BY id"
    # A large id set is filtered in numpy below rather than sent as a million SQL parameters.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
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
    width = len(names)
    blob = b"".join(bytes(r[2]) for r in rows)
    values = np.frombuffer(blob, dtype="<f8").reshape(n, width) if n else np.empty((0, width))
    if case_ids is not None:
        keep = np.isin(ids, case_ids)
        ids, occurred, values = ids[keep], occurred[keep], values[keep]
    return FeatureMatrix(case_ids=ids, occurred_at=occurred, values=values, feature_names=names)


def case_features_dict(*, case: Case) -> dict[str, float | None]:
    values = np.frombuffer(bytes(case.features), dtype="<f8")
    names = Feature.objects.filter(project_id=case.project_id).order_by("position")
    return {
        f.name: (None if i >= len(values) or np.isnan(values[i]) else float(values[i]))
        for i, f in enumerate(names)
    }


def case_get_in_project(*, project: Project, case_id: int) -> Case | None:
    return Case.objects.filter(project=project, pk=case_id).first()


def case_count(*, project: Project) -> int:
    return Case.objects.filter(project=project).count()


def import_batch_list(*, project: Project) -> QuerySet[ImportBatch]:
    return ImportBatch.objects.filter(project=project).select_related("imported_by")
