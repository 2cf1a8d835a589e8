"""Celery tasks of the modeling app: thin wrappers that load by id and call one service."""

from celery import shared_task

from apps.modeling import services


@shared_task(name="modeling.run_training", acks_late=True)
def run_training_task(run_id: int) -> None:
    services.training_run_execute(run_id=run_id)


@shared_task(name="modeling.schedule_retrains", ignore_result=True)
def schedule_retrains_task() -> None:
    services.retrain_schedule()
