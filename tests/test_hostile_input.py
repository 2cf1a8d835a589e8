"""Hostile input gets a clear 4xx, never a 500: ids past what a database column holds, in the
path, the query string or a form; JSON nested a thousand deep; bodies past the upload limit;
timestamps outside years 1-9999 once in UTC; Parquet columns of the wrong type; ragged CSV rows.

The API answers every error in its one shape, {"detail": ...}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.cases.models import Case, ImportBatch
from apps.labeling.models import Label, LabelTask
from apps.projects.models import Membership, Role
from apps.review.models import Mention
from tests.conftest import csv_upload
from tests.test_permissions import ACCESS, ROUTES, Route
from tests.world import World, module_world

TOO_BIG = str(2**63)  # one past the largest id a 64-bit column holds
FAR_TOO_BIG = "9" * 40  # past the converter's 19 digits
TEXT_PARAMS = {"what", "file_format"}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    with module_world(django_db_blocker, tmp_path_factory.mktemp("hostile")) as built:
        yield built


def _path(route: Route, params: dict[str, object], **override: str) -> str:
    """The route's URL with `override` put in as is: reverse() would refuse an id out of range."""
    values = {**params, **override}
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route.pattern)


def _detail(response) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body["detail"]


# --- 1. ids out of range ---------------------------------------------------------------------


def _id_cases() -> list[tuple[Route, str, str]]:
    return [
        (route, method, param)
        for route in ROUTES
        if route.name in ACCESS
        for param in route.params
        if param not in TEXT_PARAMS
        for method in ACCESS[route.name]
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("value", [TOO_BIG, FAR_TOO_BIG], ids=["2**63", "40-digits"])
@pytest.mark.parametrize(
    ("route", "method", "param"),
    _id_cases(),
    ids=[f"{r.name}-{m}-{p}" for r, m, p in _id_cases()],
)
def test_an_id_too_large_for_the_database_in_the_path_is_not_found(
    world: World, route: Route, method: str, param: str, value: str
):
    url = _path(route, world.params, **{param: value})
    client = world.clients[Role.ADMIN]
    if method in ("GET", "DELETE"):
        response = client.generic(method, url)
    else:
        response = client.generic(method, url, "{}", content_type="application/json")
    assert response.status_code == 404, f"{method} {url}: {response.status_code}"
    if route.name.startswith("api:"):
        _detail(response)


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["case", "task"])
@pytest.mark.parametrize("value", [TOO_BIG, FAR_TOO_BIG, "-1", "0", "1e3"])
def test_an_id_out_of_range_in_the_label_pages_query_is_not_found(world, query, value):
    client = world.clients[Role.CLINICIAN]
    response = client.get(f"/projects/{world.project.pk}/label/?{query}={value}")
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("value", [TOO_BIG, FAR_TOO_BIG])
@pytest.mark.parametrize(
    ("page", "query"),
    [
        ("review/", "version={}"),
        ("review/", "after=0.5,{}"),
        ("agreement/", "closed_before={}"),
        ("models/compare/", "a={}&b=1"),
    ],
)
def test_an_id_out_of_range_in_a_pages_query_is_refused_on_the_page(world, page, query, value):
    client = world.clients[Role.ADMIN]
    response = client.get(f"/projects/{world.project.pk}/{page}?{query.format(value)}")
    assert response.status_code in (200, 400), response.status_code


@pytest.mark.django_db
@pytest.mark.parametrize("value", [TOO_BIG, FAR_TOO_BIG])
def test_a_feature_preview_replacing_a_feature_id_out_of_range_is_not_found(world, value):
    client = world.clients[Role.REVIEWER]
    response = client.post(
        f"/projects/{world.project.pk}/features/preview/",
        {"feature_id": value, "expression": "age * 2"},
    )
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("value", [TOO_BIG, FAR_TOO_BIG])
def test_a_relabel_request_for_a_case_id_out_of_range_sends_nothing(world, value):
    client = world.clients[Role.REVIEWER]
    before = LabelTask.objects.count()
    response = client.post(
        f"/projects/{world.project.pk}/review/relabel/",
        {"case": [str(world.params["case_id"]), value], "reason": "look again"},
        follow=True,
    )
    assert response.status_code == 200
    assert "nothing was sent" in response.content.decode().lower()
    assert LabelTask.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize("value", [TOO_BIG, FAR_TOO_BIG])
