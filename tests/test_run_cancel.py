"""Cancelling a training run: a data scientist stops a queued or running run from the page, the
admin or the API; the worker stops within seconds, the run is marked cancelled with who and when,
nothing of it is stored, and the project can be trained again at once."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditAction, AuditEvent
from apps.modeling import services
from apps.modeling.ml.cancellation import Cancellation, RunCancelled
from apps.modeling.models import ModelVersion, RunStatus, RunTrigger, TrainingRun
from tests.conftest import make_cases_frame


def _queued(project, user) -> TrainingRun:
    run, created = services.training_run_request(
        project=project, trigger=RunTrigger.MANUAL, requested_by=user
    )
    assert created
    return run


@pytest.mark.django_db
def test_a_queued_run_is_cancelled_with_who_and_when_and_the_project_can_train_again(
    project, data_scientist, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(200))
    run = _queued(project, data_scientist)

    assert services.training_run_cancel(run=run, user=data_scientist)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.cancelled_by == data_scientist and run.cancelled_at is not None
    assert run.finished_at == run.cancelled_at
    event = AuditEvent.objects.get(action=AuditAction.CANCEL_RUN)
    assert event.actor_id == data_scientist.pk and event.object_id == str(run.pk)

    # Its message reaching a worker afterwards changes nothing.
    services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.started_at is None
    assert not ModelVersion.objects.filter(project=project).exists()

    # A second cancel is refused; a new run is taken at once.
    assert not services.training_run_cancel(run=run, user=data_scientist)
    again = _queued(project, data_scientist)
    assert again.pk != run.pk and again.status == RunStatus.QUEUED
    assert AuditEvent.objects.filter(action=AuditAction.CANCEL_RUN).count() == 1


def test_a_running_run_stops_within_seconds_and_leaves_nothing(
    transactional_db, project, data_scientist, import_frame, settings, tmp_path
):
    settings.CASEBOOK_MODEL_DIR = str(tmp_path / "models")
    import_frame(project, data_scientist, make_cases_frame(12_000))
    # Uncancelled, this run fits 2,000 trees five times in cross-validation and once more:
    # far longer than the bound below.
    services.training_config_change(
        project=project,
        changed_by=data_scientist,
        model_family="random_forest",
        hyperparameters={"n_estimators": 2000, "min_samples_leaf": 1},
    )
    run = _queued(project, data_scientist)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            services.training_run_execute(run_id=run.pk)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=worker, name="ml-worker")
    thread.start()
    deadline = time.monotonic() + 60
    while TrainingRun.objects.get(pk=run.pk).progress < 25:  # the fits have started
        assert thread.is_alive() and time.monotonic() < deadline, "the run never started fitting"
        time.sleep(0.1)
    time.sleep(1.0)

    assert services.training_run_cancel(run=run, user=data_scientist)
    thread.join(timeout=20)
    assert not thread.is_alive(), "the worker did not stop within 20 s of the cancel"
    assert errors == []

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.cancelled_by == data_scientist
    assert not ModelVersion.objects.filter(project=project).exists()
    folder = services.model_dir(project.pk)
    assert not list(folder.glob(f"run-{run.pk}-*")), "files of the cancelled run were kept"
    # Nothing is raised in the worker's thread afterwards, and the project trains again.
    services.training_config_change(
        project=project, changed_by=data_scientist, model_family="logistic_regression"
    )
    again = _queued(project, data_scientist)
    services.training_run_execute(run_id=again.pk)
    again.refresh_from_db()
    assert again.status == RunStatus.SUCCEEDED, again.error


def test_leaving_the_work_disarms_a_thread_even_when_the_cancel_comes_at_that_moment():
    for _ in range(200):
        cancellation = Cancellation()
        try:
            with cancellation.working():
                cancellation.cancel()  # raised in this very thread, now or at its next step
                sum(range(1000))
        except RunCancelled:
            pass
        sum(range(10_000))  # had an exception stayed pending, it would be raised here
        with pytest.raises(RunCancelled), cancellation.working():  # a cancelled run takes no more
            pass


def test_a_side_thread_working_for_the_run_is_stopped_too():
    cancellation = Cancellation()
    started, outcome = threading.Event(), []

    def side() -> None:
        try:
            with cancellation.working():
                started.set()
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # Python steps, as a fit's loop
                    sum(range(1000))
            outcome.append("ran to the end")
        except RunCancelled:
            outcome.append("stopped")

    thread = threading.Thread(target=side)
    thread.start()
    assert started.wait(10)
    cancellation.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive() and outcome == ["stopped"]


@pytest.mark.django_db
def test_the_page_cancels_for_a_data_scientist_and_refuses_others(
    client, project, data_scientist, clinician, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(200))
    run = _queued(project, data_scientist)
    url = reverse("modeling:cancel", args=[project.pk, run.pk])

    client.force_login(clinician)
    assert client.post(url).status_code == 403
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.QUEUED

    client.force_login(data_scientist)
    panel = client.post(url, {"from": "panel"}, headers={"HX-Request": "true"})
    assert panel.status_code == 200
    assert f"Run {run.pk} cancelled" in panel.content.decode()
    assert "Retrain now" in panel.content.decode()
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED

    again = client.post(url)  # a stale form: the run is over already
    assert again.status_code == 302
    page = client.get(again["Location"])
    assert "had already been cancelled" in page.content.decode()
    assert f"by {data_scientist.username}" in page.content.decode()
    other = reverse("modeling:cancel", args=[project.pk, 2**63 - 1])
    assert client.post(other).status_code == 404


@pytest.mark.django_db
def test_the_api_cancels_and_answers_409_when_the_run_is_over(
    project, data_scientist, clinician, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(200))
    run = _queued(project, data_scientist)
    api = APIClient()
    url = f"/api/training-runs/{run.pk}/cancel"

    api.force_authenticate(clinician)
    assert api.post(url).status_code == 403
    api.force_authenticate(data_scientist)
    answer = api.post(url)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "cancelled" and body["cancelled_by"] == data_scientist.username
    assert body["cancelled_at"]
    over = api.post(url)
    assert over.status_code == 409 and "cancelled" in over.json()["detail"]
    assert api.post("/api/training-runs/9223372036854775807/cancel").status_code == 404


@pytest.mark.django_db
def test_the_admin_action_cancels_the_runs_of_projects_the_user_is_data_scientist_of(
    client, project, data_scientist, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(200))
    run = _queued(project, data_scientist)
    client.force_login(data_scientist)
    answer = client.post(
        reverse("admin:modeling_trainingrun_changelist"),
        {"action": "cancel", "_selected_action": [run.pk]},
        follow=True,
    )
    assert answer.status_code == 200
    assert f"Cancelled run {run.pk}" in answer.content.decode()
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED
