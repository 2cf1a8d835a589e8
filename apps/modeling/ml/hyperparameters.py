"""The hyperparameters a project may set, per model family, each with the range a real model
needs. No Django here: the configuration service checks a change with it, and training checks
again what a run was given (a configuration saved before the bounds, or a run's own override).

Unbounded, one run asking for 10^9 trees held the single ML worker for minutes while every
other project's run waited; NaN or infinity could not even be stored (JSON has neither).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HyperparameterRange:
    whole: bool  # a count (int) rather than a real number
    low: float
    high: float
    default: float

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} from {self.low:,g} to {self.high:,g}"


# Wide enough for any tabular model Casebook trains (the defaults sit well inside); the upper
# ends keep one fit of a few hundred thousand cases to minutes, not hours.
HYPERPARAMETER_RANGES: dict[str, dict[str, HyperparameterRange]] = {
    "logistic_regression": {
        "C": HyperparameterRange(whole=False, low=1e-4, high=1e4, default=1.0),
        "max_iter": HyperparameterRange(whole=True, low=1, high=10_000, default=1000),
    },
    "hist_gradient_boosting": {
        "max_iter": HyperparameterRange(whole=True, low=1, high=2_000, default=200),
        "learning_rate": HyperparameterRange(whole=False, low=0.001, high=1.0, default=0.1),
        "max_leaf_nodes": HyperparameterRange(whole=True, low=2, high=1_024, default=31),
    },
    "random_forest": {
        "n_estimators": HyperparameterRange(whole=True, low=1, high=2_000, default=200),
        "min_samples_leaf": HyperparameterRange(whole=True, low=1, high=1_000, default=1),
    },
}


class HyperparameterError(ValueError):
    """A hyperparameter outside its range or not a number; the message names both."""


def hyperparameter_value(family: str, name: str, raw: Any) -> int | float:
    """`raw` as the number the model is built with, or HyperparameterError naming the
    parameter and its range. Strings, booleans, NaN and infinities are refused, not cast:
    "1e9" or true in a JSON body is a mistake to report, not a value to guess at."""
    bound = HYPERPARAMETER_RANGES[family][name]
    label = family.replace("_", " ")
    refused = HyperparameterError(f"{name} is {bound.describe()} for {label}; {raw!r} is not.")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise refused
    if isinstance(raw, float) and not math.isfinite(raw):
        raise refused
    if bound.whole:
        if isinstance(raw, float) and not raw.is_integer():
            raise refused
        value: int | float = int(raw)
    else:
        value = float(raw)
    if not bound.low <= value <= bound.high:
        raise refused
    return value
