"""Importing case files: what is stored; a bad file stores nothing and names each problem."""

import numpy as np
import pandas as pd
import pytest

from apps.cases.importing import ImportRejected
from apps.cases.models import Case, ImportBatch
from apps.cases.selectors import case_feature_matrix
from apps.labeling.models import Label, LabelKind
from apps.labeling.services import cases_import
from apps.projects.models import Feature
from apps.projects.services import project_create
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


def _import(project, path, user):
    return cases_import(project=project, path=path, filename=path.name, imported_by=user)


def _issues(excinfo) -> list[tuple]:
    return [(i.row, i.column, i.message) for i in excinfo.value.issues]


def test_csv_import_stores_cases_features_and_imported_labels(project, data_scientist, cases_csv):
    frame = make_cases_frame(50, labeled=0.6, seed=1)
    result = _import(project, cases_csv(frame), data_scientist)

    assert result.imported == 50
    assert result.labels == int((frame.label != "").sum())
    assert Case.objects.filter(project=project).count() == 50
    matrix = case_feature_matrix(project_id=project.pk)
    assert matrix.feature_names == ["age", "creatinine", "nt_pro_bnp"]
    np.testing.assert_allclose(matrix.values, frame[["age", "creatinine", "nt_pro_bnp"]].to_numpy())
    first = Case.objects.get(project=project, external_id="p000000")
    assert first.occurred_at == pd.Timestamp("2024-01-01", tz="UTC")
    labels = Label.objects.filter(project=project)
    assert set(labels.values_list("kind", flat=True)) == {LabelKind.IMPORTED}
    assert labels.count() == result.labels
    assert all(label.author == data_scientist for label in labels)
    project.refresh_from_db()
    assert project.labels_version == result.labels


def test_feature_matrix_reads_ids_dates_and_values_as_the_general_path_does(
    project, data_scientist, cases_csv
):
    from apps.cases import selectors

    path = cases_csv(
        "external_id,occurred_at,age,creatinine,nt_pro_bnp\n"
        "a,2024-03-01T10:30:00Z,70,,NA\nb,,61,1.5,300\nc,1999-12-31T23:59:59.5Z,,2,\n"
    )
    _import(project, path, data_scientist)
    matrix = case_feature_matrix(project_id=project.pk)
    ids, occurred, values = selectors._feature_rows_fetch(project.pk, 3)
    np.testing.assert_array_equal(matrix.case_ids, ids)
    np.testing.assert_array_equal(matrix.occurred_at, occurred)
    np.testing.assert_array_equal(matrix.values, values)  # NaN where missing, in both
    stored = list(Case.objects.filter(project=project).order_by("id"))
    assert matrix.case_ids.tolist() == [c.pk for c in stored]
    assert str(matrix.occurred_at[0]) == "2024-03-01T10:30:00.000000"
    assert np.isnat(matrix.occurred_at[1])
    assert str(matrix.occurred_at[2]) == "1999-12-31T23:59:59.500000"  # before PostgreSQL's epoch


def test_parquet_import_matches_csv(project, data_scientist, tmp_path):
    frame = make_cases_frame(20, labeled=1.0)
    path = tmp_path / "cases.parquet"
    frame.to_parquet(path, index=False)
    result = _import(project, path, data_scientist)
    assert result.imported == 20
    assert ImportBatch.objects.get(project=project).file_format == "parquet"
    stored = dict(Case.objects.filter(project=project).values_list("external_id", "current_label"))
    assert stored == dict(zip(frame.external_id, frame.label, strict=True))


def test_missing_values_are_stored_as_missing(project, data_scientist, cases_csv):
    path = cases_csv("external_id,age,creatinine,nt_pro_bnp\na,70,,NA\nb,, 1.5 ,300\n")
    _import(project, path, data_scientist)
    values = case_feature_matrix(project_id=project.pk).values
    assert values[0, 0] == 70 and np.isnan(values[0, 1]) and np.isnan(values[0, 2])
    assert np.isnan(values[1, 0]) and values[1, 1] == 1.5


def test_project_without_features_takes_them_from_the_first_file(data_scientist, cases_csv):
    project = project_create(name="Open", classes=["yes", "no"], created_by=data_scientist)
    result = _import(project, cases_csv("external_id,label,hr,sbp\nx,yes,80,120\n"), data_scientist)
    assert result.imported == 1
    assert list(Feature.objects.filter(project=project).values_list("name", flat=True)) == [
        "hr",
        "sbp",
    ]


