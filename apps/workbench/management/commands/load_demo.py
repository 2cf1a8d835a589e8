"""Load the demo users and projects (idempotent: existing ones are left as they are)."""

from django.core.management.base import BaseCommand

from apps.workbench import demo_data
from apps.workbench.demo import DEMO_PASSWORD, DEMO_USERS, demo_project_load, demo_users_ensure


class Command(BaseCommand):
    help = "Create demo users of each role and the breast-cancer and heart-failure projects."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--patients",
            type=int,
            default=20_000,
            help="Size of the synthetic heart-failure cohort (default 20000).",
        )
        parser.add_argument("--password", default=DEMO_PASSWORD)

    def handle(self, *args, **options) -> None:
        users = demo_users_ensure(password=options["password"])
        datasets = [
            demo_data.breast_cancer(),
            demo_data.heart_failure(n_patients=options["patients"]),
        ]
        for dataset in datasets:
            loaded = demo_project_load(dataset=dataset, users=users)
            if loaded.created:
                self.stdout.write(
                    f"Loaded “{loaded.project.name}”: {loaded.cases} cases, "
                    f"{loaded.labels} imported labels "
                    f"({len(dataset.flipped_external_ids)} deliberately wrong)."
                )
            else:
                self.stdout.write(f"“{loaded.project.name}” is already loaded.")
        self.stdout.write(f"Demo users (password {options['password']!r}):")
        for username, role, _, _ in DEMO_USERS:
            self.stdout.write(f"  {username:<10} {role.label}")
