"""Input and output shapes of the API."""

from rest_framework import serializers

from apps.cases.columns import ROLES as COLUMN_ROLES
from apps.cases.columns import TYPES as COLUMN_TYPES
from apps.modeling.models import (
    Deployment,
    ModelFamily,
    ModelVersion,
    Objective,
    ObjectiveMetric,
    TrainingConfig,
    TrainingRun,
)
from apps.projects.ids import ID_MAX
from apps.projects.models import Role

# Numbers that reach a query or a column are bounded by what the column holds (ids are 64-bit,
# counts and version numbers 32-bit): a larger one is refused with 400 instead of failing in
# the database.
INT_MAX = 2**31 - 1


def id_field(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=ID_MAX, **kwargs)


class ErrorOut(serializers.Serializer):
    """The API's one error shape (see apps/api/errors.py)."""

    detail = serializers.CharField()
    errors = serializers.JSONField(required=False)


class ProjectCreateIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    classes = serializers.ListField(child=serializers.CharField(max_length=100), min_length=2)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    features = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        default=list,
        help_text="Optional: [{'name': 'age', 'unit': 'years', 'group': 'Demographics'}, …]",
    )


class FeatureOut(serializers.Serializer):
    name = serializers.CharField()
    unit = serializers.CharField()
    group = serializers.CharField()


class ProjectOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    classes = serializers.ListField(child=serializers.CharField())
    features = FeatureOut(many=True, source="features.all")
    show_predictions = serializers.BooleanField()
    auto_retrain = serializers.BooleanField()
    retrain_min_new_labels = serializers.IntegerField()
    retrain_quiet_seconds = serializers.IntegerField()
    labels_version = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class MemberIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberRemoveIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)


