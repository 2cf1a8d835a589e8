"""The label history is append-only in the database, not only by convention: an UPDATE of a
label row is refused on both databases, a DELETE on PostgreSQL, as for the audit log. Deleting
a case or project that has labels is refused by the app (PROTECT).

SQLite keeps DELETE allowed because its test runs empty tables with DELETE, in no fixed order
(a trigger that let it through once the case is gone would still refuse when the labels come
first); PostgreSQL's use TRUNCATE, which row triggers do not see. Kept self-contained, as the
audit log's trigger migration is: a migration must not change when shared code does."""

import django.db.models.deletion
from django.db import migrations, models

POSTGRES = """
CREATE OR REPLACE FUNCTION labeling_label_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the label history is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER labeling_label_append_only BEFORE UPDATE OR DELETE ON labeling_label
    FOR EACH ROW EXECUTE FUNCTION labeling_label_refuse_change();
"""
POSTGRES_UNDO = """
DROP TRIGGER IF EXISTS labeling_label_append_only ON labeling_label;
DROP FUNCTION IF EXISTS labeling_label_refuse_change();
"""
SQLITE = [
    """
CREATE TRIGGER labeling_label_no_update BEFORE UPDATE ON labeling_label
BEGIN
    SELECT RAISE(ABORT, 'the label history is append-only: UPDATE refused');
END;
""",
]
SQLITE_UNDO = ["DROP TRIGGER IF EXISTS labeling_label_no_update;"]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)
    else:
        for statement in SQLITE:
            schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_UNDO, params=None)
    else:
        for statement in SQLITE_UNDO:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0003_case_features_immutable"),
        ("labeling", "0005_label_adjudicated_index"),
        ("projects", "0005_feature_set_definitions"),
    ]

    operations = [
        migrations.AlterField(
            model_name="label",
            name="case",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="labels",
                to="cases.case",
            ),
        ),
        migrations.AlterField(
            model_name="label",
            name="project",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="projects.project",
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
