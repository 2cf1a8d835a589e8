"""One way to send a Celery task: by name, with an object's id, never run inline.

A broker that is down must not fail the request that asked (a clinician's label, a deploy):
the send is logged and skipped, and each app's periodic mender sends it again later. Only the
broker's errors are caught; anything else is a bug and raises.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)


def task_send(name: str, object_id: int) -> bool:
    """Send task `name` with `object_id` now; False when the broker could not take it."""
    try:
        current_app.send_task(name, args=[object_id])
    except (BrokerError, OSError) as error:
        logger.warning("%s(%s) not enqueued (broker unavailable: %s)", name, object_id, error)
        return False
    return True


def task_send_on_commit(name: str, object_id: int) -> None:
    """Send task `name` once the current transaction commits (at once outside of one)."""
    transaction.on_commit(lambda: task_send(name, object_id))
