"""The database refuses to change a case's features, date or project once it is stored.

Runs record which cases they trained on and are reproduced from the features those cases hold;
the feature matrix kept on disk between runs (apps/cases/feature_cache.py) relies on the same
promise. A correction is a new import, never an edit in place."""

from django.db import migrations

MESSAGE = (
    "the features, date and project of a case never change after import: import the corrected "
    "measurement as a new case, under a new external id"
)
POSTGRES = f"""
CREATE OR REPLACE FUNCTION cases_case_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER cases_case_fixed_content BEFORE UPDATE OF features, occurred_at, project_id
    ON cases_case FOR EACH ROW
    WHEN (OLD.features IS DISTINCT FROM NEW.features
          OR OLD.occurred_at IS DISTINCT FROM NEW.occurred_at
          OR OLD.project_id IS DISTINCT FROM NEW.project_id)
    EXECUTE FUNCTION cases_case_refuse_change();
"""
POSTGRES_UNDO = """
DROP TRIGGER IF EXISTS cases_case_fixed_content ON cases_case;
DROP FUNCTION IF EXISTS cases_case_refuse_change();
"""
SQLITE = f"""
CREATE TRIGGER cases_case_fixed_content BEFORE UPDATE OF features, occurred_at, project_id
    ON cases_case FOR EACH ROW
    WHEN OLD.features IS NOT NEW.features
      OR OLD.occurred_at IS NOT NEW.occurred_at
      OR OLD.project_id IS NOT NEW.project_id
BEGIN
    SELECT RAISE(ABORT, '{MESSAGE}');
END;
"""
SQLITE_UNDO = "DROP TRIGGER IF EXISTS cases_case_fixed_content;"


def forwards(apps, schema_editor):
    sql = POSTGRES if schema_editor.connection.vendor == "postgresql" else SQLITE
    schema_editor.execute(sql, params=None)


def backwards(apps, schema_editor):
    undo = POSTGRES_UNDO if schema_editor.connection.vendor == "postgresql" else SQLITE_UNDO
    schema_editor.execute(undo, params=None)


class Migration(migrations.Migration):
    dependencies = [("cases", "0002_case_queue_state")]
    operations = [migrations.RunPython(forwards, backwards)]