class MemberOut(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()


class CaseOut(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    occurred_at = serializers.DateTimeField(allow_null=True)
    current_label = serializers.CharField()
    features = serializers.DictField(child=serializers.FloatField(allow_null=True))


class LabelIn(serializers.Serializer):
    value = serializers.CharField(max_length=100)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    seen_label_id = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=ID_MAX,
        help_text="The newest label id you saw (0 for none); the label is refused with 409 "
        "if the case was labeled since.",
    )
    task_id = id_field(
        required=False, help_text="The relabel or adjudication task this label answers."
    )


class TaskOut(serializers.Serializer):
    id = serializers.IntegerField()
    case = serializers.IntegerField(source="case_id")
    external_id = serializers.CharField(source="case.external_id")
    kind = serializers.CharField()
    status = serializers.CharField()
    assignee = serializers.CharField(source="assignee.username", allow_null=True, default=None)
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class TaskIn(serializers.Serializer):
    case = id_field(help_text="The case's id.")
    kind = serializers.ChoiceField(choices=["relabel", "adjudicate"], default="relabel")
    assignee = serializers.CharField(
        required=False, allow_blank=True, help_text="Username; empty for the project's pool."
    )
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class LeaseOut(serializers.Serializer):
    id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    rank = serializers.IntegerField(allow_null=True)
    task = TaskOut(allow_null=True)


class QueueNextOut(CaseOut):
    lease = LeaseOut()


class QueueSettingsOut(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True)
    strategy = serializers.CharField()
    uncertainty_measure = serializers.CharField()
    target_class = serializers.CharField(allow_blank=True)
    mix_base = serializers.CharField()
    random_share = serializers.FloatField()
    seed = serializers.IntegerField()
    lease_minutes = serializers.IntegerField()
    overlap_share = serializers.FloatField()
    overlap_labels = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True)
    changed_by = serializers.CharField(source="changed_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField(allow_null=True)


class QueueSettingsIn(serializers.Serializer):
    strategy = serializers.ChoiceField(
        choices=["import_order", "random", "recent_first", "uncertainty", "minority", "mix"],
        required=False,
    )
    uncertainty_measure = serializers.ChoiceField(
        choices=["least_confident", "margin", "entropy"], required=False
    )
    target_class = serializers.CharField(required=False, allow_blank=True)
    mix_base = serializers.ChoiceField(choices=["uncertainty", "minority"], required=False)
    random_share = serializers.FloatField(required=False, min_value=0, max_value=1)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    lease_minutes = serializers.IntegerField(required=False, min_value=1, max_value=1440)
    overlap_share = serializers.FloatField(required=False, min_value=0, max_value=1)
    overlap_labels = serializers.IntegerField(required=False, min_value=2, max_value=10)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class PairAgreementOut(serializers.Serializer):
    first = serializers.CharField()
    second = serializers.CharField()
    cases = serializers.IntegerField()
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa")
    percent = serializers.FloatField(help_text="Share of cases on which the two agreed")


class AgreementOut(serializers.Serializer):
    cases = serializers.IntegerField()
    raters = serializers.ListField(child=serializers.CharField())
    alpha = serializers.FloatField(allow_null=True, help_text="Krippendorff's alpha, nominal")
    percent = serializers.FloatField(allow_null=True)
    disputed = serializers.IntegerField()
    pairs = PairAgreementOut(many=True)


class LabelOut(serializers.Serializer):
    id = serializers.IntegerField()
    case = serializers.IntegerField(source="case_id")
    value = serializers.CharField()
    kind = serializers.CharField()
    author = serializers.CharField(source="author.username")
    created_at = serializers.DateTimeField()


class ImportOut(serializers.Serializer):
    imported = serializers.IntegerField()
    labels = serializers.IntegerField()
    import_batch = serializers.IntegerField()
    ignored_columns = serializers.ListField(child=serializers.CharField())


class PreviewColumnOut(serializers.Serializer):
    name = serializers.CharField(allow_blank=True, help_text="The header as written")
    key = serializers.CharField()
    type = serializers.ChoiceField(choices=COLUMN_TYPES)
    role = serializers.ChoiceField(choices=COLUMN_ROLES)
    missing = serializers.IntegerField()
    distinct = serializers.IntegerField()
    samples = serializers.ListField(child=serializers.CharField(allow_blank=True))
    date_formats = serializers.ListField(child=serializers.CharField())
    categories = serializers.ListField(child=serializers.CharField(allow_blank=True))


class PreviewProblemOut(serializers.Serializer):
    column = serializers.CharField(allow_null=True, allow_blank=True)
    message = serializers.CharField()


class ImportPreviewOut(serializers.Serializer):
    columns = PreviewColumnOut(many=True)
    rows = serializers.IntegerField(help_text="Rows read for the preview (at most 10,000)")
    problems = PreviewProblemOut(many=True)
    mapping = serializers.DictField(help_text="The full mapping the import would use")


class ImportErrorOut(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField())


class TrainingRunOut(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "project",
            "status",
            "trigger",
            "progress",
            "progress_message",
            "error",
            "params",
            "seed",
            "label_watermark",
            "snapshot_sha256",
            "feature_names",
            "code_version",
            "library_versions",
            "metrics",
            "objective",
            "training_config",
            "reproduction",
            "created_at",
            "started_at",
            "finished_at",
            "cancelled_by",
            "cancelled_at",
            "model_version",
        ]

    cancelled_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    def get_model_version(self, run: TrainingRun) -> int | None:
        version = getattr(run, "model_version", None)
        return version.number if version else None


class ModelVersionOut(serializers.ModelSerializer):
    objective = serializers.SerializerMethodField()
    in_production = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "number",
            "project",
            "training_run",
            "model_family",
            "file_sha256",
            "objective",
            "objective_value",
            "threshold",
            "positive_class",
            "metrics",
            "in_production",
            "created_at",
        ]

    def get_objective(self, version: ModelVersion) -> str | None:
        return str(version.objective) if version.objective_id else None

    def get_in_production(self, version: ModelVersion) -> bool:
        return version.pk == self.context.get("production_id")


class ModelVersionDetailOut(ModelVersionOut):
    class Meta(ModelVersionOut.Meta):
        fields = [*ModelVersionOut.Meta.fields, "evaluation"]


class ObjectiveIn(serializers.Serializer):
    metric = serializers.ChoiceField(choices=ObjectiveMetric.choices)
    positive_class = serializers.CharField(required=False, allow_blank=True, default="")
    beta = serializers.FloatField(required=False, default=1.0)
    min_precision = serializers.FloatField(required=False, default=0.8)
    k = serializers.IntegerField(required=False, default=100, min_value=1, max_value=INT_MAX)
    cost_matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()), required=False, default=list
    )
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)


