"""Objectives and training configurations, deploy and rollback, the predict API, alerts on the
demo cohort, reproduction, and the pages and admin actions around them."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.cases.models import Case
from apps.core import tasks as task_queue
from apps.labeling.models import CaseScore
from apps.labeling.services import label_record
from apps.modeling import services
from apps.modeling.models import (
    Deployment,
    DeploymentAction,
    ModelVersion,
    RunStatus,
    RunTrigger,
    TrainingRun,
)
from apps.modeling.selectors import deployment_current, project_alerts
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled_project(project, data_scientist, import_frame, settings, tmp_path):
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    frame = make_cases_frame(400, labeled=0.85, seed=3)
    import_frame(project, data_scientist, frame)
    project.refresh_from_db()
    return project


def _run(project, **kwargs) -> TrainingRun:
    run, created = services.training_run_request(
        project=project, trigger=RunTrigger.MANUAL, **kwargs
    )
    assert created
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    _worker_applies_deployments(project)
    return run


def _worker_applies_deployments(project) -> None:
    """What the default queue's worker does with a deploy the run left to it."""
    for deployment in Deployment.objects.filter(project=project, scores_applied_at__isnull=True):
        services.deployment_apply(deployment_id=deployment.pk)


def _scores_version(project) -> set[int]:
    return set(
        CaseScore.objects.filter(project=project).values_list("model_version_number", flat=True)
    )


def test_objective_changes_are_kept_and_each_version_records_the_one_it_was_chosen_under(
    labeled_project, data_scientist
):
    first = _run(labeled_project)
    assert first.objective is None  # never set: accuracy, the default
    objective = services.objective_change(
        project=labeled_project,
        changed_by=data_scientist,
        metric="f_beta",
        positive_class="heart_failure",
        beta=2.0,
        note="Missing a case is worse than a false alarm",
    )
    second = _run(labeled_project)
    version = second.model_version
    assert second.objective == objective and version.objective == objective
    assert version.positive_class == "heart_failure"
    assert version.evaluation["objective_label"] == "F2 (heart_failure)"
    assert version.threshold is not None and version.threshold < 0.5  # recall weighs more
    assert version.objective_value == version.metrics["objective"]
    services.objective_change(project=labeled_project, changed_by=data_scientist, metric="roc_auc")
    assert labeled_project.objectives.count() == 2  # the history stays
    version.refresh_from_db()
    assert version.objective == objective  # an old version keeps its objective


def test_bad_objectives_and_configurations_are_refused_naming_the_problem(
    labeled_project, data_scientist
):
    with pytest.raises(ValidationError, match="not one of the project's classes"):
        services.objective_change(
            project=labeled_project,
            changed_by=data_scientist,
            metric="pr_auc",
            positive_class="stroke",
        )
    with pytest.raises(ValidationError, match="must be 2×2"):
        services.objective_change(
            project=labeled_project,
            changed_by=data_scientist,
            metric="expected_cost",
            cost_matrix=[[0, 1, 2]],
        )
    with pytest.raises(ValidationError) as error:
        services.training_config_change(
            project=labeled_project,
            changed_by=data_scientist,
            model_family="random_forest",
            features=["age", "troponin"],
            hyperparameters={"C": 2.0},
        )
    assert "troponin" in str(error.value.message_dict["features"])
    assert "'C' is not a hyperparameter of random_forest" in str(
        error.value.message_dict["hyperparameters"]
    )
    assert labeled_project.objectives.count() == 0 and labeled_project.training_configs.count() == 0


