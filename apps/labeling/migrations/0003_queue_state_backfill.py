"""Give cases labeled before the queue existed their queue state, label counts and leases."""

from django.db import migrations
from django.db.models import Count
from django.utils import timezone


def backfill(apps, schema_editor):
    Case = apps.get_model("cases", "Case")
    Label = apps.get_model("labeling", "Label")
    LabelCount = apps.get_model("labeling", "LabelCount")
    Lease = apps.get_model("labeling", "Lease")
    Case.objects.exclude(current_label="").update(queue_open=0)
    counts = Case.objects.values("project_id", "current_label").annotate(n=Count("id"))
    LabelCount.objects.bulk_create(
        LabelCount(project_id=r["project_id"], value=r["current_label"], cases=r["n"])
        for r in counts
    )
    undone = set(Label.objects.filter(kind="undone").values_list("undoes_id", flat=True))
    now = timezone.now()
    seen = set()
    leases = []
    for label_id, project_id, case_id, author_id, created_at in Label.objects.filter(
        kind__in=["labeled", "relabeled", "adjudicated"]
    ).values_list("id", "project_id", "case_id", "author_id", "created_at"):
        if label_id in undone or (case_id, author_id) in seen:
            continue
        seen.add((case_id, author_id))
        leases.append(
            Lease(
                project_id=project_id,
                case_id=case_id,
                user_id=author_id,
                state="labeled",
                expires_at=created_at or now,
                closed_at=created_at or now,
            )
        )
    Lease.objects.bulk_create(leases, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0002_queue_leases_tasks_counts"),
        ("cases", "0002_case_queue_state"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
