"""Training runs: the coalescing policy, execution, failure, and what a model version records."""

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from apps.cases.models import Case
from apps.cases.selectors import case_feature_matrix
from apps.labeling.models import CaseScore, Label
from apps.labeling.services import label_record
from apps.modeling import services
from apps.modeling.ml.cancellation import Cancellation
from apps.modeling.ml.persistence import UntrustedModelFile, file_sha256, model_load, model_save
from apps.modeling.models import Deployment, ModelVersion, RunStatus, RunTrigger, TrainingRun
from apps.modeling.services import runs
from apps.projects.models import Project
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled_project(project, data_scientist, import_frame, settings, tmp_path):
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    frame = make_cases_frame(300, labeled=0.8, seed=3)
    import_frame(project, data_scientist, frame)
    project.refresh_from_db()
    return project


def _run(project, **kwargs) -> TrainingRun:
    run, created = services.training_run_request(
        project=project, trigger=RunTrigger.MANUAL, **kwargs
    )
    assert created
    run = services.training_run_execute(run_id=run.pk)
    # What the default queue's worker does with the deploy the run left to it.
    for deployment in Deployment.objects.filter(project=project, scores_applied_at__isnull=True):
        services.deployment_apply(deployment_id=deployment.pk)
    return run


def test_a_run_trains_evaluates_and_stores_a_reproducible_model_version(labeled_project):
    run = _run(labeled_project)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.progress == 100
    version = ModelVersion.objects.get(training_run=run)
    assert version.number == 1
    metrics = version.metrics
    assert metrics["split"] == "time"  # the cases are dated: test on the most recent
    assert metrics["n_train"] + metrics["n_test"] == Label.objects.count()
    assert metrics["accuracy"] > 0.75
    assert set(metrics["per_class"]) == {"no_heart_failure", "heart_failure"}
    # Provenance: the exact snapshot, the code and the libraries.
    assert run.label_watermark == Label.objects.latest("id").pk
    assert len(run.snapshot_sha256) == 64
    assert Path(run.snapshot_path).is_file()
    assert run.code_version and "scikit-learn" in run.library_versions
    assert run.feature_names == ["age", "creatinine", "nt_pro_bnp"]
    # The file is skops, matches its hash, and predicts as the stored scores say.
    assert file_sha256(Path(version.file_path)) == version.file_sha256
    model = model_load(Path(version.file_path), version.file_sha256)
    matrix = case_feature_matrix(project_id=labeled_project.pk)
    predicted = model.predict(matrix.values)
    scores = dict(CaseScore.objects.values_list("case_id", "predicted_label"))
    assert [scores[c] for c in matrix.case_ids.tolist()] == predicted.tolist()


def test_a_tampered_model_file_is_refused(labeled_project):
    run = _run(labeled_project)
    path = Path(run.model_version.file_path)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(UntrustedModelFile, match="does not match"):
        model_load(path, run.model_version.file_sha256)


class _Planted(BaseEstimator, TransformerMixin):
    """A type no model of ours holds: loading it would run this module's code."""

    restored = False

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X

    def __setstate__(self, state):
        type(self).restored = True
        self.__dict__.update(state)


@pytest.mark.parametrize(
    "planted, type_name",
    [
        (_Planted(), f"{__name__}._Planted"),
        (FunctionTransformer(func=os.system), "posix.system"),
    ],
    ids=["custom class", "function object"],
)
def test_a_model_file_with_an_untrusted_type_is_refused_even_when_its_hash_matches(
    labeled_project, planted, type_name
):
    """The hash only says the file is the one recorded; the trusted-types check is what stops
    a file that was recorded with a type that runs code when it is read."""
    run = _run(labeled_project)
    version = run.model_version
    path = Path(version.file_path)
    # Not fitted: fitting would call the planted function; skops writes it all the same.
    pipeline = make_pipeline(planted, LogisticRegression())
    path.unlink()
    # The file's hash is the one on the version: only the types can give it away.
    ModelVersion.objects.filter(pk=version.pk).update(file_sha256=model_save(pipeline, path))
    version.refresh_from_db()
    _Planted.restored = False

    with pytest.raises(UntrustedModelFile, match="not on the trusted list") as refused:
        services.version_model(version)
    assert type_name in str(refused.value) and path.name in str(refused.value)
    assert not _Planted.restored, "the planted object was built before the file was refused"
    with pytest.raises(UntrustedModelFile, match="not on the trusted list"):
        model_load(path, version.file_sha256)


