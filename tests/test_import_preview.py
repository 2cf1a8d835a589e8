"""The import preview through the API: a messy export's columns as Casebook reads them, with
the user's mapping applied, and nothing stored."""

from __future__ import annotations

import io
import json

import pytest
from rest_framework.test import APIClient

from apps.cases.models import Case, ImportBatch
from apps.cases.selectors import case_features_dict
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


def _ward_project(data_scientist, clinician):
    from apps.projects.models import Role
    from apps.projects.services import membership_set, project_create

    project = project_create(
        name="Ward", classes=["no_recurrence", "recurrence"], features=[], created_by=data_scientist
    )
    membership_set(project=project, username=clinician.username, role=Role.CLINICIAN)
    return project


def _import(user, project, text: str, mapping, name: str = "ward.csv"):
    api = APIClient()
    api.force_authenticate(user)
    upload = io.BytesIO(text.encode())
    upload.name = name
    body = {"file": upload, "mapping": json.dumps(mapping)}
    return api.post(f"/api/projects/{project.pk}/cases/import", body, format="multipart")


WARD_MAPPING = {
    "date_format": "%d/%m/%Y",
    "label_values": {"none": "no_recurrence"},
}


def test_the_ward_export_imports_with_its_mapping_and_a_clinician_labels_a_case(
    data_scientist, clinician
):
    from apps.labeling.services import label_record

    project = _ward_project(data_scientist, clinician)
    answer = _import(data_scientist, project, WARD_CSV, WARD_MAPPING)
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["imported"] == 4 and body["labels"] == 4
    # Not stored yet, and said so by header: the categories and the note.
    assert set(body["ignored_columns"]) == {"Sex (F/M)", "Grade", "Note"}

    cases = {c.external_id: c for c in Case.objects.filter(project=project)}
    assert set(cases) == {"P-001", "P-002", "P-003", "P-004"}
    assert cases["P-001"].current_label == "recurrence"
    assert cases["P-002"].current_label == "no_recurrence"
    assert str(cases["P-003"].occurred_at.date()) == "2021-04-11"  # day first, as chosen
    names = [f.name for f in project.features.order_by("position")]
    assert names == ["age", "ph_ecog", "smoker"]
    features = case_features_dict(case=cases["P-001"])
    assert features["smoker"] == 1.0 and features["age"] == 71.0
    assert case_features_dict(case=cases["P-004"])["smoker"] == 0.0  # "No"
    assert case_features_dict(case=cases["P-003"])["age"] is None  # NA

    label_record(case=cases["P-002"], value="recurrence", author=clinician)
    assert Case.objects.get(pk=cases["P-002"].pk).current_label == "recurrence"


def test_numbering_the_rows_gives_ids_unique_in_the_project(data_scientist, clinician):
    project = _ward_project(data_scientist, clinician)
    mapping = {**WARD_MAPPING, "id_column": None}
    assert _import(data_scientist, project, WARD_CSV, mapping).status_code == 201
    again = _import(data_scientist, project, WARD_CSV, mapping)  # the same file twice
    assert again.status_code == 201, again.content
    ids = list(Case.objects.filter(project=project).values_list("external_id", flat=True))
    assert len(ids) == len(set(ids)) == 8
    assert all("-row-" in external_id for external_id in ids)


@pytest.mark.parametrize(
    "change, row, header, message",
    [
        (("71", "seventy"), 2, "Âge", "not a number"),
        (("yes,II", "perhaps,II"), 2, "Smoker", "not yes or no"),
        (("12/05/2021", "31/31/2021"), 5, "Admission date", "not a date in the format %d/%m/%Y"),
        ((",none\n", ",cured\n"), 3, "Outcome", "not one of the project's classes"),
    ],
)
def test_a_value_that_does_not_fit_is_named_with_row_and_header_and_nothing_is_stored(
    data_scientist, clinician, change, row, header, message
):
    project = _ward_project(data_scientist, clinician)
    text = WARD_CSV.replace(*change, 1)
    # The types and columns as the user confirmed them in the preview of a clean file.
    confirmed = {
        **WARD_MAPPING,
        "occurred_at_column": "Admission date",
        "label_column": "Outcome",
        "columns": {"Âge": "number", "Smoker": "boolean"},
    }
    answer = _import(data_scientist, project, text, confirmed)
    assert answer.status_code == 400, answer.content
    errors = answer.json()["errors"]
    assert {"row": row, "column": header} == {k: errors[0][k] for k in ("row", "column")}
    assert message in errors[0]["message"]
    assert not Case.objects.filter(project=project).exists()
    assert not ImportBatch.objects.filter(project=project).exists()


def test_an_ambiguous_date_left_unanswered_refuses_the_import(data_scientist, clinician):
    project = _ward_project(data_scientist, clinician)
    answer = _import(data_scientist, project, WARD_CSV, {"label_values": {"none": "no_recurrence"}})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["column"] == "Admission date"
    assert "day-month or month-day" in answer.json()["errors"][0]["message"]
    assert not Case.objects.filter(project=project).exists()


def test_the_import_page_previews_the_columns_and_imports_with_the_choices(
    client, data_scientist, clinician
):
    from django.urls import reverse

    project = _ward_project(data_scientist, clinician)
    client.force_login(data_scientist)

    def upload():
        file = io.BytesIO(WARD_CSV.encode())
        file.name = "ward.csv"
        return file

    preview = client.post(
        reverse("labeling:import_preview", args=[project.pk]),
        {"file": upload()},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200
    page = preview.content.decode()
    assert "day first or month first?" in page and "sex_f_m" in page
    assert '<option value="Patient ID" selected>' in page
    assert not Case.objects.filter(project=project).exists()

    fields = {
        "file": upload(),
        "mapping": "1",
        "id_column": "Patient ID",
        "label_column": "Outcome",
        "occurred_at_column": "Admission date",
        "date_format": "%d/%m/%Y",
        "label-0-value": "recurrence",
        "label-0-class": "recurrence",
        "label-1-value": "none",
        "label-1-class": "no_recurrence",
        "col-0-name": "",
        "col-0-type": "ignore",
        "col-1-name": "Âge",
        "col-1-type": "number",
    }
    imported = client.post(reverse("labeling:import", args=[project.pk]), fields)
    assert imported.status_code == 200, imported.content.decode()[:2000]
    assert "Imported <strong>4</strong> cases" in imported.content.decode()
    cases = {c.external_id: c for c in Case.objects.filter(project=project)}
    assert cases["P-002"].current_label == "no_recurrence"
    assert str(cases["P-001"].occurred_at.date()) == "2021-04-03"

    fields["file"], fields["label-1-class"] = upload(), ""  # "none" is no class
    refused = client.post(reverse("labeling:import", args=[project.pk]), fields)
    assert refused.status_code == 400
    assert "not one of the project" in refused.content.decode()
    assert Case.objects.filter(project=project).count() == 4
