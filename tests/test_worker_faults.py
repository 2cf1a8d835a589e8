"""A worker process killed (SIGKILL) in the middle of a training run, with the real broker and
database: no half-written model version, production untouched, and the run tried again by
another worker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.labeling.models import CaseScore
from apps.modeling import services
from apps.modeling.models import Deployment, ModelVersion, RunStatus, RunTrigger, TrainingRun
from tests.conftest import make_cases_frame
from tests.test_integration import ROOT, _require, _wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _start_worker(folder: Path, name: str) -> tuple[subprocess.Popen, Path]:
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CASEBOOK_RETRAIN_POLL_SECONDS": "1",
        "CASEBOOK_RUN_STALE_SECONDS": "4",
        "CASEBOOK_MODEL_DIR": str(folder / "models"),
    }
    log_path = folder / f"{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - the process holds it until it ends
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
            str(folder / f"{name}-beat"),
            "-Q",
            "default,ml",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "-n",
            f"{name}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: SIGKILL reaches the pool child too
    )
    return process, log_path


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


def test_a_worker_killed_mid_run_leaves_no_version_and_the_run_is_retried(
    project, data_scientist, import_frame, tmp_path, settings
):
    _require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    _require(settings.CELERY_BROKER_URL.startswith("redis://"), "Redis (CELERY_BROKER_URL)")
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    project.auto_retrain = False
    project.save(update_fields=["auto_retrain"])
    import_frame(project, data_scientist, make_cases_frame(3000, labeled=1.0, seed=2))
    # Slow on purpose: five cross-validation fits and a final fit of a large forest.
    services.training_config_change(
        project=project,
        changed_by=data_scientist,
        model_family="random_forest",
        hyperparameters={"n_estimators": 300},
    )
    first, log_first = _start_worker(tmp_path, "first")
    try:
        run, _ = services.training_run_request(project=project, trigger=RunTrigger.MANUAL)

        def fitting():
            run.refresh_from_db()
            return run.status == RunStatus.RUNNING and run.progress >= 25

        _wait_for(fitting, 120, "the run to start fitting", log_first)
        _kill(first)
    finally:
        if first.poll() is None:
            _kill(first)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempts == 1
    assert not ModelVersion.objects.filter(project=project).exists()
    assert not Deployment.objects.filter(project=project).exists()
    assert not CaseScore.objects.filter(project=project).exists()
    assert not list((tmp_path / "models").glob("**/*.skops"))  # no half-written model file

    # Another worker's scheduler sees the heartbeat stop, queues the run again, and runs it.
    second, log_second = _start_worker(tmp_path, "second")
    try:
        done = _wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, status=RunStatus.SUCCEEDED).first(),
            240,
            "the retried run to succeed",
            log_second,
        )
        assert done.attempts == 2
        version = ModelVersion.objects.get(project=project)
        assert version.training_run_id == run.pk and version.number == 1
        _wait_for(
            lambda: Deployment.objects.filter(
                project=project, scores_applied_at__isnull=False
            ).exists(),
            60,
            "the first version's scores",
            log_second,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _kill(second)