def test_a_failed_run_shows_its_error_and_changes_nothing_else(
    project, data_scientist, import_frame, settings, tmp_path
):
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    frame = make_cases_frame(40, labeled=1.0)
    frame["label"] = "heart_failure"  # one class only
    import_frame(project, data_scientist, frame)

    run = _run(project)

    assert run.status == RunStatus.FAILED
    assert "at least two classes" in run.error
    assert not ModelVersion.objects.exists()
    assert not CaseScore.objects.exists()
    assert not any((tmp_path / "models").rglob("*.skops"))


def test_never_two_active_runs_of_one_project(labeled_project):
    first, created = services.training_run_request(
        project=labeled_project, trigger=RunTrigger.MANUAL
    )
    again, created_again = services.training_run_request(
        project=labeled_project, trigger=RunTrigger.API
    )
    assert created and not created_again and again == first
    # The database refuses it even when a caller skips the service's check.
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(
            project=labeled_project, trigger=RunTrigger.AUTO, labels_version=0
        )


def test_running_a_run_twice_does_the_work_once(labeled_project):
    run = _run(labeled_project)
    again = services.training_run_execute(run_id=run.pk)
    assert again.status == RunStatus.SUCCEEDED
    assert ModelVersion.objects.count() == 1


def test_scheduler_waits_for_enough_labels_or_for_quiet(labeled_project, clinician):
    project = labeled_project
    Project.objects.filter(pk=project.pk).update(retrain_min_new_labels=3, retrain_quiet_seconds=60)
    _run(project)  # trained on the imported labels
    assert services.retrain_schedule() == []

    unlabeled = list(Case.objects.filter(project=project, current_label="")[:5])
    label_record(case=unlabeled[0], value="heart_failure", author=clinician)
    label_record(case=unlabeled[1], value="heart_failure", author=clinician)
    assert services.retrain_schedule() == []  # 2 new labels, labeling not quiet yet

    later = timezone.now() + timedelta(seconds=61)
    assert len(services.retrain_schedule(now=later)) == 1  # quiet for 60 s: retrain
    TrainingRun.objects.filter(status=RunStatus.QUEUED).update(status=RunStatus.FAILED)

    # A failed run counts as tried: it takes 3 labels after it to retrain (no retry loop).
    for case in unlabeled[2:4]:
        label_record(case=case, value="heart_failure", author=clinician)
    assert services.retrain_schedule() == []
    label_record(case=unlabeled[4], value="heart_failure", author=clinician)
    started = services.retrain_schedule()
    assert len(started) == 1  # 3 new labels since the last run: retrain at once
    run = TrainingRun.objects.get(pk=started[0])
    assert run.trigger == RunTrigger.AUTO
    assert services.retrain_schedule(now=later) == []  # one active at a time


def test_a_burst_of_labels_coalesces_into_one_run(labeled_project, clinician):
    project = labeled_project
    _run(project)
    for case in Case.objects.filter(project=project, current_label="")[:25]:
        label_record(case=case, value="no_heart_failure", author=clinician)
    assert len(services.retrain_schedule()) == 1
    assert services.retrain_schedule() == []
    assert TrainingRun.objects.filter(status=RunStatus.QUEUED).count() == 1


def test_scheduler_ignores_projects_with_auto_retrain_off(labeled_project):
    Project.objects.filter(pk=labeled_project.pk).update(auto_retrain=False)
    assert services.retrain_schedule(now=timezone.now() + timedelta(days=1)) == []


def test_a_run_whose_worker_died_is_tried_again_once_then_marked_failed(labeled_project):
    run, _ = services.training_run_request(project=labeled_project, trigger=RunTrigger.MANUAL)
    long_ago = timezone.now() - timedelta(minutes=5)  # no heartbeat for longer than allowed
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, heartbeat_at=long_ago, attempts=1
    )
    services.training_runs_mend()
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and "trying again" in run.progress_message
    # A worker picks it up again, and dies again: now it is given up.
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, heartbeat_at=long_ago, attempts=2
    )
    services.training_runs_mend()
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "stopped reporting, 2 times" in run.error
    assert not ModelVersion.objects.filter(training_run=run).exists()
    assert services.training_run_request(project=labeled_project, trigger=RunTrigger.MANUAL)[1]


