"""One error format for the API: {"detail": "...", "errors": {...}} for every 4xx."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from apps.labeling.services import StaleLabel
from apps.worklists.services import StaleOrder


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field": exc.messages}
        first = next(iter(errors.values()))[0]
        # A label or an order refused because someone saved meanwhile is a conflict.
        code = status.HTTP_409_CONFLICT if isinstance(exc, StaleLabel | StaleOrder) else 400
        return Response({"detail": first, "errors": errors}, status=code)
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, list) or (isinstance(data, dict) and "detail" not in data):
        response.data = {"detail": "Invalid input.", "errors": data}
    return response
