"""Forms of the derived-features page: define or change a feature, retire one."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.features.expressions import MAX_LENGTH


class DerivedFeatureForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Used in expressions and shown to the team: letters, digits and _.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. bnp_per_egfr", "autocomplete": "off"}),
    )
    expression = forms.CharField(
        max_length=MAX_LENGTH,
        widget=forms.Textarea(
            attrs={
                "rows": 3,
                "spellcheck": "false",
                "autocomplete": "off",
                "placeholder": "e.g. nt_pro_bnp / egfr",
                "class": "code",
            }
        ),
    )
    unit = forms.CharField(max_length=40, required=False)
    group = forms.CharField(
        max_length=60,
        required=False,
        help_text="Where clinicians see it on the labeling screen; empty: “Derived”.",
    )
    description = forms.CharField(
        max_length=300, required=False, help_text="What it means, in a clinician's words."
    )
    show_in_labeling = forms.BooleanField(
        required=False, label="Show it to clinicians on the labeling screen"
    )
    note = forms.CharField(
        max_length=300,
        required=False,
        label="Why",
        help_text="Kept with the feature-set version this change makes.",
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            # A feature keeps its name: models read it by name.
            self.fields["name"].required = False
            self.fields["name"].disabled = True

    def service_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data.pop("name", None)
        return data


class RetireForm(forms.Form):
    note = forms.CharField(max_length=300, required=False)
