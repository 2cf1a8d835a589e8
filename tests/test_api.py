"""The REST API drives the loop: create, import, label, retrain, read model versions."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.cases.models import Case
from apps.labeling.models import Label
from apps.modeling.models import RunStatus, TrainingRun
from apps.modeling.services import training_run_execute
from tests.conftest import csv_upload, make_cases_frame

pytestmark = pytest.mark.django_db


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_the_loop_through_the_api(data_scientist, clinician, settings, tmp_path):
    settings.CASEBOOK_MODEL_DIR = tmp_path
    ds = api(data_scientist)
    created = ds.post("/api/projects/", {"name": "HF", "classes": ["no_hf", "hf"]}, format="json")
    assert created.status_code == 201
    project_id = created.json()["id"]
    assert ds.get(f"/api/projects/{project_id}/").json()["classes"] == ["no_hf", "hf"]

    member = ds.post(
        f"/api/projects/{project_id}/members/",
        {"username": clinician.username, "role": "clinician"},
        format="json",
    )
    assert member.status_code == 201

    frame = make_cases_frame(120, labeled=0.9)
    frame["label"] = frame["label"].map(
        {"heart_failure": "hf", "no_heart_failure": "no_hf", "": ""}
    )
    upload = csv_upload(frame.to_csv(index=False))
    imported = ds.post(
        f"/api/projects/{project_id}/cases/import", {"file": upload}, format="multipart"
    )
    assert imported.status_code == 201, imported.json()
    assert imported.json()["imported"] == 120
    assert imported.json()["labels"] == int((frame.label != "").sum())

    nurse = api(clinician)
    nxt = nurse.get(f"/api/projects/{project_id}/queue/next")
    assert nxt.status_code == 200
    case = nxt.json()
    assert set(case["features"]) == {"age", "creatinine", "nt_pro_bnp"}
    labeled = nurse.post(f"/api/cases/{case['id']}/labels", {"value": "hf"}, format="json")
    assert labeled.status_code == 201
    assert labeled.json()["kind"] == "labeled" and labeled.json()["author"] == "clara"
    history = nurse.get(f"/api/cases/{case['id']}/labels").json()
    assert [row["value"] for row in history] == ["hf"]

    run = ds.post(f"/api/projects/{project_id}/training-runs")
    assert run.status_code == 202 and run.json()["status"] == "queued"
    training_run_execute(run_id=run.json()["id"])  # what the worker does
    detail = ds.get(f"/api/training-runs/{run.json()['id']}/").json()
    assert detail["status"] == RunStatus.SUCCEEDED and detail["progress"] == 100
    assert detail["model_version"] == 1 and detail["metrics"]["accuracy"] > 0.5
    versions = ds.get(f"/api/projects/{project_id}/model-versions/").json()
    assert [v["number"] for v in versions] == [1]


def test_queue_next_is_204_when_nothing_is_left(project, clinician, data_scientist, import_frame):
    import_frame(project, data_scientist, make_cases_frame(2, labeled=1.0))
    assert api(clinician).get(f"/api/projects/{project.pk}/queue/next").status_code == 204


def test_a_bad_import_is_400_with_rows_and_columns(project, data_scientist):
    bad = "external_id,age,creatinine,nt_pro_bnp\na,70,1,1\na,old,1,1\n"
    response = api(data_scientist).post(
        f"/api/projects/{project.pk}/cases/import", {"file": csv_upload(bad)}, format="multipart"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "The file was not imported (2 problems); nothing was stored."
    assert body["errors"] == [
        {
            "row": 3,
            "column": "external_id",
            "message": "duplicate external_id 'a' (first on row 2)",
        },
        {"row": 3, "column": "age", "message": "'old' is not a number"},
    ]
    assert not Case.objects.exists()


def test_an_unknown_label_is_400_with_a_clear_detail(
    project, clinician, data_scientist, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(2, labeled=0.0))
    case = Case.objects.first()
    response = api(clinician).post(f"/api/cases/{case.pk}/labels", {"value": "flu"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Unknown label 'flu'")
    assert not Label.objects.exists()


def test_outsiders_get_404_and_low_roles_403(project, outsider, clinician):
    assert api(outsider).get(f"/api/projects/{project.pk}/").status_code == 404
    assert api(outsider).post(f"/api/projects/{project.pk}/training-runs").status_code == 404
    assert api(clinician).post(f"/api/projects/{project.pk}/training-runs").status_code == 403
    assert api(clinician).get(f"/api/projects/{project.pk}/members/").status_code == 403
    assert not TrainingRun.objects.exists()
    assert api().get(f"/api/projects/{project.pk}/").status_code == 401
    listed = api(outsider).get("/api/projects/").json()
    assert [p["name"] for p in listed] == ["Someone else's project"]


def test_openapi_schema_is_served(clinician):
    response = api(clinician).get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/projects/{project_id}/cases/import" in response.content