def test_extra_columns_are_reported_as_ignored(project, data_scientist, cases_csv):
    path = cases_csv("external_id,age,creatinine,nt_pro_bnp,ward\na,70,1,300,B2\n")
    assert _import(project, path, data_scientist).ignored_columns == ["ward"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "external_id,age,creatinine\na,1,2\n",
            [
                (
                    None,
                    None,
                    "Missing column(s): nt_pro_bnp. The file has: external_id, age, creatinine.",
                )
            ],
        ),
        (
            "external_id,age,creatinine,nt_pro_bnp\na,70,1.2,300\nb,old,1.1,abc\n",
            [(3, "age", "'old' is not a number"), (3, "nt_pro_bnp", "'abc' is not a number")],
        ),
        (
            "external_id,age,creatinine,nt_pro_bnp\na,70,1,3\nb,71,1,3\na,72,1,3\n",
            [(4, "external_id", "duplicate external_id 'a' (first on row 2)")],
        ),
        (
            "external_id,age,creatinine,nt_pro_bnp,label\na,70,1,3,heart_failure\nb,71,1,3,flu\n",
            [
                (
                    3,
                    "label",
                    "unknown label 'flu'; this project's classes are no_heart_failure, "
                    "heart_failure",
                )
            ],
        ),
        (
            "external_id,occurred_at,age,creatinine,nt_pro_bnp\na,2024-13-45,70,1,3\n",
            [
                (
                    2,
                    "occurred_at",
                    "'2024-13-45' is not a date/time (use ISO 8601, e.g. 2025-03-31 "
                    "or 2025-03-31T14:05:00Z)",
                )
            ],
        ),
        ("", [(None, None, "The file is empty.")]),
        (
            "external_id,age,creatinine,nt_pro_bnp\n",
            [(None, None, "The file has a header but no rows.")],
        ),
        (
            "external_id,age,creatinine,nt_pro_bnp\n,70,1,3\n",
            [(2, "external_id", "external_id is empty")],
        ),
    ],
    ids=[
        "missing-column",
        "not-a-number",
        "duplicate-id",
        "unknown-label",
        "bad-date",
        "empty",
        "header-only",
        "empty-id",
    ],
)
def test_bad_files_are_rejected_with_named_rows_and_store_nothing(
    project, data_scientist, cases_csv, text, expected
):
    with pytest.raises(ImportRejected) as excinfo:
        _import(project, cases_csv(text), data_scientist)
    assert _issues(excinfo) == expected
    assert not Case.objects.filter(project=project).exists()
    assert not ImportBatch.objects.exists()
    assert not Label.objects.exists()


def test_wrong_encoding_names_the_line(project, data_scientist, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        "external_id,age,creatinine,nt_pro_bnp\na,1,2,3\nJosé,1,2,3\n".encode("latin-1")
    )
    with pytest.raises(ImportRejected) as excinfo:
        _import(project, path, data_scientist)
    (issue,) = excinfo.value.issues
    assert issue.row == 3
    assert "not UTF-8" in issue.message and "0xe9" in issue.message
    assert not Case.objects.exists()


def test_a_bad_row_late_in_a_large_file_rolls_back_the_chunks_already_stored(
    project, data_scientist, cases_csv, monkeypatch
):
    # Small chunks so that several are stored before the bad row is met.
    monkeypatch.setattr("apps.cases.importing.CHUNK_ROWS", 100)
    monkeypatch.setattr("apps.cases.importing.CSV_BLOCK_BYTES", 4096)
    frame = make_cases_frame(2000, labeled=0.5)
    frame.loc[1900, "label"] = "unknown"
    with pytest.raises(ImportRejected) as excinfo:
        _import(project, cases_csv(frame), data_scientist)
    assert _issues(excinfo) == [
        (
            1902,
            "label",
            "unknown label 'unknown'; this project's classes are no_heart_failure, heart_failure",
        )
    ]
    assert not Case.objects.exists() and not Label.objects.exists()
    project.refresh_from_db()
    assert project.labels_version == 0


