"""Faults on the production topology (gunicorn, Celery ML and default workers, beat):

- the broker (its own Redis here) stops while clinicians label: labeling goes on, a retrain
  asked for meanwhile is kept queued, and runs once the broker is back (not inline, not lost);
- every PostgreSQL connection is cut (as a database restart does) while clinicians label: the
  requests caught in it fail and the next ones succeed, without restarting anything.

Each label the clients saw stored is in the database exactly once."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration
REDIS_PORT = 6391


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _redis_start() -> subprocess.Popen:
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(REDIS_PORT),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _listening(REDIS_PORT):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)
    return process


def _redis_stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)
    assert not _listening(REDIS_PORT)


def test_labeling_survives_a_lost_broker_and_a_database_restart():
    require_service(shutil.which("redis-server") is not None, "redis-server")
    require_service(
        os.environ.get("DATABASE_URL", "").startswith("postgres"), "the PostgreSQL suite"
    )
    sys.path.insert(0, str(ROOT / "scripts"))
    from prod_topology import SERVER, Client, Topology

    redis = _redis_start()
    try:
        with Topology(
            database="casebook_faults_test", redis_db=0, redis_port=REDIS_PORT, port=8074
        ) as topology:
            clinician = Client(topology.base_url, topology.token("clinician"))
            scientist = Client(topology.base_url, topology.token("scientist"))
            _, projects, _ = clinician.call("GET", "/api/projects/")
            project = next(p for p in projects if "eart" in p["name"])
            pid, value = project["id"], project["classes"][0]
            stored: list[int] = []

            def label(n: int) -> list[int]:
                statuses = []
                for _ in range(n):
                    status, case, _ = clinician.call("GET", f"/api/projects/{pid}/queue/next")
                    if status != 200:
                        statuses.append(status)
                        continue
                    status, _, _ = clinician.call(
                        "POST", f"/api/cases/{case['id']}/labels", {"value": value}
                    )
                    statuses.append(status)
                    if status == 201:
                        stored.append(case["id"])
                return statuses

            assert set(label(5)) == {201}

            # The broker goes away: labels are still stored, a retrain asked for is kept.
            _redis_stop(redis)
            started = time.monotonic()
            assert set(label(10)) == {201}
            during = time.monotonic() - started
            status, run, _ = scientist.call("POST", f"/api/projects/{pid}/training-runs", {})
            assert status == 202 and run["status"] == "queued"
            time.sleep(3)
            _, seen, _ = scientist.call("GET", f"/api/training-runs/{run['id']}/")
            assert seen["status"] == "queued"  # not run inline by the web process

            redis = _redis_start()  # back (empty: a restarted Redis keeps nothing)
            deadline = time.monotonic() + 180
            while True:
                _, seen, _ = scientist.call("GET", f"/api/training-runs/{run['id']}/")
                if seen["status"] in ("succeeded", "failed"):
                    break
                assert time.monotonic() < deadline, f"the run stayed {seen['status']}"
                time.sleep(1)
            assert seen["status"] == "succeeded", seen.get("error")

            # Every connection to the database is cut, as a restart of PostgreSQL does.
            with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [topology.database],
                )
            after = label(10)
            assert all(s in (201, 500, 503) for s in after), after
            assert after[-5:] == [201] * 5, after  # recovered, nothing restarted
            topology._check_alive()

            with psycopg.connect(f"{SERVER}/{topology.database}") as db:
                rows = db.execute(
                    "SELECT case_id, COUNT(*) FROM labeling_label l JOIN accounts_user u"
                    " ON u.id = l.author_id WHERE u.username = 'clinician'"
                    " AND l.kind IN ('labeled', 'relabeled') GROUP BY case_id"
                ).fetchall()
            assert sorted(c for c, _ in rows) == sorted(stored)
            assert all(n == 1 for _, n in rows)
            print(f"labeling with the broker down: 10 labels in {during:.1f} s")
    finally:
        if redis.poll() is None:
            _redis_stop(redis)
