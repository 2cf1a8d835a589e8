"""Forms of the labeling app: the queue settings and a relabel request."""

from django import forms

from apps.labeling.models import (
    STRATEGY_HELP,
    QueueSettings,
    QueueStrategy,
    UncertaintyMeasure,
)


class QueueSettingsForm(forms.Form):
    strategy = forms.ChoiceField(
        choices=[
            (value, f"{label}: {STRATEGY_HELP[value]}") for value, label in QueueStrategy.choices
        ],
        widget=forms.RadioSelect,
    )
    uncertainty_measure = forms.ChoiceField(
        choices=UncertaintyMeasure.choices, label="Uncertainty measure"
    )
    target_class = forms.ChoiceField(
        required=False,
        label="Rare class to target",
        help_text="For minority-targeting: cases most likely to be of this class come first.",
    )
    mix_base = forms.ChoiceField(
        choices=[
            (QueueStrategy.UNCERTAINTY, "Uncertainty"),
            (QueueStrategy.MINORITY, "Minority-targeted"),
        ],
        label="A mix is based on",
    )
    random_share = forms.IntegerField(
        min_value=0,
        max_value=100,
        label="Random share of a mix (%)",
        help_text="Keeps the labeled set representative of all cases.",
    )
    seed = forms.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        help_text="Fixes random orders and the overlap draw, so an order can be explained later.",
    )
    lease_minutes = forms.IntegerField(
        min_value=1,
        max_value=24 * 60,
        label="Lease (minutes)",
        help_text="How long a case stays with the clinician it was handed to.",
    )
    overlap_share = forms.IntegerField(
        min_value=0,
        max_value=100,
        label="Overlap (% of new cases)",
        help_text="Cases labeled independently by several clinicians, to measure agreement.",
    )
    overlap_labels = forms.IntegerField(
        min_value=2, max_value=10, label="Clinicians per overlap case"
    )
    note = forms.CharField(
        max_length=500, required=False, label="Why this change", help_text="Kept in the history."
    )

    def __init__(self, *args, classes: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target_class"].choices = [("", "—")] + [(c, c) for c in classes]

    @classmethod
    def initial_from(cls, current: QueueSettings) -> dict:
        return {
            "strategy": current.strategy,
            "uncertainty_measure": current.uncertainty_measure,
            "target_class": current.target_class,
            "mix_base": current.mix_base,
            "random_share": round(current.random_share * 100),
            "seed": current.seed,
            "lease_minutes": current.lease_minutes,
            "overlap_share": round(current.overlap_share * 100),
            "overlap_labels": current.overlap_labels,
        }

    def service_fields(self) -> dict:
        data = dict(self.cleaned_data)
        data["random_share"] = data["random_share"] / 100
        data["overlap_share"] = data["overlap_share"] / 100
        return data


class RelabelRequestForm(forms.Form):
    assignee = forms.ChoiceField(required=False, label="Ask")
    reason = forms.CharField(max_length=500, required=False)

    def __init__(self, *args, members: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [("", "Any clinician (pool)")] + [(m, m) for m in members]
