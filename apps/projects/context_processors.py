"""Template context every page needs about the person's projects."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from apps.projects.selectors import user_may_enter_admin


def admin_entry(request: HttpRequest) -> dict:
    """Whether the top bar links to the Django admin. Lazy: an htmx fragment, which has no top
    bar, costs no query."""
    return {"may_enter_admin": SimpleLazyObject(lambda: user_may_enter_admin(user=request.user))}
