"""Checks of the production model on recent cases: staleness, drift, degenerate predictions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Count

from apps.cases.models import Case
from apps.cases.selectors import case_feature_matrix
from apps.labeling.models import CaseScore
from apps.modeling.ml.monitoring import (
    MIN_SLICE_CASES,
    degenerate,
    population_stability,
    staleness,
)
from apps.modeling.ml.objectives import (
    ObjectiveSpec,
    objective_value,
)
from apps.modeling.ml.training import (
    month_slices,
)
from apps.modeling.models import (
    Deployment,
    ModelVersion,
    MonitoringReport,
)
from apps.modeling.selectors import run_columns
from apps.modeling.services.common import _deployment_current
from apps.modeling.services.predictions import version_predictions_load
from apps.projects.models import Project

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Monitoring: imbalance, a degenerate model, staleness and drift.

DRIFT_SAMPLE = 50_000


def _alert(kind: str, severity: str, title: str, figure: str, action: str, **extra: Any) -> dict:
    return {
        "kind": kind,
        "severity": severity,
        "title": title,
        "figure": figure,
        "action": action,
        **extra,
    }


@dataclass
class LiveCases:
    """Labeled cases a version never saw (dated after what it was evaluated on), with its
    stored predictions of them."""

    labels: np.ndarray
    proba: np.ndarray
    occurred_at: np.ndarray


def _labeled_after(project_id: int, after: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(case ids, current labels, dates) of the labeled cases dated after `after`, by id."""
    rows = list(
        Case.objects.filter(project_id=project_id, occurred_at__gt=after)
        .exclude(current_label="")
        .order_by("id")
        .values_list("id", "current_label", "occurred_at")
    )
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    labels = np.array([r[1] for r in rows], dtype=object)
    when = np.array([r[2].replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
    return ids, labels, when


def _rows_of(case_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` sits in a version's predictions (`case_ids`, sorted), and whether
    it is there at all: cases imported after the version predicted are not."""
    if not len(case_ids):
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    position = np.minimum(np.searchsorted(case_ids, ids), len(case_ids) - 1)
    return position, case_ids[position] == ids


def _live_cases(version: ModelVersion, after: str) -> LiveCases:
    case_ids, proba = version_predictions_load(version)
    ids, labels, when = _labeled_after(version.project_id, after)
    position, known = _rows_of(case_ids, ids)
    return LiveCases(labels=labels[known], proba=proba[position[known]], occurred_at=when[known])


def month(day: str | None) -> str | None:
    return day[:7] if day else None


def _periods(dates: np.ndarray) -> list[str] | None:
    dated = dates[~np.isnat(dates)]
    if not len(dated):
        return None
    months = dated.astype("datetime64[M]")
    return [str(months.min()), str(months.max())]


def _drift(version: ModelVersion, recent_months: int) -> list[dict]:
    """PSI of each feature the version uses: its training period against the most recent
    `recent_months` months of cases (labeled or not)."""
    period = version.metrics.get("train_period")
    if not period:
        return []
    matrix = case_feature_matrix(project_id=version.project_id)
    dated = ~np.isnat(matrix.occurred_at)
    if not dated.any():
        return []
    newest = matrix.occurred_at[dated].max().astype("datetime64[M]")
    recent_start = (newest - np.timedelta64(recent_months - 1, "M")).astype("datetime64[us]")
    start, end = (np.datetime64(period[0]), np.datetime64(period[1]) + np.timedelta64(1, "D"))
    reference = np.flatnonzero(dated & (matrix.occurred_at >= start) & (matrix.occurred_at < end))
    recent = np.flatnonzero(dated & (matrix.occurred_at >= recent_start))
    rng = np.random.default_rng(0)
    if len(reference) > DRIFT_SAMPLE:
        reference = rng.choice(reference, DRIFT_SAMPLE, replace=False)
    if len(recent) > DRIFT_SAMPLE:
        recent = rng.choice(recent, DRIFT_SAMPLE, replace=False)
    if len(reference) < MIN_SLICE_CASES or len(recent) < MIN_SLICE_CASES:
        return []
    rows = []
    run = version.training_run
    names = list(run.feature_names)
    derived = run.params.get("derived") or []
    older = run_columns(names=names, derived=derived, matrix=matrix, rows=np.sort(reference))
    newer = run_columns(names=names, derived=derived, matrix=matrix, rows=np.sort(recent))
    for j, name in enumerate(names):
        psi = population_stability(older[:, j], newer[:, j])
        if psi is not None:
            rows.append({"feature": name, "psi": round(psi, 4)})
    rows.sort(key=lambda r: -r["psi"])
    return [
        {**r, "reference": f"{period[0]} – {period[1]}", "recent_from": str(recent_start)[:10]}
        for r in rows
    ]


def monitoring_check(*, project_id: int) -> MonitoringReport:
    """Look at the production model as the periodic job does, and keep what was found."""
    project = Project.objects.get(pk=project_id)
    deployment = _deployment_current(project_id)
    figures: dict[str, Any] = {}
    alerts: list[dict] = []
    version = deployment.model_version if deployment else None
    classes = list(project.classes)
    if version is not None:
        objective = version.objective.spec() if version.objective_id else ObjectiveSpec()
        shares = dict(
            CaseScore.objects.filter(project_id=project_id)
            .values_list("predicted_label")
            .annotate(n=Count("id"))
            .values_list("predicted_label", "n")
        )
        total = sum(shares.values()) or 1
        predicted_share = {c: shares.get(c, 0) / total for c in project.classes}
        recall = {
            c: pc.get("recall")
            for c, pc in version.metrics.get("per_class", {}).items()
            if pc.get("support")
        }
        figures["predicted_share"] = predicted_share
        found = degenerate(predicted_share, recall)
        if found and found["kind"] == "one_class":
            alerts.append(
                _alert(
                    "degenerate",
                    "danger",
                    f"Version {version.number} predicts {found['class']!r} for "
                    f"{found['share']:.1%} of cases",
                    f"{found['share']:.1%} of the {total:,} cases it scored (alert at 99%)",
                    "Target the minority class in the queue, or train with balanced class "
                    "weights, then retrain.",
                )
            )
        elif found:
            recall_text = ", ".join(f"{c} {r:.2f}" for c, r in found["recall"].items())
            alerts.append(
                _alert(
                    "degenerate",
                    "danger",
                    f"Version {version.number} almost never finds {', '.join(found['classes'])}",
                    f"held-out recall {recall_text}",
                    "Target the minority class in the queue, or train with balanced class "
                    "weights, then retrain.",
                )
            )
        # Recent against older, each pooled: labeled cases that came after the version's
        # held-out period against that held-out period; before any have come, the held-out
        # period (the most recent at training) against cross-validation on the older part.
        metrics = version.metrics
        test_period = metrics.get("test_period")
        held_out = {
            "value": version.objective_value,
            "n": metrics.get("n_test", 0),
            "periods": [month(d) for d in test_period] if test_period else None,
            "what": "its held-out cases",
        }
        slices = [dict(s) for s in version.evaluation.get("slices", [])]
        live = _live_cases(version, test_period[1] + "T23:59:59Z") if test_period else None
        if live is not None and len(live.labels):
            slices += month_slices(
                live.occurred_at,
                live.labels,
                live.proba,
                classes,
                objective,
                version.threshold,
                "since training",
            )
            recent = {
                "value": objective_value(
                    objective, live.labels, live.proba, classes, version.threshold
                ),
                "n": len(live.labels),
                "periods": _periods(live.occurred_at),
                "what": "cases labeled since training",
            }
            stale = staleness(
                recent, held_out, objective.greater_is_better, project.alert_stale_margin
            )
        else:
            train_period = metrics.get("train_period")
            cross_validated = {
                "value": metrics.get("cv_objective"),
                "n": version.evaluation.get("cross_validation", {}).get("n", 0),
                "periods": [month(d) for d in train_period] if train_period else None,
                "what": "cross-validation on the older cases",
            }
            stale = staleness(
                held_out, cross_validated, objective.greater_is_better, project.alert_stale_margin
            )
        figures["slices"] = slices
        figures["staleness"] = stale
        if stale and stale["stale"]:
            recent_p = stale["recent_periods"] or ["?", "?"]
            older_p = stale["older_periods"] or ["?", "?"]
            alerts.append(
                _alert(
                    "stale",
                    "danger",
                    f"Version {version.number} is stale on recent cases",
                    f"{objective.describe()} {stale['recent']:.3f} on {stale['recent_n']:,} "
                    f"{stale['recent_what']} ({recent_p[0]}..{recent_p[1]}) against "
                    f"{stale['older']:.3f} on {stale['older_what']} ({older_p[0]}..{older_p[1]});"
                    f" margin {project.alert_stale_margin:g}",
                    "Retrain on a recent window (training configuration: last N months).",
                )
            )
        drift = _drift(version, project.alert_recent_months)
        figures["drift"] = drift
        shifted = [d for d in drift if d["psi"] > project.alert_psi_threshold]
        if shifted:
            alerts.append(
                _alert(
                    "drift",
                    "warning",
                    f"Feature drift in {', '.join(d['feature'] for d in shifted[:3])}"
                    + (f" and {len(shifted) - 3} more" if len(shifted) > 3 else ""),
                    ", ".join(f"PSI {d['feature']} {d['psi']:.2f}" for d in shifted[:3])
                    + f" (threshold {project.alert_psi_threshold:g}; recent cases from "
                    f"{shifted[0]['recent_from']})",
                    "Check how the feature is measured now (a new assay or unit?), then "
                    "retrain on a recent window.",
                )
            )
    return MonitoringReport.objects.create(
        project=project, model_version=version, figures=figures, alerts=alerts
    )


def monitoring_check_all() -> list[int]:
    """The periodic job: check every project that has a model in production."""
    checked = []
    for project_id in Deployment.objects.values_list("project_id", flat=True).distinct():
        try:
            monitoring_check(project_id=project_id)
            checked.append(project_id)
        except Exception:
            logger.exception("monitoring project %s failed", project_id)
    return checked
