"""Logins, failed logins and logouts go to the audit log."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from apps.audit.context import request_origin
from apps.audit.models import AuditAction, AuditEvent


def _origin(request):
    return request_origin(request) if request is not None else None


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs) -> None:
    origin = _origin(request)
    AuditEvent.objects.create(
        actor=user,
        actor_name=user.username,
        action=AuditAction.LOGIN,
        summary=f"{user.username} logged in",
        ip=origin.ip if origin else None,
        user_agent=origin.user_agent if origin else "",
    )


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs) -> None:
    if user is None:
        return
    origin = _origin(request)
    AuditEvent.objects.create(
        actor=user,
        actor_name=user.username,
        action=AuditAction.LOGOUT,
        summary=f"{user.username} logged out",
        ip=origin.ip if origin else None,
        user_agent=origin.user_agent if origin else "",
    )


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    # The name tried is kept (it may be a typo of a real one); the password never is.
    tried = str(credentials.get("username", ""))[:150]
    origin = _origin(request)
    AuditEvent.objects.create(
        actor=None,
        actor_name=tried,
        action=AuditAction.LOGIN_FAILED,
        summary=f"Failed login as {tried!r}",
        ip=origin.ip if origin else None,
        user_agent=origin.user_agent if origin else "",
    )
