"""Deploying and rolling back model versions, and applying production's scores to the queue."""

from __future__ import annotations

import logging

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from sklearn.pipeline import Pipeline

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.core import tasks as task_queue
from apps.labeling.services import case_scores_replace, queue_refresh, queue_refresh_request
from apps.modeling.models import (
    Deployment,
    DeploymentAction,
    ModelVersion,
)
from apps.modeling.services.common import APPLY_TASK, LABEL_ISSUES_TASK, _deployment_current
from apps.modeling.services.monitoring import monitoring_check
from apps.modeling.services.predictions import (
    version_decisions,
    version_predictions_load,
    version_predictions_make,
)
from apps.projects.models import Project

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Deploy and roll back.


def model_version_deploy(
    *,
    version: ModelVersion,
    deployed_by: User | None,
    action: str = DeploymentAction.DEPLOY,
    note: str = "",
    apply_now: bool = False,
) -> Deployment:
    """Make a version the project's production model.

    One row inserted: the predict API reads the newest row per request, so every answer comes
    wholly from the old or the new version, and none fails while the switch happens. The
    version's predictions of every case then replace the stored scores in the worker (or here,
    with `apply_now`, when already in the worker)."""
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=version.project_id)
        current = _deployment_current(version.project_id)
        if current is not None and current.model_version_id == version.pk:
            raise ValidationError(f"Version {version.number} is already in production.")
        deployment = Deployment.objects.create(
            project_id=version.project_id,
            model_version=version,
            action=action,
            note=note[:300],
            deployed_by=deployed_by,
        )
        audit_record(
            action=AuditAction.ROLLBACK
            if action == DeploymentAction.ROLLBACK
            else AuditAction.DEPLOY,
            actor=deployed_by,
            summary=f"{DeploymentAction(action).label}: version {version.number}"
            + (f" (was {current.model_version.number})" if current else ""),
            project_id=version.project_id,
            object_type="model version",
            object_id=version.number,
            detail={"note": note[:300], "deployment": deployment.pk},
        )
        if not apply_now:
            task_queue.task_send_on_commit(APPLY_TASK, deployment.pk)
        # The review board shows production's verdicts. A version rolled back to may have had
        # its verdicts dropped (only production's and the newest are kept): it gets them again.
        # A version that has them is left as it is (the task is idempotent).
        task_queue.task_send_on_commit(LABEL_ISSUES_TASK, version.pk)
    if apply_now:
        deployment_apply(deployment_id=deployment.pk)
    return deployment


def model_version_rollback(
    *,
    project: Project,
    deployed_by: User | None,
    to_version: ModelVersion | None = None,
    note: str = "",
) -> Deployment:
    """Go back to the version that served before the current one, or to a chosen earlier one."""
    history = list(
        Deployment.objects.filter(project=project).order_by("-id").select_related("model_version")
    )
    if not history:
        raise ValidationError("Nothing is deployed yet: there is nothing to roll back.")
    current = history[0].model_version
    if to_version is None:
        # The newest version that served before and is older than the current one, so that
        # rolling back twice goes back twice.
        earlier = [d.model_version for d in history[1:] if d.model_version.number < current.number]
        if not earlier:
            raise ValidationError(
                f"Version {current.number} is the only one ever deployed: there is no earlier one."
            )
        to_version = earlier[0]
    if to_version.project_id != project.pk:
        raise ValidationError("That version belongs to another project.")
    if to_version.number >= current.number:
        raise ValidationError(
            f"Version {to_version.number} is not earlier than version {current.number} in "
            "production; deploy it instead."
        )
    return model_version_deploy(
        version=to_version,
        deployed_by=deployed_by,
        action=DeploymentAction.ROLLBACK,
        note=note or f"Rolled back from version {current.number}",
    )


def deployment_apply(*, deployment_id: int) -> bool:
    """Store a deployed version's predictions as the project's case scores and re-rank the
    queue. Idempotent; does nothing for a deployment that a newer one has replaced."""
    deployment = Deployment.objects.select_related("model_version__project").get(pk=deployment_id)
    if deployment.scores_applied_at is not None:
        return False
    version = deployment.model_version
    case_ids, proba = version_predictions_load(version)
    classes = list(version.project.classes)
    decided = version_decisions(version, proba)
    with transaction.atomic():
        # The project lock orders this against a newer deployment's apply.
        Project.objects.select_for_update().get(pk=version.project_id)
        newest = _deployment_current(version.project_id)
        if newest is None or newest.pk != deployment.pk:
            return False
        if Deployment.objects.filter(pk=deployment.pk, scores_applied_at__isnull=False).exists():
            return False  # a duplicate of this task applied it while we read the file
        case_scores_replace(
            project_id=version.project_id,
            model_version_number=version.number,
            case_ids=case_ids,
            predicted_labels=[classes[i] for i in decided],
            confidences=proba[np.arange(len(decided)), decided],
            probabilities=proba,
        )
        Deployment.objects.filter(pk=deployment.pk).update(scores_applied_at=timezone.now())
    # The queue's model-based strategies rank by these scores: re-rank here, in the worker,
    # so that handing out a case never sorts cases. A re-rank that fails is sent again.
    try:
        queue_refresh(project_id=version.project_id)
    except Exception:
        logger.exception("re-ranking the queue of project %s failed; retrying", version.project_id)
        queue_refresh_request(project_id=version.project_id)
    try:
        monitoring_check(project_id=version.project_id)
    except Exception:
        logger.exception("checking project %s's production model failed", version.project_id)
    return True


def version_predictions_store(
    *,
    version_id: int,
    pipeline: Pipeline | None = None,
    matrix=None,
    deploy_if_due: bool = True,
    proba: np.ndarray | None = None,
) -> ModelVersion:
    """Predict every case of the project with a model version and keep the probabilities
    (Parquet, one column per class). With `deploy_if_due`, deploys the version when the
    project has none in production yet, or when it deploys every new version automatically and
    this one is newer than production. Idempotent. `proba`: the version's probabilities for
    every case of `matrix`, when the caller has them already."""
    version = ModelVersion.objects.select_related("training_run", "project").get(pk=version_id)
    project = version.project
    version = version_predictions_make(version, pipeline=pipeline, matrix=matrix, proba=proba)
    current = _deployment_current(project.pk)
    due = current is None or (project.auto_deploy and current.model_version.number < version.number)
    if current is not None and current.model_version_id == version.pk:
        due = False  # deployed already (by a duplicate of this task)
    if deploy_if_due and due:
        deployment = model_version_deploy(
            version=version,
            deployed_by=None,
            action=DeploymentAction.AUTO,
            note="First model of the project" if current is None else "Automatic deploy",
            # Storing a million case scores is the deploy's work, not the run's: it goes to
            # the default queue, as a deploy from the page does, and the training worker is
            # free for the next run. Predictions are served from the new version already.
            apply_now=False,
        )
        logger.info(
            "project %s: version %s deployed (%s)", project.pk, version.number, deployment.pk
        )
    return version