def test_a_run_that_is_still_beating_is_left_alone(labeled_project):
    run, _ = services.training_run_request(project=labeled_project, trigger=RunTrigger.MANUAL)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, heartbeat_at=timezone.now(), attempts=1
    )
    services.training_runs_mend()
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


@pytest.mark.parametrize(
    "family", ["logistic_regression", "hist_gradient_boosting", "random_forest"]
)
def test_each_model_family_trains_and_loads(labeled_project, family):
    run = _run(labeled_project, params={"model_family": family, "n_estimators": 20, "max_iter": 50})
    assert run.status == RunStatus.SUCCEEDED, run.error
    model = model_load(Path(run.model_version.file_path))
    matrix = case_feature_matrix(project_id=labeled_project.pk)
    assert np.isfinite(model.predict_proba(matrix.values)).all()


def test_an_automatic_run_on_unchanged_labels_makes_no_duplicate_version(
    labeled_project, clinician
):
    _run(labeled_project)
    case = Case.objects.filter(project=labeled_project, current_label="").first()
    label_record(case=case, value="heart_failure", author=clinician)
    from apps.labeling.services import label_undo_last

    label_undo_last(project=labeled_project, author=clinician)  # back to the same labels
    run, _ = services.training_run_request(project=labeled_project, trigger=RunTrigger.AUTO)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SKIPPED
    assert "Labels unchanged" in run.progress_message
    assert ModelVersion.objects.count() == 1
    # A data scientist's explicit request still trains.
    assert _run(labeled_project).status == RunStatus.SUCCEEDED
    assert ModelVersion.objects.count() == 2


def test_scheduler_waits_until_there_are_enough_labeled_cases(
    project, data_scientist, import_frame
):
    import_frame(project, data_scientist, make_cases_frame(5, labeled=1.0))
    assert services.retrain_schedule(now=timezone.now() + timedelta(days=1)) == []


def test_queued_runs_are_sent_again_only_when_unsent_or_long_waiting(labeled_project, monkeypatch):
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: sent.append(args[0]))
    run, _ = services.training_run_request(project=labeled_project, trigger=RunTrigger.MANUAL)
    now = timezone.now()
    TrainingRun.objects.filter(pk=run.pk).update(enqueued_at=None)  # the broker was down
    services.training_runs_mend(now=now + timedelta(minutes=1))
    assert sent == [run.pk]
    services.training_runs_mend(now=now + timedelta(minutes=2))  # sent a minute ago: wait
    assert sent == [run.pk]
    services.training_runs_mend(now=now + timedelta(minutes=20))
    assert sent == [run.pk, run.pk]


@pytest.mark.django_db(transaction=True)
def test_a_long_fit_keeps_beating_so_it_is_not_taken_for_a_dead_worker(
    labeled_project, monkeypatch
):
    monkeypatch.setattr(runs, "HEARTBEAT_SECONDS", 0.05)
    run, _ = services.training_run_request(project=labeled_project, trigger=RunTrigger.MANUAL)
    long_ago = timezone.now() - timedelta(minutes=30)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=long_ago)
    heartbeat = services._Heartbeat(run.pk, Cancellation())
    heartbeat.start()
    import time

    time.sleep(0.5)  # a fit in progress: no step reports, only the heartbeat thread
    heartbeat.done.set()
    heartbeat.join(timeout=5)
    services.training_runs_mend()
    run.refresh_from_db()
    assert run.heartbeat_at > timezone.now() - timedelta(seconds=5)
    assert run.status == RunStatus.RUNNING


def test_a_relabel_and_its_undo_make_no_duplicate_version(labeled_project, clinician):
    from apps.labeling.services import label_undo_last

    _run(labeled_project)
    case = Case.objects.filter(project=labeled_project).exclude(current_label="").first()
    other = "heart_failure" if case.current_label == "no_heart_failure" else "no_heart_failure"
    label_record(case=case, value=other, author=clinician)
    label_undo_last(project=labeled_project, author=clinician)
    run, _ = services.training_run_request(project=labeled_project, trigger=RunTrigger.AUTO)
    assert services.training_run_execute(run_id=run.pk).status == RunStatus.SKIPPED
