"""Where the current request comes from, for the audit log, without passing it through every
service: the middleware sets it for the request's duration."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse


@dataclass(frozen=True)
class Origin:
    ip: str | None = None
    user_agent: str = ""


_NOWHERE = Origin()  # frozen: safe to share as the default
_origin: ContextVar[Origin] = ContextVar("audit_origin", default=_NOWHERE)


def current_origin() -> Origin:
    return _origin.get()


def request_origin(request: HttpRequest) -> Origin:
    # REMOTE_ADDR is the proxy's address behind one; production sets the real client's address
    # from X-Forwarded-For only when told it sits behind a trusted proxy.
    return Origin(
        ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
    )


class AuditOriginMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _origin.set(request_origin(request))
        try:
            return self.get_response(request)
        finally:
            _origin.reset(token)