def test_marking_a_mention_out_of_range_as_seen_is_ignored(world, value):
    client = world.clients[Role.CLINICIAN]
    response = client.post("/projects/mentions/", {"mention": [value]})
    assert response.status_code == 302
    assert not Mention.objects.filter(seen_at__isnull=False).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", [TOO_BIG, FAR_TOO_BIG])
def test_a_judgment_or_a_move_of_a_case_id_out_of_range_is_refused(world, value):
    client = world.clients[Role.REVIEWER]
    base = f"/projects/{world.project.pk}/worklists/{world.params['worklist_id']}"
    judged = client.post(
        f"{base}/judgments/", {"case_id": value, "value": "actionable"}, HTTP_HX_REQUEST="true"
    )
    assert judged.status_code == 400
    moved = client.post(
        f"{base}/order/",
        {"case_id": value, "to_position": "1", "revision": "0"},
        HTTP_HX_REQUEST="true",
    )
    assert moved.status_code == 400
    ordered = client.post(
        f"{base}/order/",
        {"order": f"{value},{world.params['case_id']}", "revision": "0"},
        HTTP_HX_REQUEST="true",
    )
    assert ordered.status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["seen_label_id", "task_id"])
def test_a_label_form_naming_an_id_out_of_range_stores_nothing(world, field):
    client = world.clients[Role.CLINICIAN]
    case_id = world.params["case_id"]
    before = Label.objects.count()
    response = client.post(
        f"/projects/{world.project.pk}/cases/{case_id}/label/",
        {"value": "heart_failure", field: TOO_BIG},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 400, response.status_code
    assert Label.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("api:tasks", {"case": int(TOO_BIG), "reason": "x"}),
        ("api:predict", {"case_ids": [int(TOO_BIG)]}),
        ("api:worklist-judgments", {"case_id": int(TOO_BIG), "value": "actionable"}),
        ("api:case-labels", {"value": "heart_failure", "seen_label_id": int(TOO_BIG)}),
        ("api:case-labels", {"value": "heart_failure", "task_id": int(TOO_BIG)}),
    ],
)
def test_an_id_out_of_range_in_an_api_body_is_refused_by_name(world, name, body):
    route = next(r for r in ROUTES if r.name == name)
    client = world.clients[Role.ADMIN]
    response = client.post(
        _path(route, world.params), json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    field = next(iter(body.keys() - {"value", "reason"}))
    assert field in response.json()["errors"], response.json()


# --- 2. JSON nested too deep ----------------------------------------------------------------

DEEP = "[" * 1000 + "]" * 1000


def _body_routes() -> list[tuple[Route, str]]:
    return [
        (route, method)
        for route in ROUTES
        if route.name.startswith("api:") and route.name in ACCESS
        for method in ACCESS[route.name]
        if method in ("POST", "PUT", "PATCH")
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("route", "method"), _body_routes(), ids=[f"{r.name}-{m}" for r, m in _body_routes()]
)
def test_json_nested_a_thousand_deep_is_refused_in_the_api_error_shape(world, route, method):
    client = world.clients[Role.ADMIN]
    response = client.generic(
        method, _path(route, world.params), DEEP, content_type="application/json"
    )
    # The import takes a multipart file only (415); a view that reads no body may succeed, or
    # refuse for its own reason (cancelling a run that has ended: 409).
    assert response.status_code in (200, 201, 202, 204, 400, 409, 415), response.status_code
    if response.status_code >= 400:
        detail = _detail(response)
        if response.status_code == 400:
            assert "nested" in detail, detail


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_json_nested_past_the_limit_is_refused_on_the_label_endpoint(world, depth):
    client = world.clients[Role.CLINICIAN]
    body = '{"value": ' + "[" * depth + "]" * depth + "}"
    response = client.post(
        f"/api/cases/{world.params['case_id']}/labels", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "nested more than 64 deep" in _detail(response)


@pytest.mark.django_db
def test_hyperparameters_nested_a_thousand_deep_on_the_models_page_are_refused(world):
    client = world.clients[Role.DATA_SCIENTIST]
    response = client.post(
        f"/projects/{world.project.pk}/models/",
        {
            "form": "config",
            "config-hyperparameters": DEEP,
            "config-model_family": "logistic_regression",
        },
    )
    assert response.status_code in (200, 400)
    assert "nested too deep" in response.content.decode()


# --- 5. bodies past the limits --------------------------------------------------------------


@pytest.mark.django_db
def test_a_json_body_past_the_upload_limit_is_refused_in_the_api_error_shape(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = world.clients[Role.CLINICIAN]
    body = json.dumps({"value": "heart_failure", "note": "x" * 2000})
    response = client.post(
        f"/api/cases/{world.params['case_id']}/labels", body, content_type="application/json"
    )
    assert response.status_code == 413
    assert "larger than" in _detail(response)


@pytest.mark.django_db
def test_a_form_with_too_many_fields_is_refused_in_the_api_error_shape(world, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    client = world.clients[Role.CLINICIAN]
    response = client.post(
        f"/api/cases/{world.params['case_id']}/labels",
        "&".join(f"f{i}=1" for i in range(50)),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert "too many fields" in _detail(response).lower()


@pytest.mark.django_db
def test_an_unknown_api_path_is_not_found_in_the_api_error_shape(world):
    response = world.clients[Role.CLINICIAN].get("/api/no-such-thing/")
    assert response.status_code == 404
    _detail(response)


# --- 3 and 5. case files: timestamps, Parquet types, ragged rows -------------------------------

HEADER = "external_id,occurred_at,age,creatinine,nt_pro_bnp\n"


def _issues(response) -> list[dict]:
    assert response.status_code == 400, response.content
    return response.json()["errors"]


def _nothing_stored(project) -> None:
    assert not Case.objects.filter(project=project).exists()
    assert not ImportBatch.objects.filter(project=project).exists()


@pytest.fixture
def api(data_scientist) -> APIClient:
    client = APIClient()
    client.force_authenticate(data_scientist)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    "when", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00", "10000-01-01T00:00:00Z"]
)
def test_a_timestamp_outside_years_1_to_9999_in_utc_is_refused_by_row_and_column(
    api, project, when
):
    text = HEADER + "p1,2024-01-01,70,1.2,300\n" + f"p2,{when},71,1.1,310\n"
    response = api.post(
        f"/api/projects/{project.pk}/cases/import", {"file": csv_upload(text)}, format="multipart"
    )
    issues = _issues(response)
    assert [(i["row"], i["column"]) for i in issues] == [(3, "occurred_at")], issues
    if not when.startswith("10000"):  # a five-digit year is not ISO 8601 to begin with
        assert "is outside years 1 to 9999" in issues[0]["message"], issues
    _nothing_stored(project)


@pytest.mark.django_db
def test_the_import_page_refuses_an_out_of_range_timestamp_by_row_and_column(
    client, project, data_scientist
):
    client.force_login(data_scientist)
    text = HEADER + "p1,9999-12-31T23:00:00-05:00,70,1.2,300\n"
    response = client.post(f"/projects/{project.pk}/import/", {"file": csv_upload(text)})
    assert response.status_code == 400
    page = response.content.decode()
    assert "<td>2</td><td><code>occurred_at</code></td>" in page
    assert "is outside years 1 to 9999" in page
    _nothing_stored(project)


def _parquet(tmp_path, table: pa.Table):
    path = tmp_path / "cases.parquet"
    pq.write_table(table, path)
    return path


def _upload_parquet(api, project, path):
    with path.open("rb") as handle:
        return api.post(
            f"/api/projects/{project.pk}/cases/import", {"file": handle}, format="multipart"
        )


FEATURES = {"age": [70.0, 71.0], "creatinine": [1.2, 1.1], "nt_pro_bnp": [300.0, 310.0]}


@pytest.mark.django_db
def test_a_parquet_timestamp_in_year_10000_is_refused_by_row_and_column(api, project, tmp_path):
    table = pa.table(
        {
            "external_id": ["p1", "p2"],
            "occurred_at": pa.array([datetime(2024, 1, 1), None], pa.timestamp("us")).fill_null(0),
            **FEATURES,
        }
    )
    # Year 10000 cannot be a Python datetime: put in the microseconds since the epoch.
    year_10000 = (253402300800 + 3600) * 1_000_000
    column = pa.array([1_704_067_200_000_000, year_10000], pa.int64()).cast(pa.timestamp("us"))
    table = table.set_column(1, "occurred_at", column)
    issues = _issues(_upload_parquet(api, project, _parquet(tmp_path, table)))
    assert [(i["row"], i["column"]) for i in issues] == [(3, "occurred_at")], issues
    _nothing_stored(project)


@pytest.mark.django_db
def test_a_parquet_external_id_of_lists_is_refused_by_column(api, project, tmp_path):
    table = pa.table({"external_id": [["p1"], ["p2"]], **FEATURES})
    issues = _issues(_upload_parquet(api, project, _parquet(tmp_path, table)))
    assert [i["column"] for i in issues] == ["external_id"], issues
    assert "could not be read" not in issues[0]["message"]
    _nothing_stored(project)


@pytest.mark.django_db
def test_a_parquet_int64_feature_past_2_to_the_53_is_read_as_the_csv_reads_it(
    api, project, tmp_path
):
    table = pa.table(
        {
            "external_id": ["p1", "p2"],
            "age": pa.array([70, 2**62], pa.int64()),
            "creatinine": [1.2, 1.1],
            "nt_pro_bnp": [300.0, 310.0],
        }
    )
    response = _upload_parquet(api, project, _parquet(tmp_path, table))
    assert response.status_code == 201, response.content
    case = Case.objects.get(project=project, external_id="p2")
    assert np.frombuffer(bytes(case.features), dtype="<f8")[0] == float(2**62)


@pytest.mark.django_db
def test_a_parquet_feature_of_lists_is_refused_by_column(api, project, tmp_path):
    table = pa.table(
        {
            "external_id": ["p1", "p2"],
            "age": [[1.0], [2.0]],
            "creatinine": [1.2, 1.1],
            "nt_pro_bnp": [3.0, 4.0],
        }
    )
    issues = _issues(_upload_parquet(api, project, _parquet(tmp_path, table)))
    assert [i["column"] for i in issues] == ["age"], issues
    _nothing_stored(project)


@pytest.mark.django_db
@pytest.mark.parametrize("fast", [True, False], ids=["numbers", "text"])
def test_a_ragged_csv_row_is_reported_by_its_row(api, project, fast):
    good = "p1,70,1.2,300\np2,71,1.1,310\n" if fast else "p1,70,high,300\np2,71,1.1,310\n"
    text = "external_id,age,creatinine,nt_pro_bnp\n" + good + "p3,72,1.0\np4,73,1.0,320\n"
    issues = _issues(
        api.post(
            f"/api/projects/{project.pk}/cases/import",
            {"file": csv_upload(text)},
            format="multipart",
        )
    )
    ragged = [i for i in issues if "Expected 4 columns, got 3" in i["message"]]
    assert [i["row"] for i in ragged] == [4], issues
    _nothing_stored(project)


@pytest.mark.parametrize("digit", ["²", "٣", "0", "9" * 25])
def test_ids_in_query_strings_that_are_not_ascii_numbers_are_refused_not_crashed(
    client, project, data_scientist, digit
):
    """str.isdigit() takes "²" and "٣", which int() then refuses: every query-string id goes
    through one parser instead."""
    admin = Membership.objects.get(project=project, role=Role.ADMIN).user
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    answers = [
        client.get(reverse("review:board", args=[project.pk]) + f"?version={digit}"),
        client.get(f"/api/projects/{project.pk}/label-issues/?version={digit}"),
        client.get(reverse("labeling:agreement", args=[project.pk]) + f"?closed_before={digit}"),
        client.post(
            reverse("features:preview", args=[project.pk]),
            {"expression": "age * 2", "feature_id": digit},
        ),
        client.get(reverse("admin:audit_auditevent_changelist") + f"?project={digit}"),
    ]
    assert [a.status_code for a in answers if a.status_code >= 500] == []
