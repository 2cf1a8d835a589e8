"""Celery tasks of the modeling app: thin wrappers that load by id and call one service.

All are idempotent and acknowledged late: a worker killed in the middle leaves the task to be
delivered again, and doing it twice changes nothing."""

from celery import shared_task

from apps.modeling import services


@shared_task(name="modeling.run_training", acks_late=True)
def run_training_task(run_id: int) -> None:
    services.training_run_execute(run_id=run_id)


@shared_task(name="modeling.store_predictions", acks_late=True)
def store_predictions_task(version_id: int) -> None:
    services.version_predictions_store(version_id=version_id)


@shared_task(name="modeling.apply_deployment", acks_late=True)
def apply_deployment_task(deployment_id: int) -> None:
    services.deployment_apply(deployment_id=deployment_id)


@shared_task(name="modeling.reproduce_run", acks_late=True)
def reproduce_run_task(run_id: int) -> None:
    services.training_run_reproduce_safely(run_id=run_id)


@shared_task(name="modeling.schedule_retrains", ignore_result=True)
def schedule_retrains_task() -> None:
    services.retrain_schedule()


@shared_task(name="modeling.check_models", ignore_result=True)
def check_models_task() -> None:
    services.monitoring_check_all()