def test_the_configuration_chooses_family_features_window_and_seed(
    project, data_scientist, import_frame, settings, tmp_path
):
    import pandas as pd

    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    frame = make_cases_frame(500, labeled=0.9, seed=3)
    frame["occurred_at"] = pd.date_range("2024-01-01", periods=500, freq="36h", tz="UTC")
    import_frame(project, data_scientist, frame)
    labeled_project = project
    services.training_config_change(
        project=labeled_project,
        changed_by=data_scientist,
        model_family="hist_gradient_boosting",
        class_weight="balanced",
        window_months=6,
        features=["nt_pro_bnp", "age"],
        hyperparameters={"max_iter": 50},
        seed=42,
        note="recent patients only",
    )
    run = _run(labeled_project)
    version = run.model_version
    assert run.seed == 42 and run.params["class_weight"] == "balanced"
    assert run.feature_names == ["age", "nt_pro_bnp"]  # in the project's order
    assert version.model_family == "hist_gradient_boosting"
    window = version.metrics["window"]
    assert window["months"] == 6
    labeled = Case.objects.filter(project=labeled_project).exclude(current_label="")
    newest = max(labeled.values_list("occurred_at", flat=True))
    in_window = [
        d
        for d in labeled.values_list("occurred_at", flat=True)
        if (newest.year - d.year) * 12 + newest.month - d.month < 6
    ]
    assert window["cases"] == len(in_window) < labeled.count()
    assert version.metrics["n_train"] + version.metrics["n_test"] == len(in_window)
    # The old version keeps predicting with the two features it was trained on.
    answer = APIClient()
    answer.force_authenticate(data_scientist)
    response = answer.post(
        f"/api/projects/{labeled_project.pk}/predict",
        {"cases": [{"age": 80, "nt_pro_bnp": 5000}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["model_version"] == version.number


def test_the_first_version_is_deployed_and_later_ones_wait_for_a_data_scientist(
    labeled_project, data_scientist
):
    run, _ = services.training_run_request(project=labeled_project, trigger=RunTrigger.MANUAL)
    v1 = services.training_run_execute(run_id=run.pk).model_version
    # Production switches with the run; the case scores are stored by the deploy's own task.
    first = deployment_current(project=labeled_project)
    assert first.model_version == v1 and first.scores_applied_at is None
    assert _scores_version(labeled_project) == set()
    services.deployment_apply(deployment_id=first.pk)
    assert _scores_version(labeled_project) == {1}
    v2 = _run(labeled_project).model_version
    assert deployment_current(project=labeled_project).model_version == v1
    assert _scores_version(labeled_project) == {1}  # the queue still ranks by production
    assert Path(v2.predictions_path).is_file()

    services.model_version_deploy(version=v2, deployed_by=data_scientist, apply_now=True)
    assert deployment_current(project=labeled_project).model_version == v2
    assert _scores_version(labeled_project) == {2}
    with pytest.raises(ValidationError, match="already in production"):
        services.model_version_deploy(version=v2, deployed_by=data_scientist)

    back = services.model_version_rollback(project=labeled_project, deployed_by=data_scientist)
    assert back.action == DeploymentAction.ROLLBACK and back.model_version == v1
    services.deployment_apply(deployment_id=back.pk)
    assert _scores_version(labeled_project) == {1}
    actions = list(
        Deployment.objects.filter(project=labeled_project)
        .order_by("id")
        .values_list("action", "model_version__number")
    )
    assert actions == [("auto", 1), ("deploy", 2), ("rollback", 1)]
    audited = AuditEvent.objects.filter(
        project_id=labeled_project.pk, action__in=["deploy", "rollback"]
    )
    assert [(e.action, e.actor_name, e.object_id) for e in audited.order_by("id")] == [
        ("deploy", "", "1"),  # the first version, deployed by the system
        ("deploy", data_scientist.username, "2"),
        ("rollback", data_scientist.username, "1"),
    ]
    # The stored scores are the version's own predictions under its threshold.
    case_ids, proba = services.version_predictions_load(v1)
    decided = services.version_decisions(v1, proba)
    stored = dict(CaseScore.objects.values_list("case_id", "predicted_label"))
    classes = list(labeled_project.classes)
    assert [stored[c] for c in case_ids.tolist()] == [classes[i] for i in decided]


def test_rollback_refuses_what_cannot_be_rolled_back(labeled_project, data_scientist):
    with pytest.raises(ValidationError, match="Nothing is deployed"):
        services.model_version_rollback(project=labeled_project, deployed_by=data_scientist)
    v1 = _run(labeled_project).model_version
    with pytest.raises(ValidationError, match="only one ever deployed"):
        services.model_version_rollback(project=labeled_project, deployed_by=data_scientist)
    v2 = _run(labeled_project).model_version
    with pytest.raises(ValidationError, match="not earlier"):
        services.model_version_rollback(
            project=labeled_project, deployed_by=data_scientist, to_version=v2
        )
    assert deployment_current(project=labeled_project).model_version == v1


def test_auto_deploy_deploys_every_new_version(labeled_project):
    labeled_project.auto_deploy = True
    labeled_project.save(update_fields=["auto_deploy"])
    _run(labeled_project)
    v2 = _run(labeled_project).model_version
    assert deployment_current(project=labeled_project).model_version == v2
    assert _scores_version(labeled_project) == {2}


def test_a_failed_run_leaves_production_and_scores_untouched(labeled_project, monkeypatch):
    v1 = _run(labeled_project).model_version
    scores_before = list(
        CaseScore.objects.order_by("case_id").values_list("model_version_number", "confidence")
    )

    def crash(*args, **kwargs):
        raise MemoryError("the fit ran out of memory")

    monkeypatch.setattr(services.training, "train_and_evaluate", crash)
    run, _ = services.training_run_request(project=labeled_project, trigger=RunTrigger.MANUAL)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.FAILED and "ran out of memory" in run.error
    assert ModelVersion.objects.filter(project=labeled_project).count() == 1
    assert deployment_current(project=labeled_project).model_version == v1
    scores_after = list(
        CaseScore.objects.order_by("case_id").values_list("model_version_number", "confidence")
    )
    assert scores_after == scores_before
    assert not list(Path(v1.file_path).parent.glob(f"run-{run.pk}*"))  # no file left behind


def test_reproduce_run_retrains_from_the_snapshot_and_matches(labeled_project, capsys):
    run = _run(labeled_project)
    # Labels move on after the run; the snapshot still names what it trained on.
    case = Case.objects.filter(project=labeled_project, current_label="").first()
    label_record(case=case, value="heart_failure", author=labeled_project.created_by)
    result = services.training_run_reproduce(run_id=run.pk)
    assert result["matched"] and result["max_abs_difference"] <= 1e-9
    assert (
        result["cases"]
        == run.model_version.metrics["n_train"] + run.model_version.metrics["n_test"]
    )
    call_command("reproduce_run", str(run.pk))
    assert f"Run {run.pk} reproduced." in capsys.readouterr().out
    run.refresh_from_db()
    assert run.reproduction["matched"] is True
    # A snapshot that was changed afterwards is caught.
    import pandas as pd

    frame = pd.read_parquet(run.snapshot_path)
    frame.loc[0, "label"] = (
        "heart_failure" if frame.loc[0, "label"] == "no_heart_failure" else "no_heart_failure"
    )
    frame.to_parquet(run.snapshot_path, index=False)
    with pytest.raises(CommandError, match="NOT reproduced"):
        call_command("reproduce_run", str(run.pk))
    with pytest.raises(CommandError, match="No training run"):
        call_command("reproduce_run", "999999")


def test_predict_names_the_version_and_refuses_bad_input(labeled_project, data_scientist, outsider):
    client = APIClient()
    client.force_authenticate(data_scientist)
    url = f"/api/projects/{labeled_project.pk}/predict"
    response = client.post(url, {"case_ids": [1]}, format="json")
    assert response.status_code == 409 and "no model in production" in response.json()["detail"]
    _run(labeled_project)
    ids = list(Case.objects.filter(project=labeled_project).values_list("id", flat=True)[:3])
    response = client.post(url, {"case_ids": ids}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == 1 and [p["case_id"] for p in body["predictions"]] == ids
    stored = dict(
        CaseScore.objects.filter(case_id__in=ids).values_list("case_id", "predicted_label")
    )
    assert [p["predicted_label"] for p in body["predictions"]] == [stored[i] for i in ids]
    for p in body["predictions"]:
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    bad = client.post(url, {"cases": [{"age": 70, "troponin": 3}]}, format="json")
    assert bad.status_code == 400 and "'troponin' is not a feature" in bad.json()["detail"]
    bad = client.post(url, {"cases": [{"age": "old"}]}, format="json")
    assert bad.status_code == 400 and "age = 'old' is not a number" in bad.json()["detail"]
    other = Case.objects.exclude(project=labeled_project).values_list("id", flat=True).first()
    if other:
        assert client.post(url, {"case_ids": [other]}, format="json").status_code == 400
    missing = client.post(url, {"cases": [{"age": 70}]}, format="json")  # others missing: NaN
    assert missing.status_code == 200
    client.force_authenticate(outsider)
    assert client.post(url, {"case_ids": ids}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_promote_during_predictions_answers_every_request_wholly_from_one_version(
    project, data_scientist, import_frame, settings, tmp_path
):
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    import_frame(project, data_scientist, make_cases_frame(300, labeled=0.9, seed=8))
    v1 = _run(project).model_version
    services.training_config_change(
        project=project,
        changed_by=data_scientist,
        model_family="hist_gradient_boosting",
        hyperparameters={"max_iter": 40},
    )
    v2 = _run(project).model_version
    ids = list(
        Case.objects.filter(project=project).order_by("id").values_list("id", flat=True)[:20]
    )
    expected = {}
    for version in (v1, v2):
        case_ids, proba = services.version_predictions_load(version)
        rows = np.searchsorted(case_ids, ids)
        expected[version.number] = np.round(proba[rows], 6)
    assert not np.allclose(expected[1], expected[2])

    answers: list[tuple[int, np.ndarray]] = []
    failures: list[str] = []
    # A client thread that raises (the test client re-raises a view's exception) must fail
    # the test, not only an answer that is not 200: a dead thread answers nothing more.
    raised: list[BaseException] = []
    stop = threading.Event()

    def client_loop() -> None:
        from django.db import connection

        client = APIClient()
        client.force_authenticate(data_scientist)
        try:
            while not stop.is_set():
                response = client.post(
                    f"/api/projects/{project.pk}/predict", {"case_ids": ids}, format="json"
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.content[:200]!r}")
                    continue
                body = response.json()
                got = np.array(
                    [[p["probabilities"][c] for c in project.classes] for p in body["predictions"]]
                )
                answers.append((body["model_version"], got))
        except BaseException as error:  # every failure is the test's business
            raised.append(error)
        finally:
            connection.close()

    def wait_for_answers(count: int) -> None:
        import time

        deadline = time.monotonic() + 30
        while len(answers) + len(failures) < count and time.monotonic() < deadline:
            if raised:
                return
            time.sleep(0.01)

    # Every client starts on an empty cache, so that their first requests load the model
    # together, as the first requests after a server starts do.
    from apps.modeling import serving

    serving._cache.clear()
    threads = [threading.Thread(target=client_loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for_answers(3)
        for _ in range(3):
            served = len(answers)
            services.model_version_deploy(version=v2, deployed_by=data_scientist, apply_now=True)
            wait_for_answers(served + 3)
            served = len(answers)
            services.model_version_rollback(
                project=project, deployed_by=data_scientist, to_version=v1
            )
            wait_for_answers(served + 3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not [t for t in threads if t.is_alive()], "a client thread never finished"
    assert not raised, raised[:3]
    assert not failures, failures[:3]
    assert {number for number, _ in answers} == {1, 2}
    for number, got in answers:
        assert np.allclose(got, expected[number], atol=1e-6), f"a mixed answer named v{number}"


def test_alerts_on_the_demo_cohort_imbalance_degenerate_drift_then_staleness(
    data_scientist, settings, tmp_path
):
    """The loop on the demo cohort: the first model predicts the majority and its features
    drift; once the wrong labels are fixed and recent patients are labeled, the retrained
    model is measurably stale on them."""
    from apps.workbench import demo_data
    from apps.workbench.demo import demo_project_load, demo_users_ensure

    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    users = demo_users_ensure(password="a-long-test-password")
    dataset = demo_data.heart_failure(n_patients=6000)
    project = demo_project_load(dataset=dataset, users=users).project
    services.objective_change(
        project=project,
        changed_by=users["scientist"],
        metric="roc_auc",
        positive_class="heart_failure",
    )
    _run(project)
    services.monitoring_check(project_id=project.pk)
    kinds = {a["kind"]: a for a in project_alerts(project=project)}
    assert "imbalance" in kinds and "heart_failure" in kinds["imbalance"]["title"]
    assert "degenerate" in kinds  # unweighted on ~3 % positives: it predicts the majority
    assert "drift" in kinds and "nt_pro_bnp" in kinds["drift"]["title"]

    # Error analysis found the wrong labels; the reviewer fixes them and a new model is
    # deployed. Its held-out months are as good as cross-validation: not stale.
    cases = {c.external_id: c for c in Case.objects.filter(project=project)}
    for external_id in dataset.flipped_external_ids:
        label_record(
            case=cases[external_id],
            value=dataset.true_labels[external_id],
            author=users["reviewer"],
        )
    v2 = _run(project).model_version
    services.model_version_deploy(version=v2, deployed_by=data_scientist, apply_now=True)
    kinds = {a["kind"]: a for a in project_alerts(project=project)}
    assert "stale" not in kinds, kinds.get("stale")

    # Clinicians label the shifted recent months: the model is measurably worse there.
    recent = Case.objects.filter(project=project, current_label="").order_by("occurred_at")
    for case in recent:
        label_record(
            case=case, value=dataset.true_labels[case.external_id], author=users["clinician"]
        )
    services.monitoring_check(project_id=project.pk)
    project.refresh_from_db()
    kinds = {a["kind"]: a for a in project_alerts(project=project)}
    assert "stale" in kinds, kinds
    assert "cases labeled since training (2025-09..2025-12)" in kinds["stale"]["figure"]
    assert "recent window" in kinds["stale"]["action"]
    assert "labels_changed" in kinds
    staleness = project.monitoring_reports.latest("id").figures["staleness"]
    assert staleness["older"] - staleness["recent"] > project.alert_stale_margin


# ---------------------------------------------------------------------------------------------
# Pages and the admin.


def test_models_page_shows_versions_and_lets_a_data_scientist_change_the_objective(
    client, labeled_project, data_scientist, reviewer, clinician
):
    _run(labeled_project)
    url = reverse("modeling:models", args=[labeled_project.pk])
    client.force_login(clinician)
    assert client.get(url).status_code == 403
    client.force_login(reviewer)
    page = client.get(url)
    assert page.status_code == 200 and b"v1" in page.content
    assert b"objective-form" not in page.content  # reviewers see, data scientists change
    assert client.post(url, {"form": "objective", "objective-metric": "roc_auc"}).status_code == 403
    client.force_login(data_scientist)
    bad = client.post(
        url,
        {
            "form": "objective",
            "objective-metric": "expected_cost",
            "objective-beta": 1,
            "objective-min_precision": 0.8,
            "objective-k": 100,
            "objective-cost_matrix": "0 1\n5 x",
        },
    )
    assert bad.status_code == 400 and b"Row 2 holds something that is not a number" in bad.content
    ragged = client.post(
        url,
        {
            "form": "objective",
            "objective-metric": "expected_cost",
            "objective-beta": 1,
            "objective-min_precision": 0.8,
            "objective-k": 100,
            "objective-cost_matrix": "0 1 2\n5 0",
        },
    )
    assert ragged.status_code == 400 and b"Row 2 has 2 numbers, row 1 has 3" in ragged.content
    ok = client.post(
        url,
        {
            "form": "objective",
            "objective-metric": "expected_cost",
            "objective-beta": 1,
            "objective-min_precision": 0.8,
            "objective-k": 100,
            "objective-cost_matrix": "0 1\n5 0",
            "objective-note": "missed cases cost 5×",
        },
    )
    assert ok.status_code == 302
    objective = labeled_project.objectives.get()
    assert (
        objective.cost_matrix == [[0.0, 1.0], [5.0, 0.0]] and objective.changed_by == data_scientist
    )
    ok = client.post(
        url,
        {
            "form": "config",
            "config-model_family": "random_forest",
            "config-seed": 3,
            "config-test_fraction": 0.2,
            "config-cv_folds": 4,
            "config-features": ["age"],
            "config-hyperparameters": '{"n_estimators": 50}',
        },
    )
    assert ok.status_code == 302
    config = labeled_project.training_configs.get()
    assert config.features == ["age"] and config.hyperparameters == {"n_estimators": 50}


def test_deploy_from_a_stale_page_is_refused(client, labeled_project, data_scientist):
    _run(labeled_project)
    v2 = _run(labeled_project).model_version
    client.force_login(data_scientist)
    url = reverse("modeling:deploy", args=[labeled_project.pk, v2.number])
    # The page showed nothing in production, but version 1 is.
    response = client.post(url, {"expected_production": ""}, follow=True)
    assert b"Production changed to version 1" in response.content
    assert deployment_current(project=labeled_project).model_version.number == 1
    response = client.post(url, {"expected_production": "1"}, follow=True)
    assert b"Deployed version 2" in response.content
    assert deployment_current(project=labeled_project).model_version == v2


def test_deploy_and_roll_back_from_the_page_keep_the_note_in_the_history(
    client, labeled_project, data_scientist
):
    _run(labeled_project)
    v2 = _run(labeled_project).model_version
    client.force_login(data_scientist)
    models_url = reverse("modeling:models", args=[labeled_project.pk])
    page = client.get(models_url).content.decode()
    # Each deploy and roll-back form has a note field of its own.
    assert page.count('name="note" maxlength="300"') == 1  # v2: deploy (v1 is in production)
    url = reverse("modeling:deploy", args=[labeled_project.pk, v2.number])
    client.post(url, {"expected_production": "1", "note": "recall on the recent months"})
    current = deployment_current(project=labeled_project)
    assert current.model_version == v2 and current.note == "recall on the recent months"
    page = client.get(models_url).content.decode()
    assert "Roll back to v1" in page and page.count('name="note" maxlength="300"') == 1
    back = reverse("modeling:deploy", args=[labeled_project.pk, 1])
    client.post(
        back, {"expected_production": "2", "action": "rollback", "note": "v2 flags too many"}
    )
    current = deployment_current(project=labeled_project)
    assert current.action == DeploymentAction.ROLLBACK and current.note == "v2 flags too many"
    history = client.get(models_url).content.decode().split("<h2>Deployments</h2>")[1]
    assert history.index("v2 flags too many") < history.index("recall on the recent months")
    too_long = client.post(url, {"expected_production": "1", "note": "x" * 301})
    assert too_long.status_code == 400 and b"the note is too long (301" in too_long.content
    assert deployment_current(project=labeled_project) == current  # nothing deployed


def test_run_page_draws_the_charts_and_compare_page_puts_two_versions_side_by_side(
    client, labeled_project, reviewer
):
    run = _run(labeled_project)
    _run(labeled_project)
    client.force_login(reviewer)
    page = client.get(reverse("modeling:run", args=[labeled_project.pk, run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<svg") >= 4  # objective per month, ROC, PR, calibration
    assert "ROC curve of heart_failure" in html and run.snapshot_sha256[:8] in html
    compare = client.get(reverse("modeling:compare", args=[labeled_project.pk]) + "?a=1&b=2")
    assert compare.status_code == 200
    assert b"compare-table" in compare.content and b"v1" in compare.content


def test_admin_actions_deploy_and_roll_back_for_data_scientists_only(
    client, labeled_project, data_scientist, reviewer
):
    v1 = _run(labeled_project).model_version
    v2 = _run(labeled_project).model_version
    changelist = reverse("admin:modeling_modelversion_changelist")
    # A reviewer does not enter the admin at all, staff flag or not.
    reviewer.is_staff = True
    reviewer.save()
    client.force_login(reviewer)
    response = client.post(changelist, {"action": "deploy", "_selected_action": [v2.pk]})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert deployment_current(project=labeled_project).model_version == v1
    client.force_login(data_scientist)
    client.post(changelist, {"action": "deploy", "_selected_action": [v2.pk]})
    assert deployment_current(project=labeled_project).model_version == v2
    client.post(changelist, {"action": "rollback", "_selected_action": [v1.pk]})
    current = deployment_current(project=labeled_project)
    assert current.model_version == v1 and current.action == DeploymentAction.ROLLBACK


def test_api_objective_config_versions_deploy_rollback_alerts(
    labeled_project, data_scientist, clinician
):
    client = APIClient()
    client.force_authenticate(clinician)
    base = f"/api/projects/{labeled_project.pk}"
    assert client.put(f"{base}/objective", {"metric": "roc_auc"}, format="json").status_code == 403
    client.force_authenticate(data_scientist)
    response = client.put(
        f"{base}/objective",
        {"metric": "precision_at_k", "k": 10, "note": "worklist of 10"},
        format="json",
    )
    assert response.status_code == 201 and response.json()["description"] == "Precision at 10"
    assert client.get(f"{base}/objective").json()["metric"] == "precision_at_k"
    response = client.put(f"{base}/training-config", {"model_family": "tree"}, format="json")
    assert response.status_code == 400
    response = client.put(
        f"{base}/training-config",
        {"model_family": "logistic_regression", "seed": 5},
        format="json",
    )
    assert response.status_code == 201
    _run(labeled_project)
    _run(labeled_project)
    versions = client.get(f"{base}/model-versions/").json()
    assert [(v["number"], v["in_production"]) for v in versions] == [(2, False), (1, True)]
    assert versions[0]["objective"] == "Precision at 10"
    detail = client.get(f"{base}/model-versions/2/").json()
    assert "curves" in detail["evaluation"]
    assert client.post(f"{base}/model-versions/2/deploy", {}, format="json").status_code == 201
    assert client.post(f"{base}/model-versions/9/deploy", {}, format="json").status_code == 404
    response = client.post(f"{base}/rollback", {}, format="json")
    assert response.status_code == 201 and response.json()["model_version"] == 1
    history = client.get(f"{base}/deployments/").json()
    assert [d["action"] for d in history] == ["rollback", "deploy", "auto"]
    # Alert below 45%: the rarer class (heart failure, about three cases in ten) is flagged.
    labeled_project.alert_min_class_share = 0.45
    labeled_project.save(update_fields=["alert_min_class_share"])
    alerts = client.get(f"{base}/alerts").json()
    fields = ("kind", "severity", "title", "figure", "action")
    shown = [{f: a[f] for f in fields} for a in project_alerts(project=labeled_project)]
    assert alerts == shown  # what the models page shows
    rare = [a for a in alerts if a["kind"] == "imbalance"]
    assert [a["title"] for a in rare] == ["Class 'heart_failure' is rare among the labels"]
    assert "alert below 45%" in rare[0]["figure"] and rare[0]["action"]
    run_id = TrainingRun.objects.filter(project=labeled_project).first().pk
    response = client.post(f"/api/training-runs/{run_id}/reproduce")
    assert response.status_code == 202 and response.json()["reproduction"]["status"] == "running"


def test_the_mender_sends_again_what_a_lost_worker_left_undone(
    labeled_project, data_scientist, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    v1 = _run(labeled_project).model_version
    v2 = _run(labeled_project).model_version
    # A worker died after storing version 2 but before its predictions; a deploy of it was
    # committed while the broker was down.
    ModelVersion.objects.filter(pk=v2.pk).update(predictions_path="")
    Path(v2.predictions_path).unlink()
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(task_queue, "task_send", lambda task, pk: sent.append((task, pk)) or True)
    deployment = services.model_version_deploy(version=v2, deployed_by=data_scientist)
    later = timezone.now() + timedelta(minutes=20)  # past the time predicting may take
    services.training_runs_mend(now=later)
    assert (services.PREDICT_TASK, v2.pk) in sent
    assert (services.APPLY_TASK, deployment.pk) in sent
    # Doing them now (as the worker would) finishes the job, once.
    services.deployment_apply(deployment_id=deployment.pk)
    v2.refresh_from_db()
    assert Path(v2.predictions_path).is_file()
    assert _scores_version(labeled_project) == {2}
    assert not services.deployment_apply(deployment_id=deployment.pk)  # already applied
    assert Deployment.objects.filter(project=labeled_project).count() == 2  # no extra deploy
    # A day later nothing is sent again, whatever is still missing.
    sent.clear()
    ModelVersion.objects.filter(pk=v1.pk).update(predictions_path="")
    services.training_runs_mend(now=timezone.now() + timedelta(days=2))
    assert sent == []


def test_compare_names_a_bad_pick(client, labeled_project, reviewer):
    _run(labeled_project)
    _run(labeled_project)
    client.force_login(reviewer)
    url = reverse("modeling:compare", args=[labeled_project.pk])
    assert b"Version 9 does not exist" in client.get(url + "?a=1&b=9").content
    assert b"Pick two different versions" in client.get(url + "?a=2&b=2").content
    assert b"compare-table" in client.get(url).content  # no pick: the two newest


def test_review_regressions_rollback_twice_compare_late_cases_reproduce_failure_and_roles(
    labeled_project, data_scientist, clinician, import_frame
):
    import pandas as pd

    v1 = _run(labeled_project).model_version
    v2 = _run(labeled_project).model_version
    v3 = _run(labeled_project).model_version
    services.model_version_deploy(version=v2, deployed_by=data_scientist, apply_now=True)
    services.model_version_deploy(version=v3, deployed_by=data_scientist, apply_now=True)
    # Rolling back twice goes back twice: v3 → v2 → v1.
    assert (
        services.model_version_rollback(
            project=labeled_project, deployed_by=data_scientist
        ).model_version
        == v2
    )
    assert (
        services.model_version_rollback(
            project=labeled_project, deployed_by=data_scientist
        ).model_version
        == v1
    )
    # Cases imported after both versions predicted are not compared with someone else's row.
    late = make_cases_frame(60, labeled=1.0, seed=21, start="2030-01-01")
    late["external_id"] = [f"late{i}" for i in range(60)]
    import_frame(labeled_project, data_scientist, late)
    comparison = services.model_versions_compare(
        a=v1, b=v2, objective=labeled_project.objectives.first() or _accuracy(labeled_project)
    )
    assert comparison["common"] is None or comparison["common"]["cases"] < 60 + 1
    assert pd.Timestamp("2030-01-01") > pd.Timestamp("2025-01-01")
    # A reproduction that cannot run says so instead of waiting forever.
    Path(v3.training_run.snapshot_path).unlink()
    result = services.training_run_reproduce_safely(run_id=v3.training_run_id)
    assert result["status"] == "failed" and "snapshot" in result["error"]
    # Clinicians get no model output from the API.
    client = APIClient()
    client.force_authenticate(clinician)
    base = f"/api/projects/{labeled_project.pk}"
    assert client.post(f"{base}/predict", {"case_ids": [1]}, format="json").status_code == 403
    assert client.get(f"{base}/model-versions/1/").status_code == 403
    assert client.get(f"{base}/objective").status_code == 403


def _accuracy(project):
    from apps.modeling.models import Objective

    return Objective(project=project, metric="accuracy")
