"""The production topology (gunicorn with two processes, Celery ML and default workers, beat,
PostgreSQL, Redis) starts and carries the loop through HTTP: `make prod-smoke` as a test."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parent.parent


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
def test_the_production_topology_carries_the_loop_through_http():
    require_service(
        os.environ.get("DATABASE_URL", "").startswith("postgres"), "the PostgreSQL suite"
    )
    require_service(_listening(5432) and _listening(6379), "PostgreSQL and Redis")
    sys.path.insert(0, str(ROOT / "scripts"))
    from prod_topology import Topology, smoke

    with Topology(database="casebook_prod_test", redis_db=8, port=8072) as topology:
        rows = dict(smoke(topology))
    assert rows["predict switched"] == "version 2"
    assert rows["the ML worker ran it"] == "succeeded"