def test_reimporting_an_existing_id_is_rejected_and_keeps_what_was_stored(
    project, data_scientist, cases_csv
):
    _import(project, cases_csv("external_id,age,creatinine,nt_pro_bnp\na,70,1,3\n"), data_scientist)
    with pytest.raises(ImportRejected) as excinfo:
        _import(
            project,
            cases_csv("external_id,age,creatinine,nt_pro_bnp\nb,1,1,1\na,2,2,2\n", "again.csv"),
            data_scientist,
        )
    assert _issues(excinfo) == [(3, "external_id", "external_id 'a' is already in this project")]
    assert list(Case.objects.values_list("external_id", flat=True)) == ["a"]
    assert case_feature_matrix(project_id=project.pk).values.tolist() == [[70.0, 1.0, 3.0]]


def test_many_problems_are_capped_with_a_count_of_the_rest(project, data_scientist, cases_csv):
    rows = "\n".join(f"id{i},x,1,1" for i in range(150))
    with pytest.raises(ImportRejected) as excinfo:
        _import(
            project,
            cases_csv("external_id,age,creatinine,nt_pro_bnp\n" + rows + "\n"),
            data_scientist,
        )
    assert len(excinfo.value.issues) == 100
    assert excinfo.value.more == 50
    assert "150 problems" in excinfo.value.summary()


def test_same_external_id_in_another_project_is_fine(project, outsider, data_scientist, cases_csv):
    other = project_create(
        name="Other", classes=["no_heart_failure", "heart_failure"], created_by=data_scientist
    )
    text = "external_id,age,creatinine,nt_pro_bnp\na,70,1,3\n"
    _import(project, cases_csv(text), data_scientist)
    _import(other, cases_csv(text, "b.csv"), data_scientist)
    assert Case.objects.filter(external_id="a").count() == 2


def test_missing_value_words_apply_to_features_only(data_scientist, cases_csv):
    project = project_create(name="NA classes", classes=["NA", "B"], created_by=data_scientist)
    path = cases_csv("external_id,label,x\nNA,NA,NA\nb,,1\n")
    result = _import(project, path, data_scientist)
    assert result.labels == 1
    stored = dict(Case.objects.filter(project=project).values_list("external_id", "current_label"))
    assert stored == {"NA": "NA", "b": ""}
    assert np.isnan(case_feature_matrix(project_id=project.pk).values[0, 0])


def test_parquet_text_features_follow_the_csv_rules_and_nested_columns_are_refused(
    project, data_scientist, tmp_path
):
    good = tmp_path / "text.parquet"
    pd.DataFrame(
        {
            "external_id": ["a", "b"],
            "age": ["70", ""],
            "creatinine": ["1.5", "NA"],
            "nt_pro_bnp": [1.0, 2.0],
        }
    ).to_parquet(good, index=False)
    _import(project, good, data_scientist)
    values = case_feature_matrix(project_id=project.pk).values
    assert values[0].tolist()[:2] == [70.0, 1.5] and np.isnan(values[1, :2]).all()

    nested = tmp_path / "nested.parquet"
    pd.DataFrame(
        {"external_id": ["c"], "age": [[1.0, 2.0]], "creatinine": [1.0], "nt_pro_bnp": [1.0]}
    ).to_parquet(nested, index=False)
    with pytest.raises(ImportRejected) as excinfo:
        _import(project, nested, data_scientist)
    assert _issues(excinfo) == [
        (None, "age", "the column holds list<element: double> values, not numbers")
    ]
    assert Case.objects.count() == 2


def test_a_wide_header_is_read(data_scientist, cases_csv):
    project = project_create(name="Wide", classes=["a", "b"], created_by=data_scientist)
    names = [f"feature_with_a_long_name_{i:05d}" for i in range(3000)]  # about 100 KB
    header = "external_id," + ",".join(names)
    row = "x," + ",".join("1" for _ in names)
    result = _import(project, cases_csv(header + "\n" + row + "\n"), data_scientist)
    assert result.imported == 1
    assert case_feature_matrix(project_id=project.pk).values.shape == (1, 3000)


def test_a_nul_character_in_an_id_is_reported(project, data_scientist, cases_csv):
    path = cases_csv("external_id,age,creatinine,nt_pro_bnp\na\x00b,1,1,1\n")
    with pytest.raises(ImportRejected) as excinfo:
        _import(project, path, data_scientist)
    assert _issues(excinfo) == [(2, "external_id", "external_id contains a NUL character")]
