"""What every page's top bar needs from the review app: the number of unseen mentions."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from apps.review.selectors import mentions_unseen_count


def mentions(request: HttpRequest) -> dict:
    """`mentions_unseen`: counted (one query) only when a page of a logged-in user shows it;
    htmx fragments and anonymous pages never count."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"mentions_unseen": SimpleLazyObject(lambda: mentions_unseen_count(user=user))}