# A project that never set its objective or training configuration uses the defaults, which
# are no saved row: no id, no author, no time.
UNSAVED_DEFAULT = {"id": {"allow_null": True}, "created_at": {"allow_null": True}}


class ObjectiveOut(serializers.ModelSerializer):
    changed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    description = serializers.CharField(source="__str__", read_only=True)

    class Meta:
        model = Objective
        fields = [
            "id",
            "metric",
            "description",
            "positive_class",
            "beta",
            "min_precision",
            "k",
            "cost_matrix",
            "note",
            "changed_by",
            "created_at",
        ]
        extra_kwargs = UNSAVED_DEFAULT


class TrainingConfigIn(serializers.Serializer):
    model_family = serializers.ChoiceField(choices=ModelFamily.choices)
    class_weight = serializers.ChoiceField(
        choices=[("", "none"), ("balanced", "balanced")], required=False, default=""
    )
    window_months = serializers.IntegerField(required=False, allow_null=True, default=None)
    features = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    hyperparameters = serializers.DictField(required=False, default=dict)
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=INT_MAX)
    test_fraction = serializers.FloatField(required=False, default=0.2)
    cv_folds = serializers.IntegerField(required=False, default=5)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)


class TrainingConfigOut(serializers.ModelSerializer):
    changed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = TrainingConfig
        fields = [
            "id",
            "model_family",
            "class_weight",
            "window_months",
            "features",
            "hyperparameters",
            "seed",
            "test_fraction",
            "cv_folds",
            "note",
            "changed_by",
            "created_at",
        ]
        extra_kwargs = UNSAVED_DEFAULT


class DeploymentOut(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.number")
    # None for the deploy a project's first version makes of itself.
    deployed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "model_version",
            "action",
            "note",
            "deployed_by",
            "created_at",
            "scores_applied_at",
        ]


class DeployIn(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)


class RollbackIn(DeployIn):
    to_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=INT_MAX
    )


class PredictIn(serializers.Serializer):
    case_ids = serializers.ListField(child=id_field(), required=False)
    cases = serializers.ListField(child=serializers.DictField(), required=False)


class PredictionOut(serializers.Serializer):
    case_id = serializers.IntegerField(required=False)
    predicted_label = serializers.CharField()
    probabilities = serializers.DictField(child=serializers.FloatField())


class PredictOut(serializers.Serializer):
    model_version = serializers.IntegerField()
    deployment = serializers.IntegerField()
    predictions = PredictionOut(many=True)


class AlertOut(serializers.Serializer):
    kind = serializers.CharField()
    severity = serializers.CharField()
    title = serializers.CharField()
    figure = serializers.CharField()
    action = serializers.CharField()


class LabelIssueOut(serializers.Serializer):
    case_id = serializers.IntegerField()
    external_id = serializers.CharField(source="case.external_id")
    given_label = serializers.CharField()
    suggested_label = serializers.CharField()
    suggested_probability = serializers.FloatField()
    label_quality = serializers.FloatField()
    is_label_issue = serializers.BooleanField()
    misclassified = serializers.BooleanField()
    # None for a label that came from a file: imported_from names the file.
    labeled_by = serializers.CharField(source="labeled_by.username", default=None, allow_null=True)
    imported_from = serializers.CharField(
        source="import_batch.filename", default=None, allow_null=True
    )
    labeled_at = serializers.DateTimeField()
    occurred_at = serializers.DateTimeField()
    model_version = serializers.IntegerField(source="model_version.number")


class LabelIssuePageOut(serializers.Serializer):
    count = serializers.IntegerField(
        help_text="cases the filters keep; when count_exact is false, at least this many"
    )
    count_exact = serializers.BooleanField()
    next_after = serializers.CharField(allow_null=True)
    results = LabelIssueOut(many=True)


class CommentOut(serializers.Serializer):
    id = serializers.IntegerField()
    case = serializers.IntegerField(source="case_id")
    author = serializers.CharField(source="author.username")
    body = serializers.CharField()
    created_at = serializers.DateTimeField()


