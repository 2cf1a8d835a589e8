"""Reads of derived features: the definitions in force, the feature-set versions, a sample of
cases to try an expression on, and the preview of an expression over that sample."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import QuerySet

from apps.cases.models import Case
from apps.features.compute import Definition, definitions_from, derive, needed
from apps.features.expressions import ExpressionError, evaluate, parse
from apps.features.models import DerivedFeature, FeatureSetVersion
from apps.projects.models import Feature, Project

# Cases an expression is tried on while it is typed: enough for a distribution, few enough to
# fetch by primary key in a few milliseconds at any project size.
SAMPLE_SIZE = 2_000
PREVIEW_ROWS = 10
HISTOGRAM_BINS = 20
# A result with this few distinct values is drawn one bar per value (flags, bands).
FEW_VALUES = 12


def derived_feature_list(*, project: Project, retired: bool = False) -> QuerySet[DerivedFeature]:
    """The features in force (in the order they were defined), or the retired ones."""
    return (
        DerivedFeature.objects.filter(project=project, retired_at__isnull=not retired)
        .select_related("created_by", "retired_by")
        .order_by("-retired_at" if retired else "id")
    )


def derived_feature_get(*, project: Project, feature_id: int) -> DerivedFeature | None:
    return DerivedFeature.objects.filter(project=project, pk=feature_id).first()


def feature_set_list(*, project: Project) -> QuerySet[FeatureSetVersion]:
    return (
        FeatureSetVersion.objects.filter(project=project)
        .select_related("created_by")
        .order_by("-number")
    )


def feature_set_current(*, project: Project) -> FeatureSetVersion | None:
    """The newest feature-set version; None while the project has never defined a derived
    feature (its feature set is then its raw features alone, "version 0")."""
    return FeatureSetVersion.objects.filter(project=project).order_by("-number").first()


def feature_set_get(*, project: Project, number: int) -> FeatureSetVersion | None:
    return FeatureSetVersion.objects.filter(project=project, number=number).first()


def raw_feature_names(*, project: Project) -> list[str]:
    return list(
        Feature.objects.filter(project=project).order_by("position").values_list("name", flat=True)
    )


def feature_names(*, project: Project) -> list[str]:
    """Every feature a model can use: the raw ones in their order, then the derived ones in
    force in the order they can be computed."""
    current = feature_set_current(project=project)
    return raw_feature_names(project=project) + (current.names if current else [])


def derived_for_labeling(
    *, project: Project, raw_values: dict[str, float | None]
) -> list[dict[str, Any]]:
    """The derived features the project shows clinicians, computed for one case from its raw
    values. Read from the copy of the definitions kept on the project row, which the page has
    already loaded: no query on the labeling screen's hot path."""
    records = [d for d in (project.feature_set_definitions or []) if d.get("expression")]
    shown = [d for d in records if d.get("show_in_labeling")]
    if not shown:
        return []
    raw_names = list(raw_values)
    values = np.array(
        [[np.nan if raw_values[n] is None else raw_values[n] for n in raw_names]], dtype=float
    )
    try:
        definitions = needed(definitions_from(records), raw_names, [d["name"] for d in shown])
        results = derive(definitions, values, raw_names)
    except ExpressionError:
        return []  # a definition that no longer fits the raw features: shown nowhere
    out = []
    for record in shown:
        value = float(results[record["name"]].values[0])
        out.append({**record, "value": None if np.isnan(value) else value})
    return out


# ---------------------------------------------------------------------------------------------
# The sample and the preview.


