"""Import a CSV or Parquet file of cases into a project from the command line."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User
from apps.cases.importing import ImportRejected
from apps.labeling.services import cases_import
from apps.projects.models import Role
from apps.projects.selectors import project_get_for_user


class Command(BaseCommand):
    help = "Import cases (all or nothing) into a project, as a member with the data scientist role."

    def add_arguments(self, parser) -> None:
        parser.add_argument("project_id", type=int)
        parser.add_argument("path", type=Path)
        parser.add_argument("--user", required=True, help="Username recorded as the importer.")

    def handle(self, *args, project_id: int, path: Path, user: str, **options) -> None:
        importer = User.objects.filter(username=user).first()
        if importer is None:
            raise CommandError(f"No user named {user!r}.")
        try:
            access = project_get_for_user(
                user=importer, project_id=project_id, role=Role.DATA_SCIENTIST
            )
        except Exception as error:
            raise CommandError(f"{user} cannot import into project {project_id}: {error}") from None
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        try:
            result = cases_import(
                project=access.project, path=path, filename=path.name, imported_by=importer
            )
        except ImportRejected as rejected:
            for issue in rejected.issues:
                self.stderr.write(f"  {issue}")
            if rejected.more:
                self.stderr.write(f"  …and {rejected.more} more")
            raise CommandError(rejected.summary()) from None
        self.stdout.write(
            f"Imported {result.imported} cases and {result.labels} labels into "
            f"“{access.project.name}”."
        )
        if result.ignored_columns:
            self.stdout.write(f"Columns not used: {', '.join(result.ignored_columns)}")
