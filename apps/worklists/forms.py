"""The form that makes a worklist. It only reads the fields; the service checks them."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.worklists.models import WorklistSource
from apps.worklists.services import SIZE_MAX, SIZE_MIN


class WorklistForm(forms.Form):
    name = forms.CharField(max_length=120)
    risk_class = forms.ChoiceField(label="Risk of")
    size = forms.IntegerField(
        label="Cases",
        initial=25,
        widget=forms.NumberInput(attrs={"min": SIZE_MIN, "max": SIZE_MAX, "step": 1}),
        help_text=f"{SIZE_MIN} to {SIZE_MAX}, highest risk first.",
    )
    source = forms.ChoiceField(
        label="From", choices=WorklistSource.choices, initial=WorklistSource.RECENT_UNLABELED
    )
    months = forms.IntegerField(
        label="Months",
        required=False,
        initial=3,
        widget=forms.NumberInput(attrs={"min": 1, "max": 120, "step": 1}),
        help_text="Counted back from the newest case.",
    )

    def __init__(self, *args: Any, classes: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["risk_class"].choices = [(c, c) for c in classes]
        # The last class is the positive one by the project's convention (the objective's
        # default class of interest too).
        self.fields["risk_class"].initial = classes[-1] if classes else None
