"""One error format for the API: {"detail": "...", "errors": {...}} for every 4xx.

DRF's views answer through `api_exception_handler`. What Django answers before or around them
(no route matched, a body past DATA_UPLOAD_MAX_MEMORY_SIZE, too many form fields, a server
error) goes through Django's error handlers, set in config/urls.py to the functions below:
under /api/ they answer the same JSON shape, elsewhere Django's own pages.
"""

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
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


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def _size(limit: int) -> str:
    return f"{limit / (1 << 20):g} MB" if limit >= 1 << 20 else f"{limit:,} bytes"


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = (
            f"The request body is larger than the limit of {_size(limit)}. Send files as "
            "multipart uploads (the import takes large files that way)."
        )
        return JsonResponse({"detail": detail}, status=413)
    if isinstance(exception, TooManyFieldsSent):
        detail = (
            f"The request has too many fields (more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS})."
        )
    elif isinstance(exception, TooManyFilesSent):
        detail = (
            f"The request has too many files (more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES})."
        )
    else:
        detail = "The request could not be understood."
    return JsonResponse({"detail": detail}, status=400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _is_api(request):
        return defaults.permission_denied(request, exception)
    return JsonResponse(
        {"detail": "You do not have permission to perform this action."}, status=403
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse({"detail": "Not found."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if not _is_api(request):
        return defaults.server_error(request)
    return JsonResponse({"detail": "Server error; it was logged."}, status=500)
