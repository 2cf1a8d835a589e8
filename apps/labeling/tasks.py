"""Celery tasks of the labeling app: thin wrappers that load by id and call one service."""

from celery import shared_task

from apps.labeling import services


@shared_task(name="labeling.refresh_queue", ignore_result=True)
def refresh_queue_task(project_id: int) -> None:
    services.queue_refresh(project_id=project_id)


@shared_task(name="labeling.refresh_due_queues", ignore_result=True)
def refresh_due_queues_task() -> None:
    services.queue_refresh_due()
