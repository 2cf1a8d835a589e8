"""The import preview through the API: a messy export's columns as Casebook reads them, with
the user's mapping applied, and nothing stored."""

from __future__ import annotations

import io
import json

import pytest
from rest_framework.test import APIClient

from apps.cases.models import Case, ImportBatch
from tests.test_columns import WARD_CSV

pytestmark = pytest.mark.django_db


def _preview(user, project, text: str, mapping=None, name: str = "ward.csv"):
    api = APIClient()
    api.force_authenticate(user)
    body = {"file": io.BytesIO(text.encode()) if isinstance(text, str) else text}
    body["file"].name = name
    if mapping is not None:
        body["mapping"] = mapping if isinstance(mapping, str) else json.dumps(mapping)
    return api.post(f"/api/projects/{project.pk}/cases/import/preview", body, format="multipart")


def test_the_preview_shows_every_column_and_the_mapping_and_stores_nothing(project, data_scientist):
    answer = _preview(data_scientist, project, WARD_CSV, {"date_format": "%d/%m/%Y"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["rows"] == 4 and body["problems"] == []
    columns = {c["name"]: c for c in body["columns"]}
    assert columns["Sex (F/M)"]["key"] == "sex_f_m" and columns["Sex (F/M)"]["type"] == "category"
    assert columns["Smoker"]["type"] == "boolean"
    assert columns["Note"]["role"] == "context"
    assert columns[""]["role"] == "ignore"
    assert set(columns["Grade"]["samples"]) == {"I", "II", "III"}
    assert body["mapping"]["id_column"] == "Patient ID"
    assert body["mapping"]["occurred_at_column"] == "Admission date"
    assert body["mapping"]["date_format"] == "%d/%m/%Y"
    assert not Case.objects.filter(project=project).exists()
    assert not ImportBatch.objects.filter(project=project).exists()


def test_an_ambiguous_date_is_asked_about(project, data_scientist):
    body = _preview(data_scientist, project, WARD_CSV).json()
    assert [p["column"] for p in body["problems"]] == ["Admission date"]
    assert body["mapping"]["date_format"] is None


@pytest.mark.parametrize(
    "mapping, named",
    [
        ('{"id_column": "MRN"', "mapping is not JSON"),
        ({"id_column": "MRN"}, "no column 'MRN'"),
        ({"columns": {"Grade": "ordinal"}}, "is not a type"),
    ],
)
def test_a_wrong_mapping_is_a_400_naming_it(project, data_scientist, mapping, named):
    answer = _preview(data_scientist, project, WARD_CSV, mapping)
    assert answer.status_code == 400
    assert named in answer.json()["detail"]


def test_a_broken_file_or_none_is_a_400_and_a_clinician_is_refused(
    project, data_scientist, clinician
):
    ragged = _preview(data_scientist, project, "a,b\n1,2\n3,4,5\n")
    assert ragged.status_code == 400 and ragged.json()["errors"]
    fake = _preview(data_scientist, project, "not parquet", name="ward.parquet")
    assert fake.status_code == 400 and "not a Parquet file" in fake.json()["detail"] + str(
        fake.json()["errors"]
    )
    api = APIClient()
    api.force_authenticate(data_scientist)
    empty = api.post(f"/api/projects/{project.pk}/cases/import/preview", {}, format="multipart")
    assert empty.status_code == 400 and "'file'" in empty.json()["detail"]
    assert _preview(clinician, project, WARD_CSV).status_code == 403
