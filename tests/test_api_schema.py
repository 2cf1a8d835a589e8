"""Schemathesis against the OpenAPI schema at /api/schema/: requests generated from the schema
(valid and invalid), sent to the WSGI app by a data scientist of a project with cases, a
deployed model version and a worklist. No answer may be a 5xx, and every answer must be one the
schema documents, in status, content type and body.

Bounded for CI: a few examples per operation, derandomized (the same inputs every run), no
shrinking, and a deadline per example.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from apps.projects.models import Role
from tests.world import World, module_world

pytestmark = [pytest.mark.schemathesis, pytest.mark.django_db]

# Checks of how strictly inputs are read, not of what the API answers: business rules the
# schema cannot state (a label must be one of the project's classes, a version already in
# production is not deployed again) refuse schema-valid input with a documented 400, and unknown
# or loosely typed query parameters are ignored rather than refused.
NOT_CHECKED = [negative_data_rejection, positive_data_acceptance]

SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    # Requests go through the WSGI handler itself, whose request signals would close the
    # database connection and with it the test's transaction; Django's test client
    # disconnects the same handler.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with module_world(django_db_blocker, tmp_path_factory.mktemp("schema")) as built:
            yield built
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@SCHEMA.parametrize()
@settings(
    max_examples=8,
    deadline=10_000,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_as_its_schema_says(case, world: World):
    # Path parameters name the world's objects: random ids would only ever find 404.
    for name in case.path_parameters or {}:
        if name in world.params:
            case.path_parameters[name] = world.params[name]
    token = world.tokens[Role.DATA_SCIENTIST]
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, excluded_checks=NOT_CHECKED)


def test_the_label_export_reads_its_own_format_parameter(project, data_scientist):
    """`format` is the export's parameter, not DRF's renderer switch (which answered 404)."""
    client = APIClient()
    client.force_authenticate(data_scientist)
    url = f"/api/projects/{project.pk}/export"
    parquet = client.get(url, {"what": "history", "format": "parquet"})
    assert parquet.status_code == 200
    assert parquet["Content-Type"] == "application/vnd.apache.parquet"
    csv = client.get(url, {"format": "csv"})
    assert csv.status_code == 200 and csv.content.startswith(b"external_id,")
    refused = client.get(url, {"format": "json"})
    assert refused.status_code == 400
    assert "csv or parquet" in refused.json()["detail"]
