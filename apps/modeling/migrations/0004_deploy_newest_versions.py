"""Projects trained before deployments existed served their newest version: record that as
their production model, so nothing changes for them."""

from django.db import migrations
from django.db.models import Max
from django.utils import timezone


def deploy_newest(apps, schema_editor):
    ModelVersion = apps.get_model("modeling", "ModelVersion")
    Deployment = apps.get_model("modeling", "Deployment")
    newest = ModelVersion.objects.values("project_id").annotate(number=Max("number"))
    for row in newest:
        if Deployment.objects.filter(project_id=row["project_id"]).exists():
            continue
        version = ModelVersion.objects.get(project_id=row["project_id"], number=row["number"])
        Deployment.objects.create(
            project_id=row["project_id"],
            model_version=version,
            action="auto",
            note="The newest version when deployments were introduced",
            scores_applied_at=timezone.now(),
        )


class Migration(migrations.Migration):
    dependencies = [("modeling", "0003_objectives_configs_deployments")]

    operations = [migrations.RunPython(deploy_newest, migrations.RunPython.noop)]
