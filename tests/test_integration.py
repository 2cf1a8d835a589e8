"""The loop against the real services: PostgreSQL, Redis and a Celery worker process.

Labels recorded through the service coalesce into one retrain that a separate worker process
(with its scheduler) runs, and a model version appears, without anyone calling training code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.cases.models import Case
from apps.labeling.services import label_record
from apps.modeling.models import ModelVersion, RunStatus, TrainingRun
from apps.projects.models import Project
from tests.conftest import make_cases_frame, require_service

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent


_require = require_service


@pytest.fixture(scope="module")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real worker (with its beat scheduler) on the test database and the real broker.

    It lives for this module only: left running, it would work on the test database while
    later tests truncate it.
    """
    _require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    broker = settings.CELERY_BROKER_URL
    _require(broker.startswith("redis://"), "Redis (CELERY_BROKER_URL)")
    import redis

    client = redis.Redis.from_url(broker)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        _require(False, f"Redis at {broker}")
    client.flushdb()  # a dedicated database number: drop messages of earlier runs
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    folder = tmp_path_factory.mktemp("worker")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker,
        "CASEBOOK_RETRAIN_POLL_SECONDS": "1",
        "CASEBOOK_MODEL_DIR": str(folder / "models"),
    }
    log = open(folder / "worker.log", "w")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--beat",
            "--schedule",
            str(folder / "beat"),
            "-Q",
            "default,ml",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process, folder / "worker.log"
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _wait_for(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{log.read_text()[-4000:]}")


def test_labels_coalesce_into_one_retrain_run_by_the_worker(
    celery_worker_process, project, data_scientist, clinician, import_frame, settings
):
    process, log = celery_worker_process
    assert process.poll() is None, log.read_text()
    Project.objects.filter(pk=project.pk).update(
        retrain_min_new_labels=10, retrain_quiet_seconds=3600
    )
    frame = make_cases_frame(400, labeled=0.7, seed=5)
    import_frame(project, data_scientist, frame)

    # The import's labels are many more than 10: the scheduler trains version 1.
    first = _wait_for(
        lambda: ModelVersion.objects.filter(project=project).first(), 90, "model version 1", log
    )
    assert first.number == 1
    # The chain goes on in the worker: the review board's label issues for version 1.
    from apps.review.models import LabelIssueComputation

    found = _wait_for(
        lambda: LabelIssueComputation.objects.filter(project=project).first(),
        90,
        "the label issues of version 1",
        log,
    )
    assert found.model_version_id == first.pk and found.cases > 0

    # A burst of 30 labels becomes exactly one more run once the 30th is in (N = 30), however
    # often the scheduler polls meanwhile.
    Project.objects.filter(pk=project.pk).update(retrain_min_new_labels=30)
    unlabeled = list(Case.objects.filter(project=project, current_label="")[:30])
    for case in unlabeled:
        label_record(case=case, value="heart_failure", author=clinician)
    second = _wait_for(
        lambda: ModelVersion.objects.filter(project=project, number=2).first(),
        90,
        "model version 2",
        log,
    )
    time.sleep(3)  # give the scheduler a few polls to (wrongly) start another run
    runs = list(TrainingRun.objects.filter(project=project).order_by("id"))
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
    assert runs[1].label_watermark > runs[0].label_watermark
    assert second.metrics["n_train"] + second.metrics["n_test"] == (
        Case.objects.filter(project=project).exclude(current_label="").count()
    )
    assert Path(second.file_path).is_file()
