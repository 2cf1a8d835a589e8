"""Celery tasks of the review app: thin wrappers that load by id and call one service."""

from celery import shared_task

from apps.review import services


@shared_task(name="review.find_label_issues", acks_late=True)
def find_label_issues_task(version_id: int) -> None:
    services.label_issues_find(version_id=version_id)


@shared_task(name="review.mend_label_issues", ignore_result=True)
def mend_label_issues_task() -> None:
    services.label_issues_mend()