@dataclass
class FeatureSample:
    """A sample of a project's cases with their raw features, ordered by case id."""

    case_ids: np.ndarray
    external_ids: list[str]
    occurred_at: list[datetime | None]
    labels: list[str]
    values: np.ndarray  # (n, len(names)) float64
    names: list[str]
    total: int  # how many cases the project has (at least the sample's size)

    @property
    def whole(self) -> bool:
        return len(self.case_ids) >= self.total


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def feature_sample(*, project: Project, size: int = SAMPLE_SIZE) -> FeatureSample:
    """Up to `size` cases spread over the project (a seeded draw of ids between its first and
    last case, fetched by primary key), or all of them when it has fewer."""
    names = raw_feature_names(project=project)
    table = Case._meta.db_table
    columns = "id, external_id, occurred_at, current_label, features"
    ends = _fetch(
        f"SELECT (SELECT id FROM {table} WHERE project_id = %s ORDER BY id LIMIT 1),"
        f" (SELECT id FROM {table} WHERE project_id = %s ORDER BY id DESC LIMIT 1)",
        [project.pk, project.pk],
    )[0]
    rows: list[tuple] = []
    total = 0
    if ends[0] is not None:
        low, high = int(ends[0]), int(ends[1])
        span = high - low + 1
        if span <= 2 * size:
            rows = _fetch(
                f"SELECT {columns} FROM {table} WHERE project_id = %s ORDER BY id", [project.pk]
            )
            total = len(rows)
        else:
            rng = np.random.default_rng(project.pk)
            candidates = np.unique(rng.integers(low, high + 1, size=2 * size)).tolist()
            marks = ", ".join(["%s"] * len(candidates))
            rows = _fetch(
                f"SELECT {columns} FROM {table} WHERE project_id = %s AND id IN ({marks})"
                " ORDER BY id",
                [project.pk, *candidates],
            )
            if len(rows) < size // 4:
                # Ids of this project are scattered among others': take its first cases.
                rows = _fetch(
                    f"SELECT {columns} FROM {table} WHERE project_id = %s ORDER BY id LIMIT %s",
                    [project.pk, size],
                )
            if len(rows) > size:
                keep = np.sort(rng.choice(len(rows), size, replace=False))
                rows = [rows[i] for i in keep]
            # An estimate from the ids' span: exact counts cost a scan at a million cases.
            total = max(len(rows), span)
    width = len(names)
    n = len(rows)
    blob = b"".join(bytes(r[4]) for r in rows)
    values = (
        np.frombuffer(blob, dtype="<f8").reshape(n, width).copy()
        if n and len(blob) == 8 * width * n
        else np.full((n, width), np.nan)
    )
    return FeatureSample(
        case_ids=np.array([r[0] for r in rows], dtype=np.int64),
        external_ids=[r[1] for r in rows],
        occurred_at=[r[2] for r in rows],
        labels=[r[3] for r in rows],
        values=values,
        names=names,
        total=total,
    )


@dataclass
class Preview:
    """An expression tried on a sample: a few cases, the distribution, what went wrong."""

    expression: str
    error: ExpressionError | None = None
    # Reasons it cannot be saved as it is (all missing, the same value everywhere).
    problems: list[str] = field(default_factory=list)
    # Worth knowing, but no reason to refuse (some divisions by zero, many missing).
    notes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    histogram: dict[str, Any] = field(default_factory=dict)
    by_class: list[dict[str, Any]] = field(default_factory=list)
    sample_size: int = 0
    whole: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        error = None
        if self.error is not None:
            error = {
                "message": self.error.describe(),
                "reason": self.error.reason,
                "position": self.error.position,
                "end": self.error.end,
                "line": self.error.line,
                "column": self.error.column,
            }
        return {
            "expression": self.expression,
            "ok": self.ok,
            "error": error,
            "problems": self.problems,
            "notes": self.notes,
            "inputs": self.inputs,
            "rows": self.rows,
            "summary": self.summary,
            "histogram": self.histogram,
            "by_class": self.by_class,
            "sample_size": self.sample_size,
            "whole_project": self.whole,
        }