class CommentIn(serializers.Serializer):
    body = serializers.CharField(max_length=5000, allow_blank=True)


class MentionOut(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="comment.project_id")
    case = serializers.IntegerField(source="comment.case_id")
    external_id = serializers.CharField(source="comment.case.external_id")
    author = serializers.CharField(source="comment.author.username")
    body = serializers.CharField(source="comment.body")
    created_at = serializers.DateTimeField(source="comment.created_at")
    seen_at = serializers.DateTimeField(allow_null=True)


class WorklistIn(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    risk_class = serializers.CharField(max_length=100)
    size = serializers.IntegerField(default=25, help_text="5 to 200 cases")
    source = serializers.CharField(
        default="recent_unlabeled", help_text="recent_unlabeled, unlabeled or all"
    )
    months = serializers.IntegerField(
        required=False, allow_null=True, default=3, help_text="for recent_unlabeled"
    )


class WorklistItemOut(serializers.Serializer):
    case_id = serializers.IntegerField()
    external_id = serializers.CharField(source="case.external_id")
    model_rank = serializers.IntegerField()
    risk = serializers.FloatField()


class WorklistOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    model_version = serializers.IntegerField(source="model_version.number")
    risk_class = serializers.CharField()
    source = serializers.CharField()
    months = serializers.IntegerField(allow_null=True)
    size = serializers.IntegerField()
    created_by = serializers.CharField(source="created_by.username")
    created_at = serializers.DateTimeField()


class WorklistDetailOut(WorklistOut):
    items = WorklistItemOut(many=True, source="items.all")


class JudgmentOut(serializers.Serializer):
    case_id = serializers.IntegerField()
    value = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class RerankSessionOut(serializers.Serializer):
    id = serializers.IntegerField()
    worklist = serializers.IntegerField(source="worklist_id")
    reviewer = serializers.CharField(source="reviewer.username")
    order = serializers.ListField(child=serializers.IntegerField())
    revision = serializers.IntegerField()
    moves = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    judgments = serializers.SerializerMethodField()

    def get_judgments(self, session) -> list[dict]:
        from apps.worklists.selectors import judgments_current

        current = judgments_current(session=session)
        return JudgmentOut(list(current.values()), many=True).data


class RerankOrderIn(serializers.Serializer):
    order = serializers.ListField(child=id_field(), help_text="every case id of the worklist, once")
    revision = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=INT_MAX,
        help_text="the revision you last saw",
    )
    finished = serializers.BooleanField(required=False, default=False)


class JudgmentIn(serializers.Serializer):
    case_id = id_field()
    value = serializers.CharField(help_text="actionable, not_actionable or needs_information")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class VersionAgreementOut(serializers.Serializer):
    number = serializers.IntegerField()
    ndcg = serializers.FloatField(allow_null=True)
    tau = serializers.FloatField(allow_null=True)
    precision = serializers.FloatField(allow_null=True)
    sessions = serializers.IntegerField()
    judged = serializers.IntegerField()
    created_worklists = serializers.IntegerField()


class SessionAgreementOut(serializers.Serializer):
    session = serializers.IntegerField(source="session.pk")
    worklist = serializers.IntegerField(source="session.worklist_id")
    reviewer = serializers.CharField(source="session.reviewer.username")
    ndcg = serializers.FloatField(allow_null=True)
    tau = serializers.FloatField(allow_null=True)
    judged = serializers.IntegerField()
    actionable = serializers.IntegerField()


class ReviewerAgreementOut(serializers.Serializer):
    worklist = serializers.IntegerField(source="worklist.pk")
    first = serializers.CharField()
    second = serializers.CharField()
    tau = serializers.FloatField(allow_null=True)


class AgreementFiguresOut(serializers.Serializer):
    k = serializers.IntegerField()
    by_version = VersionAgreementOut(many=True)
    by_session = SessionAgreementOut(many=True)
    between_reviewers = ReviewerAgreementOut(many=True)


