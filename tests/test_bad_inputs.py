"""A corpus of broken case files (tests/data/bad_imports/), each sent through the API as a
user would upload it: rejected with a message that names the problem, nothing stored. Exports
escape cells a spreadsheet would run as formulas."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from apps.cases.models import Case, ImportBatch
from apps.labeling.models import Label

pytestmark = pytest.mark.django_db
CORPUS = Path(__file__).parent / "data" / "bad_imports"

EXPECTED = {
    "duplicate_ids.csv": "duplicate external_id 'p1' (first on row 2)",
    "header_only.csv": "The file has a header but no rows.",
    "huge_line.csv": "infinite values are not allowed",
    "latin1_encoding.csv": "The file is not UTF-8 text (byte 0xe9 on line 2)",
    "not_a_table.csv": "The file is not UTF-8 text",
    "parquet_named_csv.csv": "Unreadable Parquet file",
    "semicolon_delimiter.csv": "Its columns look separated by semicolons",
    "tab_delimiter.csv": "Its columns look separated by tabs",
    "truncated_row.csv": "Expected 4 columns, got 3",
    "utf16_bom.csv": "The file is not UTF-8 text (byte 0xff on line 1)",
    "wrong_columns.csv": "Missing column(s): external_id, creatinine, nt_pro_bnp",
}


def _upload(api: APIClient, project, path: Path, name: str | None = None):
    with path.open("rb") as f:
        return api.post(
            f"/api/projects/{project.pk}/cases/import",
            {"file": f} if name is None else {"file": (name, f)},
            format="multipart",
        )


def test_every_file_of_the_corpus_has_an_expectation():
    on_disk = {p.name for p in CORPUS.glob("*.csv")} - {"formula_cells.csv"}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_broken_file_is_rejected_by_name_and_nothing_is_stored(name, project, data_scientist):
    api = APIClient()
    api.force_authenticate(data_scientist)
    response = _upload(api, project, CORPUS / name)
    assert response.status_code == 400, response.content
    body = response.json()
    messages = [body["detail"], *(e["message"] for e in body["errors"])]
    assert any(EXPECTED[name] in m for m in messages), messages
    assert not Case.objects.filter(project=project).exists()
    assert not ImportBatch.objects.exists() and not Label.objects.exists()


def test_a_file_ten_times_the_limit_is_refused_before_it_is_all_read(
    project, data_scientist, settings, tmp_path
):
    settings.CASEBOOK_MAX_IMPORT_BYTES = 10_000
    big = tmp_path / "big.csv"
    big.write_text(
        "external_id,age,creatinine,nt_pro_bnp\n"
        + "".join(f"p{i:07d},70,1.2,300\n" for i in range(5_000))
    )
    assert big.stat().st_size > 10 * settings.CASEBOOK_MAX_IMPORT_BYTES
    api = APIClient()
    api.force_authenticate(data_scientist)
    response = _upload(api, project, big)
    assert response.status_code == 400
    messages = [e["message"] for e in response.json()["errors"]]
    assert any("larger than the limit of 10 KB" in m for m in messages), messages
    assert not Case.objects.filter(project=project).exists()


def test_formula_cells_are_imported_as_text_and_escaped_in_exports(project, data_scientist):
    api = APIClient()
    api.force_authenticate(data_scientist)
    assert _upload(api, project, CORPUS / "formula_cells.csv").status_code == 201
    case = Case.objects.get(project=project)
    assert case.external_id.startswith("=cmd|")  # kept as the hospital gave it
    from apps.labeling.services import label_record

    label_record(case=case, value="heart_failure", author=data_scientist)
    export = api.get(f"/api/projects/{project.pk}/export", {"what": "labels"})
    row = export.content.decode().splitlines()[1]
    assert row.startswith("'=cmd|")  # a spreadsheet shows it, never runs it
