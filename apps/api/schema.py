"""The OpenAPI schema's error answers: every operation documents the errors the API's one
error shape (`apps.api.errors`) can answer with, so that clients (and the schema tests) know
them without each view repeating them."""

from __future__ import annotations

from typing import Any

# The component of `apps.api.serializers.ErrorOut`, for a schema where no view names it.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The API's one error shape (see apps/api/errors.py).",
    "properties": {"detail": {"type": "string"}, "errors": {}},
    "required": ["detail"],
}

ERRORS = {
    "400": "Invalid input: `detail` says what, `errors` per field.",
    "401": "Not signed in: no token, a bad token, or no session.",
    "403": "The caller's role in the project is too low for this (or, with a session, a write"
    " came without its CSRF token).",
    "404": "No such object, or it belongs to a project the caller is not a member of.",
}


def _takes_input(operation: dict[str, Any]) -> bool:
    parameters = operation.get("parameters", [])
    return "requestBody" in operation or any(p.get("in") == "query" for p in parameters)


def error_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the documented error answers.

    401 everywhere; 403 and 404 where the path names a project or an object (403 also for a
    write, refused without its CSRF token under session authentication); 400 where the
    operation takes input. A status an operation documents itself (e.g. the import's 400 with
    its rows) is kept."""
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "ErrorOut", ERROR_SCHEMA
    )
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            wanted = {"401"}
            if "{" in path:
                wanted |= {"403", "404"}
            elif method != "get":
                wanted.add("403")  # a session's write without its CSRF token
            if _takes_input(operation):
                wanted.add("400")
            responses = operation["responses"]
            for status in sorted(wanted):
                responses.setdefault(status, {"description": ERRORS[status], "content": reference})
    return result
