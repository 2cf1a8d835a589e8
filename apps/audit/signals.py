"""Logins, failed logins and logouts go to the audit log."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from apps.audit.context import request_origin
from apps.audit.models import AuditAction, AuditEvent


def _record(action: str, user, name: str, summary: str, request) -> None:
    # The request of the login, not the middleware's context: Django sends these signals
    # from its own views and backends, sometimes before the middleware has run.
    origin = request_origin(request) if request is not None else None
    AuditEvent.objects.create(
        actor=user,
        actor_name=name,
        action=action,
        summary=summary,
        ip=origin.ip if origin else None,
        user_agent=origin.user_agent if origin else "",
    )


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs) -> None:
    _record(AuditAction.LOGIN, user, user.username, f"{user.username} logged in", request)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        _record(AuditAction.LOGOUT, user, user.username, f"{user.username} logged out", request)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    # The name tried is kept (it may be a typo of a real one); the password never is.
    tried = str(credentials.get("username", ""))[:150]
    _record(AuditAction.LOGIN_FAILED, None, tried, f"Failed login as {tried!r}", request)
