"""Reads of training runs, model versions, objectives, deployments and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import QuerySet

from apps.cases.selectors import FeatureMatrix
from apps.features.compute import definitions_from, feature_columns
from apps.features.expressions import ExpressionError
from apps.labeling.selectors import label_progress
from apps.modeling.ml.training import TrainingError, window_select
from apps.modeling.models import (
    Deployment,
    ModelVersion,
    MonitoringReport,
    Objective,
    RunStatus,
    TrainingConfig,
    TrainingRun,
)
from apps.projects.models import Project

# Fewer labeled cases than this and class shares say little: no imbalance alert yet.
MIN_LABELS_FOR_BALANCE = 20


def training_run_list(*, project: Project) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=project).select_related("requested_by", "objective")


def training_run_active(*, project: Project) -> TrainingRun | None:
    return TrainingRun.objects.filter(
        project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
    ).first()


def training_run_get(*, project: Project, run_id: int) -> TrainingRun | None:
    return (
        TrainingRun.objects.filter(project=project, pk=run_id)
        .select_related("requested_by", "cancelled_by", "objective", "training_config")
        .first()
    )


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("training_run", "objective")


def model_version_latest(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project).order_by("-number").first()


def model_version_get(*, project: Project, number: int) -> ModelVersion | None:
    return (
        ModelVersion.objects.filter(project=project, number=number)
        .select_related("training_run", "objective")
        .first()
    )


def deployment_current(*, project: Project) -> Deployment | None:
    """The newest deployment row: the production model."""
    return (
        Deployment.objects.filter(project=project)
        .select_related("model_version", "model_version__objective", "deployed_by")
        .order_by("-id")
        .first()
    )


def deployment_history(*, project: Project) -> QuerySet[Deployment]:
    return (
        Deployment.objects.filter(project=project)
        .select_related("model_version", "deployed_by")
        .order_by("-id")
    )


def objective_current(*, project: Project) -> Objective:
    """The objective in force; a project that never set one optimizes accuracy."""
    return Objective.objects.filter(project=project).order_by("-id").first() or Objective(
        project=project, metric="accuracy"
    )


def objective_history(*, project: Project) -> QuerySet[Objective]:
    return Objective.objects.filter(project=project).select_related("changed_by").order_by("-id")


def training_config_current(*, project: Project) -> TrainingConfig:
    return TrainingConfig.objects.filter(project=project).order_by("-id").first() or TrainingConfig(
        project=project
    )


def training_config_history(*, project: Project) -> QuerySet[TrainingConfig]:
    return (
        TrainingConfig.objects.filter(project=project).select_related("changed_by").order_by("-id")
    )


def monitoring_latest(*, project: Project) -> MonitoringReport | None:
    return MonitoringReport.objects.filter(project=project).order_by("-id").first()


def project_alerts(*, project: Project) -> list[dict[str, Any]]:
    """The alerts the project page shows, each with the figure behind it and the action it
    suggests. Class balance and labels changed are read live (kept counts, a few rows); the
    model's own alerts come from the periodic check's latest report on the production
    version."""
    alerts: list[dict[str, Any]] = []
    progress = label_progress(project=project)
    if progress.labeled_cases >= MIN_LABELS_FOR_BALANCE:
        for cls, n in progress.per_class.items():
            share = n / progress.labeled_cases
            if share < project.alert_min_class_share:
                alerts.append(
                    {
                        "kind": "imbalance",
                        "severity": "warning",
                        "title": f"Class {cls!r} is rare among the labels",
                        "figure": f"{n:,} of {progress.labeled_cases:,} labeled cases "
                        f"({share:.1%}; alert below {project.alert_min_class_share:.0%})",
                        "action": f"Target {cls!r} in the queue (minority-targeted strategy) "
                        "or train with balanced class weights.",
                    }
                )
    deployment = deployment_current(project=project)
    if deployment is not None:
        version = deployment.model_version
        changed = project.labels_version - version.training_run.labels_version
        if changed > 0:
            alerts.append(
                {
                    "kind": "labels_changed",
                    "severity": "info",
                    "title": f"{changed:,} label change{'s' if changed != 1 else ''} since "
                    f"version {version.number} was trained",
                    "figure": f"labels version {project.labels_version:,} now, "
                    f"{version.training_run.labels_version:,} at training",
                    "action": "Retrain to learn from them (automatic retraining does this "
                    "when it is on).",
                }
            )
        report = monitoring_latest(project=project)
        if report is not None and report.model_version_id == version.pk:
            for alert in report.alerts:
                alerts.append({**alert, "checked_at": report.created_at})
    return alerts


@dataclass
class TrainingData:
    """The labeled cases a run trains on, after its window and feature choice."""

    X: np.ndarray
    y: np.ndarray
    occurred_at: np.ndarray
    case_ids: np.ndarray
    feature_names: list[str]
    window: dict[str, Any]
    y_codes: np.ndarray | None = None  # each label's class position, when the snapshot had it


def training_data(
    *,
    snapshot_case_ids: np.ndarray,
    snapshot_values: np.ndarray,
    matrix,
    params: dict[str, Any],
    snapshot_codes: np.ndarray | None = None,
) -> TrainingData:
    """Cut a label snapshot down to the run's window and features. The same function serves a
    run and its reproduction, so both see exactly the same rows and columns."""
    position = np.searchsorted(matrix.case_ids, snapshot_case_ids)
    if len(position) and (
        position.max() >= len(matrix.case_ids)
        or not np.array_equal(matrix.case_ids[position], snapshot_case_ids)
    ):
        raise TrainingError("The label snapshot names cases that no longer exist.")
    derived = definitions_from(params.get("derived") or [])
    derived_names = [d.name for d in derived]
    names = list(params.get("features") or [*matrix.feature_names, *derived_names])
    missing = [n for n in names if n not in matrix.feature_names and n not in derived_names]
    if missing:
        raise TrainingError(
            f"The configuration names unknown features: {', '.join(missing)}. A derived "
            "feature retired since? Choose the features again on the Models page."
        )
    occurred = matrix.occurred_at[position]
    keep = window_select(occurred, params.get("window_months"))
    window: dict[str, Any] = {"months": params.get("window_months"), "cases": len(keep)}
    if params.get("window_months") and len(keep):
        window["from"] = str(occurred[keep].min())[:10]
        window["to"] = str(occurred[keep].max())[:10]
    rows = position[keep]
    X = run_columns(names=names, derived=params.get("derived") or [], matrix=matrix, rows=rows)
    return TrainingData(
        X=X,
        y=snapshot_values[keep],
        occurred_at=occurred[keep],
        case_ids=snapshot_case_ids[keep],
        feature_names=names,
        window=window,
        y_codes=None if snapshot_codes is None else snapshot_codes[keep],
    )


def run_columns(
    *,
    names: list[str],
    derived: list[dict[str, str]],
    matrix: FeatureMatrix,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """The matrix a model reads: its features `names` for `rows` of the project's raw matrix
    (all rows when None), derived ones computed from the definitions the run recorded."""
    if all(n in matrix.feature_names for n in names):
        columns = [matrix.feature_names.index(n) for n in names]
        every_column = columns == list(range(len(matrix.feature_names)))
        if rows is None:
            return matrix.values if every_column else matrix.values[:, columns]
        if every_column and len(rows) and rows[-1] - rows[0] + 1 == len(rows):
            # Consecutive cases (every case labeled, a window of the newest): a view, no copy.
            return matrix.values[rows[0] : rows[-1] + 1]
        # One copy of the rows wanted (and only then of the columns wanted).
        return matrix.values[rows] if every_column else matrix.values[np.ix_(rows, columns)]
    try:
        return feature_columns(
            names, matrix.values, matrix.feature_names, definitions_from(derived), rows
        )
    except ExpressionError as error:
        raise TrainingError(f"A derived feature cannot be computed: {error}") from error
