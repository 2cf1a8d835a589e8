"""Forms for creating a project, its settings and its members."""

from django import forms
from django.core.exceptions import ValidationError

from apps.projects.models import Role
from apps.projects.services import FeatureSpec, project_classes_clean


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    classes = forms.CharField(
        help_text="Comma-separated, in the order of their number keys, e.g. "
        "heart_failure, no_heart_failure",
    )
    features = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 5, "placeholder": "age, years, Demographics\ncreatinine, mg/dL, Labs"}
        ),
        required=False,
        help_text="One per line: name, unit, group (unit and group optional). Leave empty to take "
        "every column of the first import except external_id, occurred_at and label.",
    )

    def clean_classes(self) -> list[str]:
        try:
            return project_classes_clean(self.cleaned_data["classes"].split(","))
        except ValidationError as error:
            raise forms.ValidationError(error.message_dict["classes"]) from None

    def clean_features(self) -> list[FeatureSpec]:
        specs = []
        for number, line in enumerate(self.cleaned_data["features"].splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) > 3:
                raise forms.ValidationError(
                    f"Line {number}: expected 'name, unit, group', got {len(parts)} parts."
                )
            parts += [""] * (3 - len(parts))
            specs.append(FeatureSpec(name=parts[0], unit=parts[1], group=parts[2]))
        return specs


class ProjectSettingsForm(forms.Form):
    show_predictions = forms.BooleanField(
        required=False, label="Show the model's prediction while labeling"
    )
    auto_retrain = forms.BooleanField(
        required=False, label="Retrain automatically as labels change"
    )
    retrain_min_new_labels = forms.IntegerField(
        min_value=1, label="Retrain after this many new labels"
    )
    retrain_quiet_seconds = forms.IntegerField(
        min_value=0, label="…or after this many seconds without new labels"
    )
    relabel_blind = forms.BooleanField(
        required=False,
        label="Relabel blind: hide the questioned label from whoever relabels",
    )
    auto_deploy = forms.BooleanField(
        required=False,
        label="Deploy every new model version automatically",
        help_text="Off: only the project's first version is deployed by itself; later ones wait "
        "for a data scientist on the Models page.",
    )
    alert_min_class_share = forms.FloatField(
        required=False,
        min_value=0,
        max_value=0.5,
        label="Alert when a class has less than this share of labels",
    )
    alert_stale_margin = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Alert when the objective on recent months is worse by more than",
    )
    alert_psi_threshold = forms.FloatField(
        required=False,
        min_value=0.01,
        max_value=10,
        label="Alert when a feature's population stability index passes",
        help_text="Below 0.1 stable, 0.1–0.25 moderate shift, above 0.25 a major shift.",
    )
    alert_recent_months = forms.IntegerField(
        required=False, min_value=1, max_value=24, label="Months that count as recent"
    )


class MembershipForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)