class DerivedProjectIn(serializers.Serializer):
    target = serializers.CharField(max_length=60, default="actionable")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class CaseOut(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    occurred_at = serializers.DateTimeField(allow_null=True)
    current_label = serializers.CharField(allow_blank=True)
    features = serializers.DictField(child=serializers.FloatField(allow_null=True))


class CasePageOut(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = CaseOut(many=True)


class DerivedFeatureIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expression = serializers.CharField(
        max_length=500, help_text="e.g. nt_pro_bnp / egfr, band(age, [40, 65]); see the README."
    )
    unit = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
    group = serializers.CharField(max_length=60, required=False, allow_blank=True, default="")
    description = serializers.CharField(
        max_length=300, required=False, allow_blank=True, default=""
    )
    show_in_labeling = serializers.BooleanField(required=False, default=False)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class DerivedFeatureChangeIn(serializers.Serializer):
    """Only the fields sent change; the name stays."""

    expression = serializers.CharField(max_length=500, required=False)
    unit = serializers.CharField(max_length=40, required=False, allow_blank=True)
    group = serializers.CharField(max_length=60, required=False, allow_blank=True)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    show_in_labeling = serializers.BooleanField(required=False)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class DerivedFeatureRetireIn(serializers.Serializer):
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class DerivedFeatureOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    expression = serializers.CharField()
    unit = serializers.CharField(allow_blank=True)
    group = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    show_in_labeling = serializers.BooleanField()
    created_by = serializers.CharField(source="created_by.username")
    created_at = serializers.DateTimeField()
    retired_at = serializers.DateTimeField(allow_null=True)
    retired_by = serializers.CharField(source="retired_by.username", allow_null=True)


class FeatureDefinitionOut(serializers.Serializer):
    name = serializers.CharField()
    expression = serializers.CharField()
    unit = serializers.CharField(allow_blank=True)
    group = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    show_in_labeling = serializers.BooleanField()


class FeatureSetVersionOut(serializers.Serializer):
    number = serializers.IntegerField()
    change = serializers.CharField()
    note = serializers.CharField(allow_blank=True)
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    definitions = FeatureDefinitionOut(many=True)


class DerivedFeatureSavedOut(serializers.Serializer):
    """A derived feature after a change, and the feature-set version the change made."""

    feature = DerivedFeatureOut()
    feature_set = FeatureSetVersionOut()


class DerivedFeaturePreviewIn(serializers.Serializer):
    expression = serializers.CharField(max_length=2000, allow_blank=True)
    feature_id = id_field(
        required=False,
        help_text="When changing a derived feature: its id (it, and the features that read it, "
        "cannot be read by the new expression).",
    )


class PreviewErrorOut(serializers.Serializer):
    message = serializers.CharField()
    reason = serializers.CharField()
    position = serializers.IntegerField(
        allow_null=True, help_text="0-based offset in the expression where the problem starts."
    )
    end = serializers.IntegerField(allow_null=True)
    line = serializers.IntegerField(allow_null=True)
    column = serializers.IntegerField(allow_null=True, help_text="1-based, on its line.")


class PreviewRowOut(serializers.Serializer):
    case_id = serializers.IntegerField()
    external_id = serializers.CharField()
    inputs = serializers.DictField(child=serializers.FloatField(allow_null=True))
    value = serializers.FloatField(allow_null=True)


class DerivedFeaturePreviewOut(serializers.Serializer):
    expression = serializers.CharField(allow_blank=True)
    ok = serializers.BooleanField(help_text="Whether it could be saved as it is.")
    error = PreviewErrorOut(allow_null=True, help_text="Outside the grammar, with the position.")
    problems = serializers.ListField(
        child=serializers.CharField(), help_text="Why it cannot be saved (all missing, constant)."
    )
    notes = serializers.ListField(child=serializers.CharField())
    inputs = serializers.ListField(child=serializers.CharField())
    rows = PreviewRowOut(many=True)
    summary = serializers.JSONField(
        help_text="cases, missing, missing_share, min, median, max, mean, distinct, "
        "division_by_zero, undefined"
    )
    histogram = serializers.JSONField()
    by_class = serializers.JSONField()
    sample_size = serializers.IntegerField()
    whole_project = serializers.BooleanField()
