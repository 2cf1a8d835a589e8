"""Retrain a training run from its recorded snapshot and check the predictions match."""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.modeling.models import TrainingRun
from apps.modeling.services import training_run_reproduce


class Command(BaseCommand):
    help = (
        "Retrain run ID from its label snapshot, parameters and seed; exit 1 when the new model's "
        "predictions differ from the stored model's."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("run_id", type=int)
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, run_id: int, **options) -> None:
        if not TrainingRun.objects.filter(pk=run_id).exists():
            raise CommandError(f"No training run {run_id}.")
        try:
            result = training_run_reproduce(run_id=run_id)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        else:
            self.stdout.write(
                f"Run {run_id}: {result['cases']} cases, largest probability difference "
                f"{result['max_abs_difference']:.3g}, same decisions: {result['same_decisions']}, "
                f"snapshot matches: {result['snapshot_matches']}."
            )
            for name, (then, now) in result["libraries_changed"].items():
                self.stdout.write(f"  {name} was {then}, is {now}")
        if not result["matched"]:
            raise CommandError(f"Run {run_id} was NOT reproduced.")
        self.stdout.write(self.style.SUCCESS(f"Run {run_id} reproduced."))
