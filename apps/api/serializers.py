"""Input and output shapes of the API."""

from rest_framework import serializers

from apps.modeling.models import ModelVersion, TrainingRun
from apps.projects.models import Role


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
            "created_at",
            "started_at",
            "finished_at",
            "model_version",
        ]

    def get_model_version(self, run: TrainingRun) -> int | None:
        version = getattr(run, "model_version", None)
        return version.number if version else None


class ModelVersionOut(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "number",
            "project",
            "training_run",
            "model_family",
            "file_sha256",
            "metrics",
            "created_at",
        ]