def _plain(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def preview_values(
    *,
    expression: str,
    definitions: list[Definition],
    sample: FeatureSample,
    classes: list[str],
    rows: int = PREVIEW_ROWS,
) -> Preview:
    """Evaluate `expression` over the sample, with `definitions` the derived features it may
    read (computed first). Pure: the caller brings the sample."""
    preview = Preview(expression=expression, sample_size=len(sample.case_ids), whole=sample.whole)
    known = [*sample.names, *(d.name for d in definitions)]
    try:
        parsed = parse(expression, known)
    except ExpressionError as error:
        preview.error = error
        return preview
    preview.inputs = list(parsed.names)
    n = len(sample.case_ids)
    if n == 0:
        preview.notes.append("The project has no cases yet: the expression is checked, not tried.")
        return preview
    try:
        used = needed(definitions, sample.names, parsed.names)
        derived = derive(used, sample.values, sample.names)
        position = {name: j for j, name in enumerate(sample.names)}
        columns = {name: sample.values[:, j] for name, j in position.items()}
        columns.update({name: result.values for name, result in derived.items()})
        result = evaluate(parsed, columns, n)
    except ExpressionError as error:
        preview.error = error
        return preview
    values = result.values
    known_values = values[~np.isnan(values)]
    where = "of the project's" if sample.whole else "sampled"
    missing = n - len(known_values)
    preview.summary = {
        "cases": n,
        "missing": missing,
        "missing_share": missing / n,
        "min": float(known_values.min()) if len(known_values) else None,
        "median": float(np.median(known_values)) if len(known_values) else None,
        "max": float(known_values.max()) if len(known_values) else None,
        "mean": float(known_values.mean()) if len(known_values) else None,
        "distinct": len(np.unique(known_values[:10_000])) if len(known_values) else 0,
        "division_by_zero": result.division_by_zero,
        "undefined": result.undefined,
    }
    if result.division_by_zero:
        text = f"{result.division_by_zero:,} of the {n:,} {where} cases divide by zero"
        if result.division_by_zero == n:
            preview.problems.append(f"Division by zero in every case: {text}.")
        else:
            preview.notes.append(f"{text}; they are missing (guard with where(x == 0, …, …)).")
    if result.undefined:
        preview.notes.append(
            f"{result.undefined:,} {where} cases cannot be computed (log or sqrt out of range, "
            "or a number too large); they are missing."
        )
    if not len(known_values):
        preview.problems.append(
            f"The result is missing for all {n:,} {where} cases: a feature that is always "
            "missing cannot help a model."
        )
    elif len(known_values) > 1 and known_values.min() == known_values.max():
        value = f"{known_values[0]:.6g}"
        preview.problems.append(
            f"The result is {value} for every {where.replace('of the ', '')} case"
            + ("" if sample.whole else f" ({len(known_values):,} checked; saving checks them all)")
            + ": a constant cannot help a model."
        )
    elif missing / n > 0.5:
        preview.notes.append(f"Missing for {missing / n:.0%} of the {where} cases.")
    preview.histogram = _histogram(known_values)
    preview.by_class = [
        {
            "label": cls,
            "cases": int(mask.sum()),
            "median": _plain(float(np.nanmedian(values[mask])))
            if np.any(mask & ~np.isnan(values))
            else None,
            # For a flag, the mean is the share of cases it holds for.
            "mean": _plain(float(np.nanmean(values[mask])))
            if np.any(mask & ~np.isnan(values))
            else None,
        }
        for cls in classes
        if (mask := np.array([lab == cls for lab in sample.labels], dtype=bool)).any()
    ]
    shown = np.linspace(0, n - 1, min(rows, n)).round().astype(int)
    for i in shown:
        preview.rows.append(
            {
                "case_id": int(sample.case_ids[i]),
                "external_id": sample.external_ids[i],
                "inputs": {name: _plain(float(columns[name][i])) for name in parsed.names},
                "value": _plain(float(values[i])),
            }
        )
    return preview


def _histogram(values: np.ndarray) -> dict[str, Any]:
    if not len(values):
        return {}
    distinct = np.unique(values)
    if len(distinct) <= FEW_VALUES:
        counts = [int(np.sum(values == v)) for v in distinct]
        return {"kind": "values", "values": distinct.tolist(), "counts": counts}
    low, high = float(values.min()), float(values.max())
    below = above = 0
    inner_low, inner_high = (float(q) for q in np.quantile(values, [0.005, 0.995]))
    if inner_high > inner_low and inner_high - inner_low < 0.5 * (high - low):
        # A long tail (a ratio of lab values) would squeeze the rest into one bar: draw the
        # middle 99% and put the few beyond it into the end bars, saying so.
        below = int(np.sum(values < inner_low))
        above = int(np.sum(values > inner_high))
        low, high = inner_low, inner_high
        values = np.clip(values, low, high)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))
    return {
        "kind": "bins",
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "below": below,
        "above": above,
    }


def derived_preview(
    *,
    project: Project,
    expression: str,
    replacing: str | None = None,
    sample: FeatureSample | None = None,
) -> Preview:
    """Try an expression on a sample of the project's cases. It may read the raw features and
    the derived features in force (but not `replacing`, the one being changed, nor one that
    reads it: that would be a circle)."""
    current = feature_set_current(project=project)
    everything = definitions_from(current.definitions if current else [])
    definitions = everything
    if replacing:
        definitions = _without_dependents(everything, replacing, project)
    sample = sample if sample is not None else feature_sample(project=project)
    preview = preview_values(
        expression=expression,
        definitions=definitions,
        sample=sample,
        classes=list(project.classes),
    )
    error = preview.error
    left_out = {d.name for d in everything} - {d.name for d in definitions}
    if error is not None and error.reason.startswith("unknown feature"):
        name = error.reason.split("'")[1] if "'" in error.reason else ""
        if name in left_out:
            # Not unknown: reading it would make a circle.
            reason = (
                f"{replacing} cannot read itself"
                if name == replacing
                else f"{name} reads {replacing}, so {replacing} cannot read it (a circle)"
            )
            preview.error = ExpressionError(reason, error.position, error.end, expression)
    return preview


def _without_dependents(
    definitions: list[Definition], name: str, project: Project
) -> list[Definition]:
    """The definitions minus `name` and every one that reads it, directly or not."""
    raw = raw_feature_names(project=project)
    known = set(raw) | {d.name for d in definitions}
    reads = {}
    for d in definitions:
        try:
            reads[d.name] = set(parse(d.expression, known).names)
        except ExpressionError:
            reads[d.name] = set()
    dropped = {name}
    changed = True
    while changed:
        changed = False
        for d in definitions:
            if d.name not in dropped and reads[d.name] & dropped:
                dropped.add(d.name)
                changed = True
    return [d for d in definitions if d.name not in dropped]


def derived_dependents(*, project: Project, name: str) -> list[str]:
    """The derived features in force that read `name`, directly or through others."""
    current = feature_set_current(project=project)
    definitions = definitions_from(current.definitions if current else [])
    kept = {d.name for d in _without_dependents(definitions, name, project)}
    return [d.name for d in definitions if d.name not in kept and d.name != name]
