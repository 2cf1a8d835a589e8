"""Writing the audit log. Every consequential action calls `audit_record` inside its own
transaction, so the event and the change commit (or roll back) together."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils import timezone

from apps.audit.context import current_origin
from apps.audit.models import AuditEvent


def audit_record(
    *,
    action: str,
    actor: Any = None,
    summary: str,
    project_id: int | None = None,
    object_type: str = "",
    object_id: Any = "",
    detail: dict | None = None,
) -> AuditEvent:
    """Append an event; the request's address and browser come from the audit middleware."""
    origin = current_origin()
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=getattr(actor, "username", "") or "",
        action=action,
        project_id=project_id,
        object_type=object_type,
        object_id=str(object_id)[:64],
        summary=summary[:300],
        detail=detail or {},
        ip=origin.ip,
        user_agent=origin.user_agent,
    )


def audit_insert_sql(
    *,
    action: str,
    actor: Any,
    summary: str,
    project_id: int | None,
    object_type: str,
    object_id: Any,
) -> tuple[str, list]:
    """The same event as one INSERT statement, for hot paths that send their writes in one
    batch (a label submit)."""
    origin = current_origin()
    table = AuditEvent._meta.db_table
    detail = "{}"
    return (
        f"INSERT INTO {table} (created_at, actor_id, actor_name, action, project_id,"
        f" object_type, object_id, summary, detail, ip, user_agent)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            connection.ops.adapt_datetimefield_value(timezone.now()),
            getattr(actor, "pk", None),
            getattr(actor, "username", "") or "",
            action,
            project_id,
            object_type,
            str(object_id)[:64],
            summary[:300],
            detail,
            origin.ip,
            origin.user_agent,
        ],
    )
