"""Forms of the modeling app: the objective, the training configuration, deploy and rollback."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from apps.modeling.models import ModelFamily, Objective, ObjectiveMetric, TrainingConfig

METRIC_HELP = {
    "accuracy": "Share of cases given the right class.",
    "balanced_accuracy": "Mean recall over classes: a rare class counts as much as a common one.",
    "roc_auc": "How well the positive class is ranked above the others (threshold-free).",
    "pr_auc": "Precision over all recall levels for the positive class (threshold-free).",
    "f_beta": "Harmonic mean of precision and recall; beta > 1 weighs recall more.",
    "recall_at_precision": "Most of the positive class found while precision stays at the level.",
    "precision_at_k": "Of the k cases ranked most likely positive, the share that is positive.",
    "expected_cost": "Mean cost of the decisions under the cost matrix (lower is better).",
}


class ObjectiveForm(forms.Form):
    metric = forms.ChoiceField(
        choices=[(v, f"{label}: {METRIC_HELP[v]}") for v, label in ObjectiveMetric.choices],
        widget=forms.RadioSelect,
    )
    positive_class = forms.ChoiceField(
        required=False,
        label="Class of interest",
        help_text="The rare or actionable class; empty means the last class.",
    )
    beta = forms.FloatField(min_value=0.01, max_value=100, initial=1.0, label="Beta (F-beta)")
    min_precision = forms.FloatField(
        min_value=0.01, max_value=1.0, initial=0.8, label="Fixed precision (recall at precision)"
    )
    k = forms.IntegerField(
        min_value=1, max_value=1_000_000, initial=100, label="k (precision at k)"
    )
    cost_matrix = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "e.g.  0 1 / 10 0"}),
        label="Cost matrix (expected cost)",
        help_text="One row per true class, one column per decided class, in the project's class "
        "order; numbers separated by spaces.",
    )
    note = forms.CharField(required=False, max_length=300, label="Why the change")

    # Which metrics use which parameter: the page shows a field only for those.
    FIELD_METRICS = {
        "positive_class": "roc_auc pr_auc f_beta recall_at_precision precision_at_k",
        "beta": "f_beta",
        "min_precision": "recall_at_precision",
        "k": "precision_at_k",
        "cost_matrix": "expected_cost",
    }

    def __init__(self, *args: Any, classes: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.classes = classes
        for name, metrics in self.FIELD_METRICS.items():
            self.fields[name].metrics = metrics  # read by the template as field.field.metrics
        self.fields["positive_class"].choices = [("", "(the last class)")] + [
            (c, c) for c in classes
        ]

    @staticmethod
    def initial_from(objective: Objective) -> dict[str, Any]:
        return {
            "metric": objective.metric,
            "positive_class": objective.positive_class,
            "beta": objective.beta,
            "min_precision": objective.min_precision,
            "k": objective.k,
            "cost_matrix": "\n".join(
                " ".join(f"{v:g}" for v in row) for row in objective.cost_matrix
            ),
        }

    def clean_cost_matrix(self) -> list[list[float]]:
        text = self.cleaned_data.get("cost_matrix") or ""
        rows = []
        for number, line in enumerate(text.strip().splitlines(), start=1):
            try:
                rows.append([float(v) for v in line.replace(",", " ").split()])
            except ValueError as error:
                raise forms.ValidationError(
                    f"Row {number} holds something that is not a number."
                ) from error
            if len(rows[-1]) != len(rows[0]):
                raise forms.ValidationError(
                    f"Row {number} has {len(rows[-1])} numbers, row 1 has {len(rows[0])}."
                )
        return rows

    def service_fields(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


class TrainingConfigForm(forms.Form):
    model_family = forms.ChoiceField(choices=ModelFamily.choices, label="Model family")
    class_weight = forms.ChoiceField(
        required=False,
        choices=[("", "None"), ("balanced", "Balanced")],
        label="Class weighting",
        help_text="Balanced: a rare class weighs as much as a common one.",
    )
    window_months = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=600,
        label="Training window (months)",
        help_text="Train on the last N months of labeled cases; empty: all data.",
    )
    features = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: all features, derived ones included.",
    )
    hyperparameters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "{} (the defaults)"}),
        help_text='JSON, e.g. {"C": 0.5} (logistic regression, 0.0001 to 10,000), '
        '{"max_iter": 300, "learning_rate": 0.05} (gradient boosting, up to 2,000 and 0.001 to 1), '
        '{"n_estimators": 300} (random forest, 1 to 2,000).',
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)
    test_fraction = forms.FloatField(
        min_value=0.05, max_value=0.5, initial=0.2, label="Held-out share (most recent)"
    )
    cv_folds = forms.IntegerField(
        min_value=2, max_value=10, initial=5, label="Cross-validation folds"
    )
    note = forms.CharField(required=False, max_length=300, label="Why the change")

    def __init__(self, *args: Any, features: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["features"].choices = [(f, f) for f in features]

    @staticmethod
    def initial_from(config: TrainingConfig) -> dict[str, Any]:
        return {
            "model_family": config.model_family,
            "class_weight": config.class_weight,
            "window_months": config.window_months,
            "features": config.features,
            "hyperparameters": json.dumps(config.hyperparameters) if config.hyperparameters else "",
            "seed": config.seed,
            "test_fraction": config.test_fraction,
            "cv_folds": config.cv_folds,
        }

    def clean_hyperparameters(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("hyperparameters") or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(
                f"Not valid JSON: {error.msg} at column {error.colno}."
            ) from error
        except RecursionError:
            raise forms.ValidationError("Not valid JSON: nested too deep.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give an object such as {"C": 0.5}.')
        return value

    def service_fields(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


class DeployForm(forms.Form):
    # The production version the page showed: a deploy from a page that is out of date is
    # refused rather than silently undoing someone else's deploy.
    expected_production = forms.IntegerField(required=False, widget=forms.HiddenInput)
    note = forms.CharField(required=False, max_length=300)
