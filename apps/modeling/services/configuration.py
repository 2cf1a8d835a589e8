"""Changes of a project's objective and training configuration."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.features import selectors as feature_selectors
from apps.modeling.ml.hyperparameters import (
    HYPERPARAMETER_RANGES,
    HyperparameterError,
    hyperparameter_value,
)
from apps.modeling.ml.objectives import (
    ObjectiveError,
    ObjectiveSpec,
    objective_check,
)
from apps.modeling.models import (
    ModelFamily,
    Objective,
    TrainingConfig,
)
from apps.projects.models import Project

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Objective and training configuration: versioned, every change a new row.


def objective_change(
    *,
    project: Project,
    changed_by: User | None,
    metric: str,
    positive_class: str = "",
    beta: float = 1.0,
    min_precision: float = 0.8,
    k: int = 100,
    cost_matrix: list[list[float]] | None = None,
    note: str = "",
) -> Objective:
    """Set the metric the project optimizes from now on; earlier rows stay as history.

    Runs already trained keep the objective they were chosen under."""
    spec = ObjectiveSpec(
        metric=metric,
        positive_class=positive_class or "",
        beta=float(beta),
        min_precision=float(min_precision),
        k=int(k),
        cost_matrix=cost_matrix or [],
    )
    try:
        objective_check(spec, list(project.classes))
    except ObjectiveError as error:
        raise ValidationError({"objective": str(error)}) from error
    with transaction.atomic():
        objective = Objective.objects.create(
            project=project,
            metric=spec.metric,
            positive_class=spec.positive_class,
            beta=spec.beta,
            min_precision=spec.min_precision,
            k=spec.k,
            cost_matrix=spec.cost_matrix if metric == "expected_cost" else [],
            note=note[:300],
            changed_by=changed_by,
        )
        audit_record(
            action=AuditAction.OBJECTIVE,
            actor=changed_by,
            summary=f"Objective: {objective.spec().describe()}"[:300],
            project_id=project.pk,
            object_type="objective",
            object_id=objective.pk,
            detail={"note": note[:300]},
        )
    return objective


# Hyperparameters a configuration may set, per family, with their types.
def _hyperparameters_check(
    model_family: str, hyperparameters: dict[str, Any] | None
) -> tuple[dict[str, int | float], str]:
    """The hyperparameters as numbers, and what is wrong with them ("" when nothing): every
    unknown name and every value outside its family's range is named, with the range. Under
    "auto" a name is checked against each family that reads it."""
    families = (
        HYPERPARAMETER_RANGES
        if model_family == "auto"
        else {model_family: HYPERPARAMETER_RANGES.get(model_family, {})}
    )
    known = sorted({name for spec in families.values() for name in spec})
    hyper: dict[str, int | float] = {}
    problems: list[str] = []
    for name, raw in (hyperparameters or {}).items():
        readers = [family for family, spec in families.items() if name in spec]
        if not readers:
            problems.append(
                f"{name!r} is not a hyperparameter of {model_family}; "
                f"known: {', '.join(known) or 'none'}."
            )
            continue
        try:
            for family in readers:
                hyper[name] = hyperparameter_value(family, name, raw)
        except HyperparameterError as error:
            problems.append(str(error))
    return hyper, " ".join(problems)


def training_config_change(
    *,
    project: Project,
    changed_by: User | None,
    model_family: str,
    class_weight: str = "",
    window_months: int | None = None,
    features: list[str] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    cv_folds: int = 5,
    note: str = "",
) -> TrainingConfig:
    """Set how the project trains from now on; earlier rows stay as history."""
    errors: dict[str, str] = {}
    if model_family not in ModelFamily.values:
        errors["model_family"] = (
            f"Unknown model family {model_family!r}; choose one of {', '.join(ModelFamily.values)}."
        )
    if class_weight not in ("", "balanced"):
        errors["class_weight"] = "Class weighting is none or balanced."
    if window_months is not None and not 1 <= int(window_months) <= 600:
        errors["window_months"] = "The training window is 1 to 600 months, or empty for all data."
    # Raw features and the derived ones in force: a model may read either.
    known = feature_selectors.feature_names(project=project)
    chosen = [f.strip() for f in (features or []) if f.strip()]
    unknown = [f for f in chosen if f not in known]
    if unknown:
        errors["features"] = f"Not features of this project: {', '.join(unknown)}."
    hyper, hyper_error = _hyperparameters_check(model_family, hyperparameters)
    if hyper_error:
        errors["hyperparameters"] = hyper_error
    if not 0.05 <= float(test_fraction) <= 0.5:
        errors["test_fraction"] = "The held-out share is between 0.05 and 0.5."
    if not 2 <= int(cv_folds) <= 10:
        errors["cv_folds"] = "Cross-validation uses 2 to 10 folds."
    if int(seed) < 0:
        errors["seed"] = "The seed is a non-negative integer."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        config = TrainingConfig.objects.create(
            project=project,
            model_family=model_family,
            class_weight=class_weight,
            window_months=int(window_months) if window_months else None,
            features=[f for f in known if f in chosen],  # in the project's order
            hyperparameters=hyper,
            seed=int(seed),
            test_fraction=float(test_fraction),
            cv_folds=int(cv_folds),
            note=note[:300],
            changed_by=changed_by,
        )
        audit_record(
            action=AuditAction.TRAINING_CONFIG,
            actor=changed_by,
            summary=f"Training configuration: {model_family}"
            + (f", last {config.window_months} months" if config.window_months else "")
            + (", balanced classes" if class_weight else ""),
            project_id=project.pk,
            object_type="training configuration",
            object_id=config.pk,
            detail={"params": config.params(), "note": note[:300]},
        )
    return config
