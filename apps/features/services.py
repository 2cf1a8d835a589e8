"""Writes of derived features: define, change and retire one. Each write appends a feature-set
version with every definition in force after it, who, when and why."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.cases.selectors import case_feature_matrix
from apps.features.compute import Definition, definitions_from, derive, needed, parsed_in_order
from apps.features.expressions import FUNCTIONS, ExpressionError, evaluate, parse
from apps.features.models import DerivedFeature, FeatureSetVersion
from apps.features.selectors import (
    Preview,
    derived_dependents,
    derived_preview,
    raw_feature_names,
)
from apps.projects.models import Project
from apps.projects.services import RESERVED_COLUMNS

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME = 100
# Python's words cannot name a feature: the expression parser reads them as keywords.
_KEYWORDS = {"and", "or", "not", "if", "else", "for", "in", "is", "lambda", "None", "True"}


def _name_problem(project: Project, name: str) -> str | None:
    if not name:
        return "Give the feature a name."
    if len(name) > MAX_NAME:
        return f"A name has at most {MAX_NAME} characters."
    if not _NAME_RE.match(name):
        return (
            f"{name!r} must start with a letter or _ and hold only letters, digits and _ "
            "(it is used in expressions)."
        )
    if name.startswith("__"):
        return "A name cannot start with __."
    if name in FUNCTIONS or name in _KEYWORDS or name in {"False", "None"}:
        return f"{name!r} is a word of the expression language; choose another name."
    if name in RESERVED_COLUMNS:
        return f"{name!r} is a reserved column."
    if name in raw_feature_names(project=project):
        return f"{name!r} is already a raw feature of this project."
    if DerivedFeature.objects.filter(project=project, name=name, retired_at__isnull=True).exists():
        return f"{name!r} is already a derived feature of this project."
    return None


def _current_definitions(project: Project) -> list[Definition]:
    return definitions_from(
        DerivedFeature.objects.filter(project=project, retired_at__isnull=True)
        .order_by("id")
        .values("name", "expression")
    )


def _check_whole_project(project: Project, expression: str, definitions: list[Definition]) -> str:
    """The sample looked constant (or all missing): look at every case before refusing, so
    that a rare value (age > 100 in a million cases) is not mistaken for none. Returns the
    problem, or '' when the whole project shows none."""
    matrix = case_feature_matrix(project_id=project.pk)
    parsed = parse(expression, [*matrix.feature_names, *(d.name for d in definitions)])
    used = needed(definitions, matrix.feature_names, parsed.names)
    columns: dict[str, np.ndarray] = {
        name: matrix.values[:, j] for j, name in enumerate(matrix.feature_names)
    }
    columns.update(
        {n: r.values for n, r in derive(used, matrix.values, matrix.feature_names).items()}
    )
    values = evaluate(parsed, columns, len(matrix.case_ids)).values
    known = values[~np.isnan(values)]
    if not len(known):
        return f"The result is missing for all {len(values):,} cases of the project."
    if known.min() == known.max():
        return f"The result is {known[0]:.6g} for every one of the project's {len(values):,} cases."
    return ""


def _checked(
    project: Project, expression: str, definitions: list[Definition], replacing: str | None
) -> Preview:
    """Refuse (ValidationError on `expression`) an expression outside the grammar, one that
    reads an unknown feature or that gives no usable values."""
    if not expression.strip():
        raise ValidationError({"expression": "Write an expression, such as weight / height ** 2."})
    preview = derived_preview(project=project, expression=expression, replacing=replacing)
    if preview.error is not None:
        raise ValidationError({"expression": preview.error.describe()})
    if preview.problems:
        problem = preview.problems[0]
        if not preview.whole:
            problem = _check_whole_project(project, expression, definitions)
        if problem:
            raise ValidationError({"expression": problem})
    return preview


def _feature_set_append(
    *, project: Project, user: User | None, change: str, note: str
) -> FeatureSetVersion:
    """Write the next feature-set version (the caller holds the project's row lock) and keep
    a copy of its definitions on the project for the labeling screen."""
    active = list(DerivedFeature.objects.filter(project=project, retired_at__isnull=True))
    raw = raw_feature_names(project=project)
    try:
        ordered = parsed_in_order(definitions_from(a.snapshot() for a in active), raw)
    except ExpressionError as error:
        raise ValidationError({"expression": error.describe()}) from None
    by_name = {a.name: a for a in active}
    definitions = [by_name[d.name].snapshot() for d, _ in ordered]
    number = (
        FeatureSetVersion.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0
    ) + 1
    version = FeatureSetVersion.objects.create(
        project=project,
        number=number,
        definitions=definitions,
        change=change[:300],
        note=note[:300],
        created_by=user,
    )
    Project.objects.filter(pk=project.pk).update(feature_set_definitions=definitions)
    project.feature_set_definitions = definitions
    audit_record(
        action=AuditAction.FEATURE_SET,
        actor=user,
        summary=f"Feature set v{number}: {change}"[:300],
        project_id=project.pk,
        object_type="feature set",
        object_id=number,
        detail={"note": note[:300], "definitions": definitions},
    )
    return version


def derived_feature_create(
    *,
    project: Project,
    created_by: User,
    name: str,
    expression: str,
    unit: str = "",
    group: str = "",
    description: str = "",
    show_in_labeling: bool = False,
    note: str = "",
) -> tuple[DerivedFeature, FeatureSetVersion]:
    """Define a derived feature; the next training run can use it. Returns it and the new
    feature-set version."""
    name = (name or "").strip()
    expression = (expression or "").strip()
    problem = _name_problem(project, name)
    if problem:
        raise ValidationError({"name": problem})
    definitions = _current_definitions(project)
    # Checked (and tried on the sample) before the transaction: no computing under a lock.
    _checked(project, expression, definitions, replacing=None)
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        problem = _name_problem(project, name)  # someone may have taken it meanwhile
        if problem:
            raise ValidationError({"name": problem})
        feature = DerivedFeature.objects.create(
            project=project,
            name=name,
            expression=expression,
            unit=unit.strip()[:40],
            group=group.strip()[:60],
            description=description.strip()[:300],
            show_in_labeling=bool(show_in_labeling),
            created_by=created_by,
        )
        version = _feature_set_append(
            project=project, user=created_by, change=f"Added {name} = {expression}", note=note
        )
    return feature, version


def derived_feature_change(
    *,
    feature: DerivedFeature,
    changed_by: User,
    expression: str | None = None,
    unit: str | None = None,
    group: str | None = None,
    description: str | None = None,
    show_in_labeling: bool | None = None,
    note: str = "",
) -> FeatureSetVersion:
    """Change a derived feature in force (its name stays). Models already trained keep the
    definition they were trained with."""
    if feature.is_retired:
        raise ValidationError(f"{feature.name} was retired; define a new feature instead.")
    project = feature.project
    new: dict[str, Any] = {
        "expression": feature.expression if expression is None else expression.strip(),
        "unit": feature.unit if unit is None else unit.strip()[:40],
        "group": feature.group if group is None else group.strip()[:60],
        "description": feature.description if description is None else description.strip()[:300],
        "show_in_labeling": feature.show_in_labeling
        if show_in_labeling is None
        else bool(show_in_labeling),
    }
    changed = [k for k, v in new.items() if getattr(feature, k) != v]
    if not changed:
        raise ValidationError("Nothing changed.")
    if "expression" in changed:
        definitions = [d for d in _current_definitions(project) if d.name != feature.name]
        _checked(project, new["expression"], definitions, replacing=feature.name)
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        locked = DerivedFeature.objects.get(pk=feature.pk)
        if locked.is_retired:
            raise ValidationError(f"{feature.name} was retired meanwhile.")
        for key, value in new.items():
            setattr(locked, key, value)
        locked.save(update_fields=[*new, "changed_at"])
        if "expression" in changed:
            what = f"Changed {feature.name}: {feature.expression} → {new['expression']}"
        else:
            labels = {
                "show_in_labeling": "shown to clinicians"
                if new["show_in_labeling"]
                else "hidden from clinicians",
            }
            what = f"Changed {feature.name}: " + ", ".join(labels.get(k, k) for k in changed)
        version = _feature_set_append(project=project, user=changed_by, change=what, note=note)
    for key, value in new.items():
        setattr(feature, key, value)
    return version


def derived_feature_retire(
    *, feature: DerivedFeature, retired_by: User, note: str = ""
) -> FeatureSetVersion:
    """Take a derived feature out of the feature set. Models trained with it keep computing it
    from the definition they recorded."""
    if feature.is_retired:
        raise ValidationError(f"{feature.name} is already retired.")
    project = feature.project
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        readers = derived_dependents(project=project, name=feature.name)
        if readers:
            raise ValidationError(
                f"{', '.join(readers)} read{'s' if len(readers) == 1 else ''} {feature.name}: "
                "change or retire " + ("it" if len(readers) == 1 else "them") + " first."
            )
        updated = DerivedFeature.objects.filter(pk=feature.pk, retired_at__isnull=True).update(
            retired_at=timezone.now(), retired_by=retired_by
        )
        if not updated:
            raise ValidationError(f"{feature.name} is already retired.")
        version = _feature_set_append(
            project=project, user=retired_by, change=f"Retired {feature.name}", note=note
        )
    feature.refresh_from_db()
    return version
