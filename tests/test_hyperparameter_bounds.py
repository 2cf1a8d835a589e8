"""Hyperparameters are bounded to what a real model needs: out of range, NaN, infinity or not a
number is refused with the parameter and its range named — by the service, the API and the
models page alike — and a run given such a value fails at once instead of holding the worker."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from apps.modeling import services
from apps.modeling.ml.hyperparameters import HYPERPARAMETER_RANGES
from apps.modeling.models import RunStatus, RunTrigger, TrainingConfig
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


@contextmanager
def _fails_after(*, seconds: int) -> Iterator[None]:
    """Fail the test (instead of hanging the suite) when the block is still running after
    `seconds`: the alarm interrupts the main thread at its next Python step."""

    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# (family, name, value, the range the message must name)
REFUSED = [
    ("random_forest", "n_estimators", 10**9, "a whole number from 1 to 2,000"),
    ("hist_gradient_boosting", "max_iter", 10**12, "a whole number from 1 to 2,000"),
    ("logistic_regression", "max_iter", 10**15, "a whole number from 1 to 10,000"),
    ("logistic_regression", "C", "NaN", "a number from 0.0001 to 10,000"),
    ("logistic_regression", "C", "inf", "a number from 0.0001 to 10,000"),
    ("logistic_regression", "C", float("nan"), "a number from 0.0001 to 10,000"),
    ("logistic_regression", "C", float("-inf"), "a number from 0.0001 to 10,000"),
    ("logistic_regression", "C", "0.5", "a number from 0.0001 to 10,000"),
    ("logistic_regression", "C", 0, "a number from 0.0001 to 10,000"),
    ("hist_gradient_boosting", "learning_rate", 5.0, "a number from 0.001 to 1"),
    ("hist_gradient_boosting", "max_leaf_nodes", 1, "a whole number from 2 to 1,024"),
    ("random_forest", "min_samples_leaf", 2.5, "a whole number from 1 to 1,000"),
    ("random_forest", "n_estimators", True, "a whole number from 1 to 2,000"),
    ("random_forest", "n_estimators", None, "a whole number from 1 to 2,000"),
    ("random_forest", "n_estimators", [100], "a whole number from 1 to 2,000"),
    # Under "auto" a name counts for every family that reads it: max_iter as for boosting.
    ("auto", "max_iter", 5_000, "a whole number from 1 to 2,000"),
]


@pytest.mark.parametrize("family, name, value, bound", REFUSED)
def test_the_service_refuses_a_value_out_of_range_naming_it_and_the_range(
    project, data_scientist, family, name, value, bound
):
    with pytest.raises(ValidationError) as refused:
        services.training_config_change(
            project=project,
            changed_by=data_scientist,
            model_family=family,
            hyperparameters={name: value},
        )
    message = refused.value.message_dict["hyperparameters"][0]
    assert message.startswith(f"{name} is {bound} for "), message
    assert not TrainingConfig.objects.filter(project=project).exists()


def test_every_bad_value_is_named_and_the_ends_of_each_range_are_accepted(project, data_scientist):
    with pytest.raises(ValidationError) as refused:
        services.training_config_change(
            project=project,
            changed_by=data_scientist,
            model_family="random_forest",
            hyperparameters={"n_estimators": 0, "min_samples_leaf": 10**6},
        )
    message = refused.value.message_dict["hyperparameters"][0]
    assert "n_estimators is" in message and "min_samples_leaf is" in message
    for family, spec in HYPERPARAMETER_RANGES.items():
        for which in ("low", "high"):
            ends = {name: getattr(bound, which) for name, bound in spec.items()}
            config = services.training_config_change(
                project=project,
                changed_by=data_scientist,
                model_family=family,
                hyperparameters=ends,
            )
            assert config.hyperparameters == ends
    # A whole number written as 300.0 is stored as the count it is.
    config = services.training_config_change(
        project=project,
        changed_by=data_scientist,
        model_family="random_forest",
        hyperparameters={"n_estimators": 300.0},
    )
    assert config.hyperparameters == {"n_estimators": 300}
    assert type(config.hyperparameters["n_estimators"]) is int


@pytest.mark.parametrize(
    "hyperparameters, named",
    [
        ({"C": "NaN"}, "C is a number from 0.0001 to 10,000 for logistic regression"),
        ({"C": "inf"}, "C is a number from 0.0001 to 10,000 for logistic regression"),
        ({"max_iter": 10**15}, "max_iter is a whole number from 1 to 10,000"),
    ],
)
def test_the_api_answers_400_naming_the_parameter_and_its_range(
    project, data_scientist, hyperparameters, named
):
    client = APIClient()
    client.force_authenticate(data_scientist)
    response = client.put(
        f"/api/projects/{project.pk}/training-config",
        {"model_family": "logistic_regression", "hyperparameters": hyperparameters},
        format="json",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert named in body["detail"] and named in body["errors"]["hyperparameters"][0]
    assert not TrainingConfig.objects.filter(project=project).exists()


def test_the_models_page_answers_400_naming_the_parameter_and_its_range(
    client, project, data_scientist
):
    client.force_login(data_scientist)
    url = reverse("modeling:models", args=[project.pk])
    form = {
        "form": "config",
        "config-model_family": "random_forest",
        "config-seed": 0,
        "config-test_fraction": 0.2,
        "config-cv_folds": 5,
    }
    response = client.post(url, {**form, "config-hyperparameters": '{"n_estimators": 1e9}'})
    assert response.status_code == 400
    assert "n_estimators is a whole number from 1 to 2,000 for random forest" in (
        response.content.decode()
    )
    response = client.post(url, {**form, "config-hyperparameters": '{"n_estimators": NaN}'})
    assert response.status_code == 400 and "n_estimators is a whole number" in (
        response.content.decode()
    )
    assert not TrainingConfig.objects.filter(project=project).exists()
    ok = client.post(url, {**form, "config-hyperparameters": '{"n_estimators": 2000}'})
    assert ok.status_code == 302
    assert TrainingConfig.objects.get(project=project).hyperparameters == {"n_estimators": 2000}


def test_a_run_given_a_value_past_its_range_fails_at_once_naming_it(
    project, data_scientist, import_frame, settings, tmp_path
):
    """A configuration saved before the bounds (written here past the service) must not hold
    the worker: the run fails before any fit, naming the parameter."""
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    import_frame(project, data_scientist, make_cases_frame(120, labeled=0.9, seed=3))
    TrainingConfig.objects.create(
        project=project, model_family="random_forest", hyperparameters={"n_estimators": 10**9}
    )
    run, created = services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
    assert created
    with _fails_after(seconds=60):  # were the bound not checked, this fit would never end
        run = services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.FAILED
    assert "n_estimators is a whole number from 1 to 2,000 for random forest" in run.error
    assert not hasattr(run, "model_version")
