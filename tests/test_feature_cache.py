"""The feature matrix kept on disk between runs: it answers exactly what the database holds, or
it is not used. And the promise it rests on: a stored case's features never change."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.cases import feature_cache
from apps.cases.models import Case
from apps.cases.selectors import case_feature_matrix
from tests.conftest import make_cases_frame

# Written only outside a transaction: these tests commit, as a worker does.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cache_dir(settings, tmp_path):
    settings.CASEBOOK_FEATURE_CACHE_DIR = str(tmp_path / "feature-cache")
    return tmp_path / "feature-cache"


def _from_database(settings, project_id):
    """The matrix as the database alone gives it (the copy switched off)."""
    kept = settings.CASEBOOK_FEATURE_CACHE_DIR
    settings.CASEBOOK_FEATURE_CACHE_DIR = ""
    try:
        return case_feature_matrix(project_id=project_id)
    finally:
        settings.CASEBOOK_FEATURE_CACHE_DIR = kept


def _matrix(project_id):
    """The matrix as the app reads it, once the copy it started writing is on disk."""
    matrix = case_feature_matrix(project_id=project_id)
    feature_cache.copies_wait()
    return matrix


def _same(a, b) -> None:
    assert a.feature_names == b.feature_names
    np.testing.assert_array_equal(a.case_ids, b.case_ids)
    np.testing.assert_array_equal(a.occurred_at, b.occurred_at)
    np.testing.assert_array_equal(a.values, b.values)  # NaN where missing, on both sides


@pytest.fixture
def vector_reads(monkeypatch):
    """Every read of case feature vectors from the database, as the lowest id it was after
    (None: all of them). The reads still happen; they are only counted."""
    from apps.cases import selectors

    calls: list[int | None] = []
    for name in ("_feature_rows_copy", "_feature_rows_fetch"):
        original = getattr(selectors, name)

        def counted(project_id, width, after=None, _original=original):
            calls.append(after)
            return _original(project_id, width, after)

        monkeypatch.setattr(selectors, name, counted)
    return calls


def _pointer(cache_dir, project):
    return json.loads((cache_dir / f"project-{project.pk}.json").read_text())


def _with_gaps(n, seed):
    frame = make_cases_frame(n, seed=seed)
    frame.loc[frame.index[::7], "creatinine"] = np.nan  # missing values survive the copy
    frame.loc[frame.index[::11], "occurred_at"] = None  # and so do unknown dates
    return frame


def test_the_second_read_comes_from_the_copy_and_equals_the_database(
    settings, cache_dir, project, data_scientist, import_frame, vector_reads
):
    import_frame(project, data_scientist, _with_gaps(300, seed=1))
    first = _matrix(project.pk)
    pointer = _pointer(cache_dir, project)
    assert pointer["n"] == 300 and pointer["feature_names"] == first.feature_names
    assert vector_reads == [None]
    with CaptureQueriesContext(connection) as queries:
        second = _matrix(project.pk)
    assert vector_reads == [None]
    assert len(queries.captured_queries) == 3  # feature names, the project, one count
    _same(second, first)
    _same(second, _from_database(settings, project.pk))
    assert np.isnan(second.values[0, 1]) and np.isnat(second.occurred_at[0])
    assert not second.values.flags.writeable  # the mapped file is never written through


def test_cases_imported_since_are_read_alone_and_appended(
    settings, cache_dir, project, data_scientist, import_frame, vector_reads
):
    import_frame(project, data_scientist, _with_gaps(200, seed=2))
    before = _matrix(project.pk)
    later = _with_gaps(50, seed=3)
    later["external_id"] = [f"late{i:04d}" for i in range(50)]
    import_frame(project, data_scientist, later)
    after = _matrix(project.pk)
    assert vector_reads == [None, int(before.case_ids[-1])]  # then only the ids above it
    assert len(after.case_ids) == 250
    _same(after, _from_database(settings, project.pk))
    assert _pointer(cache_dir, project)["n"] == 250


def test_a_deleted_case_makes_the_copy_be_read_again_in_full(
    settings, cache_dir, project, data_scientist, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(120, seed=4, labeled=0.0))
    _matrix(project.pk)
    gone = Case.objects.filter(project=project).order_by("id")[10]
    with connection.cursor() as cursor:  # as a database administrator would
        cursor.execute("DELETE FROM cases_case WHERE id = %s", [gone.pk])
    after = _matrix(project.pk)
    assert gone.pk not in set(after.case_ids.tolist()) and len(after.case_ids) == 119
    _same(after, _from_database(settings, project.pk))
    assert _pointer(cache_dir, project)["n"] == 119


@pytest.mark.parametrize("damage", ["values", "ids", "empty", "pointer", "keys", "folder"])
def test_a_damaged_copy_is_not_used_and_is_written_again(
    settings, cache_dir, project, data_scientist, import_frame, damage, vector_reads
):
    import shutil

    import_frame(project, data_scientist, make_cases_frame(80, seed=5))
    _matrix(project.pk)
    pointer = _pointer(cache_dir, project)
    folder = cache_dir / f"project-{project.pk}" / pointer["generation"]
    if damage == "values":
        path = folder / "values.npy"
        path.write_bytes(path.read_bytes()[:-800])  # cut short
    elif damage == "ids":
        np.save(folder / "ids.npy", np.arange(5, dtype=np.int64))  # the wrong length
    elif damage == "empty":  # what a crash before the data reached the disk can leave
        (folder / "ids.npy").write_bytes(b"")
    elif damage == "pointer":
        (cache_dir / f"project-{project.pk}.json").write_text("{not json")
    elif damage == "keys":
        (cache_dir / f"project-{project.pk}.json").write_text(json.dumps({"format": 2}))
    else:
        shutil.rmtree(folder)
    again = _matrix(project.pk)
    _same(again, _from_database(settings, project.pk))
    assert _pointer(cache_dir, project)["generation"] != pointer["generation"]
    _same(_matrix(project.pk), again)
    # In full at first, again after the damage, and by `_from_database`; then from the new copy.
    assert vector_reads == [None, None, None]


def test_nothing_is_kept_from_inside_a_transaction(
    settings, cache_dir, project, data_scientist, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(40, seed=7))
    with transaction.atomic():
        matrix = _matrix(project.pk)
    assert len(matrix.case_ids) == 40
    assert not (cache_dir / f"project-{project.pk}.json").exists()


def test_an_unwritable_folder_costs_speed_not_the_answer(
    settings, tmp_path, project, data_scientist, import_frame
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings.CASEBOOK_FEATURE_CACHE_DIR = str(blocker / "feature-cache")
    import_frame(project, data_scientist, make_cases_frame(30, seed=8))
    matrix = _matrix(project.pk)
    assert len(matrix.case_ids) == 30
    _same(matrix, _from_database(settings, project.pk))


def test_deleting_a_project_removes_its_copy(cache_dir, project):
    # A project with imports keeps them (protected); one without cases has a copy of none.
    assert len(_matrix(project.pk).case_ids) == 0
    assert (cache_dir / f"project-{project.pk}").is_dir()
    project_id = project.pk
    project.delete()
    assert not (cache_dir / f"project-{project_id}.json").exists()
    assert not (cache_dir / f"project-{project_id}").exists()


def test_a_stored_case_keeps_its_features_date_and_project(project, data_scientist, import_frame):
    from apps.projects.services import project_create

    import_frame(project, data_scientist, make_cases_frame(5, seed=10))
    case = Case.objects.filter(project=project).first()
    other = project_create(name="Other", classes=["a", "b"], created_by=data_scientist)
    for change in (
        {"features": np.zeros(3).tobytes()},
        {"occurred_at": None},
        {"project_id": other.pk},
    ):
        with (
            pytest.raises(IntegrityError, match="never change after import"),
            transaction.atomic(),
        ):
            Case.objects.filter(pk=case.pk).update(**change)
    # What does change on a case still does, through save() with every column.
    case.current_label = "heart_failure"
    case.save()
    case.refresh_from_db()
    assert case.current_label == "heart_failure"
    assert np.frombuffer(bytes(case.features), dtype="<f8").shape == (3,)


def test_a_retrain_reads_no_feature_vector_from_the_database(
    settings, cache_dir, project, data_scientist, import_frame, tmp_path, vector_reads
):
    from apps.modeling import services
    from apps.modeling.models import RunStatus, RunTrigger

    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    import_frame(project, data_scientist, make_cases_frame(400, seed=11))
    versions = []
    for _ in range(2):
        run, _ = services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
        run = services.training_run_execute(run_id=run.pk)
        assert run.status == RunStatus.SUCCEEDED, run.error
        versions.append(run.model_version)
        assert vector_reads == [None]  # the first run read the database; the second did not
    first, second = versions
    # The same labels, seed and features: the same model, wherever the features came from.
    a = services.version_predictions_load(first)[1]
    b = services.version_predictions_load(second)[1]
    np.testing.assert_array_equal(a, b)


def test_matrix_rows_without_a_folder_reads_the_database(settings):
    settings.CASEBOOK_FEATURE_CACHE_DIR = ""
    calls = []

    def read(after):
        calls.append(after)
        return np.array([1], dtype=np.int64), np.array(["NaT"], "M8[us]"), np.zeros((1, 2))

    rows = feature_cache.matrix_rows(project_id=1, names=["a", "b"], read=read)
    assert calls == [None] and rows[0].tolist() == [1]


def test_a_database_restored_to_an_earlier_state_does_not_meet_its_old_copy(
    settings, cache_dir, project, data_scientist, import_frame
):
    """Restored from a backup taken before the last import, the database hands the same case
    ids out again, to other cases: the copy must not answer for them."""
    import_frame(project, data_scientist, make_cases_frame(100, seed=12, labeled=0.0))
    backup_max = int(Case.objects.filter(project=project).order_by("-id")[0].pk)
    later = make_cases_frame(50, seed=13, labeled=0.0)
    later["external_id"] = [f"later{i:03d}" for i in range(50)]
    import_frame(project, data_scientist, later)
    copied = _matrix(project.pk).case_ids
    assert len(copied) == 150
    with connection.cursor() as cursor:  # the restore: the later cases and the sequence go back
        cursor.execute("DELETE FROM cases_case WHERE id > %s", [backup_max])
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('cases_case', 'id'), %s)", [backup_max]
            )
        else:
            cursor.execute(
                "UPDATE sqlite_sequence SET seq = %s WHERE name = 'cases_case'", [backup_max]
            )
    other = make_cases_frame(50, seed=14, labeled=0.0)
    other["external_id"] = [f"other{i:03d}" for i in range(50)]
    import_frame(project, data_scientist, other)
    truth = _from_database(settings, project.pk)
    np.testing.assert_array_equal(truth.case_ids, copied)  # the same ids again, other cases
    _same(_matrix(project.pk), truth)


@pytest.mark.parametrize("other", ["project", "database"])
def test_a_copy_made_for_another_project_or_database_is_never_used(
    settings, cache_dir, project, data_scientist, import_frame, vector_reads, other
):
    """The same project id, but a project created at another time (the id reused by a rebuilt
    database), or another database (a staging copy on the same machine)."""
    import_frame(project, data_scientist, make_cases_frame(40, seed=15))
    _matrix(project.pk)
    path = cache_dir / f"project-{project.pk}.json"
    pointer = json.loads(path.read_text())
    name = str(connection.settings_dict["NAME"])
    created = project.created_at.isoformat()
    assert name in pointer["project"] and created in pointer["project"]
    if other == "project":
        pointer["project"] = pointer["project"].replace(created, "2001-01-01T00:00:00+00:00")
    else:
        pointer["project"] = pointer["project"].replace(name, "a-staging-copy")
    path.write_text(json.dumps(pointer))
    again = _matrix(project.pk)
    assert vector_reads == [None, None]
    _same(again, _from_database(settings, project.pk))
